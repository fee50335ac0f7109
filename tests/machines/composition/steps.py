"""Python tools for the composition tests: each call is appended to the file $COMPOSITION_LOG names."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path


def _log(entry: dict[str, object]) -> None:
    path = os.environ.get("COMPOSITION_LOG")
    if path:
        with Path(path).open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


async def work(agent: str, step: int, delay: float = 0.0) -> str:
    """Record the call, then wait `delay` seconds."""
    _log({"agent": agent, "step": step})
    if delay:
        await asyncio.sleep(delay)
    return f"{agent}-{step}"


def flaky(agent: str, failures: int) -> str:
    """Fail the first `failures` calls of this agent (counted in the log), then succeed."""
    path = os.environ.get("COMPOSITION_LOG")
    calls = 0
    if path and Path(path).exists():
        calls = sum(1 for line in Path(path).read_text().splitlines() if json.loads(line)["agent"] == agent)
    _log({"agent": agent, "step": calls})
    if calls < failures:
        raise RuntimeError(f"{agent} failed on call {calls + 1}")
    return f"{agent} ok after {calls} failures"
