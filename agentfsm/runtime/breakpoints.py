"""Breakpoints: an observer that pauses a run before it enters chosen states (with a guard: only when it holds).

A breakpoint is written `STATE` or `STATE:GUARD` (`acting:attempts > 2`); its guard arrives compiled
(see `agentfsm.service.debugging`, which reads the text against a machine). `Breakpoints` raises
`PauseRun` from `on_step_started` (see `agentfsm.runtime.pausing`), after publishing `BreakpointHit`.
A run continued from where a breakpoint stopped it runs that state first: the observer made for that drive
is told which state (`passing`) and lets the drive's first step pass when it is that state, as a debugger's
`continue` steps off a breakpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentfsm.runtime.events import BreakpointHit, StepStarted
from agentfsm.runtime.pausing import PauseRun, publish_in_run

logger = logging.getLogger("agentfsm")

Check = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
"""A compiled guard: (the context data, `run` {id, step, state}) -> whether it holds; raises when it cannot say."""


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """Pause before `state` runs (only when `guard` holds, if it has one)."""

    state: str
    guard: str | None = None
    check: Check | None = None

    @property
    def text(self) -> str:
        """As written: `STATE` or `STATE:GUARD`."""
        return self.state if self.guard is None else f"{self.state}:{self.guard}"

    def holds(self, event: StepStarted) -> bool:
        if self.check is None:
            return True
        try:
            return bool(self.check(event.data, {"id": event.run_id, "step": event.step, "state": event.state}))
        except Exception as exc:  # noqa: BLE001 - a guard that cannot be read (a key not set yet) does not hold
            logger.info("breakpoint %r: its guard cannot be read at step %d: %s", self.text, event.step, exc)
            return False


Refresh = Callable[[], Awaitable[Iterable[Breakpoint]]]


class Breakpoints:
    """Pauses a run before the states its breakpoints name.

    `passing`: the state the drive continues from after a pause there (or a wait): its first step is let through
    when it is that state.
    `refresh`: reads the breakpoints again (those set meanwhile from another process, `agentfsm break`),
    at most once per `every` seconds, at a step.
    """

    critical = False

    def __init__(self, breakpoints: Iterable[Breakpoint] = (), *, passing: str | None = None,
                 refresh: Refresh | None = None, every: float = 1.0) -> None:
        self.items: list[Breakpoint] = list(breakpoints)
        self.passing = passing
        self.first = True
        self.refresh = refresh
        self.every = every
        self.read_at = time.monotonic()
        self.hit: Breakpoint | None = None

    def add(self, breakpoint: Breakpoint) -> None:
        if breakpoint not in self.items:
            self.items.append(breakpoint)

    def remove(self, state: str) -> bool:
        """Drop every breakpoint on `state`; whether there was one."""
        kept = [item for item in self.items if item.state != state]
        removed = len(kept) != len(self.items)
        self.items = kept
        return removed

    async def on_step_started(self, *, event: StepStarted) -> None:
        if self.first:
            self.first = False
            if self.passing == event.state:
                return
        if self.refresh is not None and time.monotonic() - self.read_at >= self.every:
            self.read_at = time.monotonic()
            self.items = list(await self.refresh())
        for breakpoint in self.items:
            if breakpoint.state == event.state and breakpoint.holds(event):
                await self.stop(breakpoint, event)

    async def stop(self, breakpoint: Breakpoint, event: StepStarted) -> None:
        """Report the hit, then pause the run before `event.state`."""
        self.hit = breakpoint
        await publish_in_run(BreakpointHit(run_id=event.run_id, at=time.time(), step=event.step - 1,
                                           state=event.state, breakpoint=breakpoint.text, guard=breakpoint.guard))
        raise PauseRun("breakpoint", {"breakpoint": breakpoint.text})
