"""Runtime hooks: how the layers above the loop (store, progress, tracing, metrics) plug in.

A hook is any object with some of these methods, each sync or async:

    on_run_start(context)
    before_step(context, state_name)
    after_step(context, record: StepRecord)
    on_error(context, error: StateError)
    on_run_end(context, result: RunResult)

Unlike user callbacks, an exception in a hook is not swallowed: hooks carry
infrastructure (a store must not silently stop recording), so it ends the run.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

HOOK_METHODS = ("on_run_start", "before_step", "after_step", "on_error", "on_run_end")


@dataclass(slots=True)
class StepRecord:
    """What one step did, handed to `after_step` hooks."""

    run_id: str
    step: int
    state: str
    event: str | None
    next_state: str | None
    started_at: float
    duration: float
    retries: int = 0
    error: dict[str, Any] | None = None
    result: Any = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    event_data: Any = None
    """The data of the step's event (an error object, a received event's data), which the next state reads."""


class HookSet:
    """The hooks of one run, grouped by method so the loop pays nothing for absent ones."""

    __slots__ = HOOK_METHODS

    def __init__(self, hooks: Iterable[object]) -> None:
        for method in HOOK_METHODS:
            bound = [getattr(hook, method) for hook in hooks if callable(getattr(hook, method, None))]
            setattr(self, method, tuple((fn, inspect.iscoroutinefunction(fn)) for fn in bound))

    @staticmethod
    async def call(handlers: tuple[tuple[Any, bool], ...], *args: Any) -> None:
        for fn, is_async in handlers:
            if is_async:
                await fn(*args)
            else:
                fn(*args)
