"""Trace entries for what a debugger sees: a breakpoint hit (`breakpoint`) and a watched value that changed
(`watch`), registered with the trace (`agentfsm.history.trace.register_entry`) when recording is imported."""

from __future__ import annotations

from typing import Any

from agentfsm.history.trace import register_entry
from agentfsm.runtime.events import BreakpointHit, WatchChanged


def _breakpoint(event: BreakpointHit) -> dict[str, Any]:
    return {"kind": "breakpoint", "state": event.state, "breakpoint": event.breakpoint, "guard": event.guard}


def _watch(event: WatchChanged) -> dict[str, Any]:
    entry = {"kind": "watch", "state": event.state, "name": event.name, "expression": event.expression,
             "value": event.value, "initial": event.initial}
    if event.error is not None:
        entry["error"] = event.error
    return entry


register_entry(BreakpointHit, _breakpoint)
register_entry(WatchChanged, _watch)
