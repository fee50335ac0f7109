"""Running a command's coroutine in this process (the CLI's own process, never a caller's)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the coroutine that advances runs, on a fresh event loop.

    What the command needed is loaded by now (modules, the compiled machine): it is moved out
    of the collector's way (`gc.freeze`), so the full collections that many runs in flight
    trigger scan only what the runs make. This process is the CLI's, so nothing of a caller's
    is frozen.
    """
    gc.freeze()
    return asyncio.run(coroutine)
