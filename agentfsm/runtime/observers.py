"""Observers: how the layers above the loop (the store's recorder, progress, logs, traces, a UI) watch a run.

An observer is any object with some of these methods, each sync or async, each taking its
event as the keyword argument `event`:

    on_run_started(*, event: RunStarted)          on_step_started(*, event: StepStarted)
    on_step_ended(*, event: StepEnded)            on_transition(*, event: TransitionTaken)
    on_error(*, event: ErrorRaised)               on_retry(*, event: RetryScheduled)
    on_llm_call_started(*, event: LLMCallStarted) on_llm_call_ended(*, event: LLMCallEnded)
    on_tool_call_started(*, event: ToolCallStarted) on_tool_call_ended(*, event: ToolCallEnded)
    on_token(*, event: TokenReceived)             on_wait(*, event: WaitStarted)
    on_pause(*, event: RunPaused)                 on_run_ended(*, event: RunEnded)
    on_breakpoint(*, event: BreakpointHit)        on_watch(*, event: WatchChanged)
    on_event(*, event: RunEvent)                  every event, after the method for its kind

Any number of observers watch a run at once, called in the order they were given, each
event delivered before the run goes on. An observer that raises is logged and the run goes
on: watching cannot break a run. The exception is an observer whose attribute `critical`
is true (the store's recorder, which carries durability): its failure stops the run.
Exceptions that are not errors (Ctrl-C, a cancelled task) always propagate, and so does
`PauseRun` from `on_step_started`: it pauses the run before that state (`agentfsm.runtime.pausing`).

`on_token` is called from inside a provider's read loop: it must be sync and quick (an
async one is scheduled, not awaited). A run asks providers to stream only when some
observer has `on_token` (or `on_event`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from agentfsm.runtime.events import EVENT_METHODS, RunEvent, TokenReceived

logger = logging.getLogger("agentfsm")


class Observer(Protocol):
    """Documents the observer shape; an observer need not subclass it, and defines only the methods it needs."""

    critical: bool


@dataclass(frozen=True, slots=True)
class _Handler:
    function: Any
    is_async: bool
    critical: bool
    owner: object


class Observers:
    """The observers of one run, grouped by kind of event, so the loop pays nothing for events nobody watches."""

    __slots__ = ("_handlers", "_failed", "_pending")

    def __init__(self, observers: Iterable[object] = ()) -> None:
        grouped: dict[type[RunEvent], list[_Handler]] = {}
        for observer in observers:
            critical = bool(getattr(observer, "critical", False))
            for event_type, name, is_async in _methods(type(observer), observer):
                handler = _Handler(getattr(observer, name), is_async, critical, observer)
                grouped.setdefault(event_type, []).append(handler)
        self._handlers = {event_type: tuple(handlers) for event_type, handlers in grouped.items()}
        self._failed: set[tuple[int, str]] | None = None
        self._pending: set[Any] | None = None

    def listens(self, event_type: type[RunEvent]) -> bool:
        """Whether some observer receives this kind of event (so an event nobody reads is never built)."""
        return event_type in self._handlers

    @property
    def streams(self) -> bool:
        """Whether some observer wants LLM replies as they arrive (providers stream only then)."""
        return TokenReceived in self._handlers

    async def publish(self, event: RunEvent) -> None:
        """Deliver `event` to its observers in order, awaiting async ones."""
        for handler in self._handlers.get(type(event), ()):
            try:
                outcome = handler.function(event=event)
                if handler.is_async or inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # noqa: BLE001 - watching must not break the run
                if handler.critical:
                    raise
                self._report(handler, event, exc)

    def notify(self, event: RunEvent) -> None:
        """Deliver `event` from synchronous code (a provider's read loop): async observers are scheduled."""
        for handler in self._handlers.get(type(event), ()):
            try:
                outcome = handler.function(event=event)
                if handler.is_async or inspect.isawaitable(outcome):
                    import asyncio  # only async token observers need it

                    task = asyncio.ensure_future(outcome)
                    if self._pending is None:
                        self._pending = set()
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
            except Exception as exc:  # noqa: BLE001 - watching must not break the run
                if handler.critical:
                    raise
                self._report(handler, event, exc)

    def _report(self, handler: _Handler, event: RunEvent, exc: Exception) -> None:
        """Log an observer's failure: with its traceback the first time, briefly after that."""
        key = (id(handler.owner), type(event).__name__)
        if self._failed is None:
            self._failed = set()
        first = key not in self._failed
        self._failed.add(key)
        logger.warning("observer %s failed on %s: %s", type(handler.owner).__name__, type(event).__name__,
                       exc, exc_info=first)


_METHODS: dict[type, tuple[tuple[type[RunEvent], str, bool], ...]] = {}


def _methods(cls: type, observer: object) -> tuple[tuple[type[RunEvent], str, bool], ...]:
    """(event type, method name, is async) for each method an observer has; worked out once per class, unless
    the observer carries methods of its own (set on the instance)."""
    own = bool(getattr(observer, "__dict__", None)) and any(
        name in observer.__dict__ for name in (*EVENT_METHODS.values(), "on_event"))
    if not own and cls in _METHODS:
        return _METHODS[cls]
    found = []
    for event_type, method in EVENT_METHODS.items():
        for name in (method, "on_event"):
            function = getattr(observer, name, None)
            if callable(function):
                found.append((event_type, name, inspect.iscoroutinefunction(function)))
    methods = tuple(found)
    if not own:
        _METHODS[cls] = methods
    return methods

