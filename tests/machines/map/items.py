"""Python tools for the map tests: each call is logged to $MAP_LOG with how many items were running then."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

RUNNING = {"now": 0}


def _log(entry: dict[str, object]) -> None:
    path = os.environ.get("MAP_LOG")
    if path:
        with Path(path).open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


async def track(item: object, index: int, delay: float = 0.02) -> str:
    """Count the items in flight while this one waits `delay` seconds; fail for the item 'bad'."""
    RUNNING["now"] += 1
    _log({"index": index, "running": RUNNING["now"]})
    try:
        await asyncio.sleep(delay)
    finally:
        RUNNING["now"] -= 1
    if item == "bad":
        raise ValueError(f"item {index} is bad")
    return f"  {str(item).strip().upper()}#{index} "
