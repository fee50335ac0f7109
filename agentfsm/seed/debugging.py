"""`StateDebugger`: the seed's debugger of a machine, as an observer on the same event stream the CLI uses.

    debugger = StateDebugger(machine)           # watches every run of the machine
    debugger.add_breakpoint("acting:attempts > 2")
    debugger.add_watch("tries", "attempts")
    result = await machine.run({...})            # status "paused" at a breakpoint
    result = await machine.run(context=result.context)   # continue: the state it stopped before runs first

Breakpoints pause a run before a state, as `agentfsm run --break` does (`PauseRun`, see
`agentfsm.runtime.pausing`); watches report values as they change (`WatchChanged`); the trace
(`get_trace`) holds the same entries a stored run's trace holds (docs/observability.md), each with
its `run_id`. A run recorded in a store (`agentfsm.Runs.start(machine, ...)`) is debugged the same
way, and its stored trace gets the breakpoint and watch entries too.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agentfsm.history import debug_trace  # noqa: F401 - the breakpoint and watch entries of the trace
from agentfsm.history.trace import trace_entry
from agentfsm.runtime.breakpoints import Breakpoints
from agentfsm.runtime.events import RunEvent, RunPaused, RunStarted, StepEnded, StepStarted
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.watches import Watches
from agentfsm.service.debugging import read_breakpoint, read_watch
from agentfsm.service.diagrams import RunPath, live_diagram


class StateDebugger:
    """Breakpoints, watches, a trace, a diagram and a summary for the runs of one machine."""

    critical = False

    def __init__(self, state_machine: StateMachine) -> None:
        self.state_machine = state_machine
        self.events: list[dict[str, Any]] = []
        self.breakpoints = Breakpoints()
        self.watches = Watches()
        self.paused: dict[str, Any] | None = None
        """Where the latest run stopped before a state: `{"run_id", "state", "reason", "step"}`, or None."""
        self.current_state: str | None = None
        self._held: dict[str, str] = {}
        """Runs this debugger paused, and the state each stopped before: that state runs first when it goes on."""
        self.path = RunPath()
        """The latest run's path (visits, transitions taken and how often, where it stands), for the diagram."""
        state_machine.add_observer(self)
        state_machine.add_observer(self.path)

    # -- the mission's calls ------------------------------------------------------------------------------

    def add_breakpoint(self, state: str) -> None:
        """Pause runs before `state` (`STATE` or `STATE:GUARD`); InputError naming the states when it is none."""
        self.breakpoints.add(read_breakpoint(state, self.state_machine, where="add_breakpoint"))

    def remove_breakpoint(self, state: str) -> None:
        """Drop the breakpoint `state` (as added, or every one on that state)."""
        kept = [item for item in self.breakpoints.items if state not in (item.text, item.state)]
        self.breakpoints.items = kept

    def add_watch(self, name: str, expression: str) -> None:
        """Report `expression` (a context key, a dotted path, an expression or a template) whenever it changes."""
        self.watches.add(read_watch(expression, name, where="add_watch"))

    def get_trace(self) -> list[dict[str, Any]]:
        """Every entry so far, oldest first: the stored trace's kinds (`state_entered`, `transition`, `llm_call`,
        `breakpoint`, `watch`, ...), each with `run_id`, `step`, `at`."""
        return list(self.events)

    def export_trace(self, filepath: str | Path) -> Path:
        """Write the trace as a JSON list; returns the path written."""
        path = Path(filepath)
        path.write_text(json.dumps(self.events, ensure_ascii=False, indent=2, default=repr) + "\n", encoding="utf-8")
        return path

    def generate_mermaid_diagram(self) -> str:
        """The machine's Mermaid diagram with the latest run drawn over it (as `agentfsm diagram RUN` draws a
        stored one): transitions taken with how often, states never visited dimmed, where it stands (paused,
        waiting, failed) highlighted."""
        return str(live_diagram(self.state_machine, self.path, "mermaid"))

    def summary(self) -> dict[str, Any]:
        """What `print_summary` prints, as data."""
        kinds = Counter(entry["kind"] for entry in self.events)
        visits = Counter(entry["state"] for entry in self.events if entry["kind"] == "state_entered")
        moves = Counter(f"{entry['source']}->{entry['target']}" for entry in self.events
                        if entry["kind"] == "transition")
        watched = {entry["name"]: entry.get("value") for entry in self.events if entry["kind"] == "watch"}
        span = self.events[-1]["at"] - self.events[0]["at"] if self.events else 0.0
        return {"events": dict(kinds), "visits": dict(visits), "transitions": dict(moves),
                "breakpoints": [item.text for item in self.breakpoints.items], "watches": watched,
                "paused": self.paused, "current_state": self.current_state, "duration": span}

    def print_summary(self) -> None:
        summary = self.summary()
        print(f"machine {self.state_machine.name}: {len(self.events)} trace entries over {summary['duration']:.3f} s")
        for title, key in (("entries", "events"), ("state visits", "visits"), ("transitions", "transitions"),
                           ("watches", "watches")):
            if summary[key]:
                print(f"{title}:")
                for name, value in sorted(summary[key].items(), key=lambda item: str(item[0])):
                    print(f"  {name}: {json.dumps(value, ensure_ascii=False, default=repr)}")
        if summary["breakpoints"]:
            print(f"breakpoints: {', '.join(summary['breakpoints'])}")
        if self.paused is not None:
            print(f"paused before state '{self.paused['state']}' ({self.paused['reason']})")

    # -- the event stream --------------------------------------------------------------------------------

    def record(self, event: RunEvent) -> None:
        entry = trace_entry(event)
        if entry is not None:
            self.events.append({"run_id": event.run_id, **entry})

    async def on_run_started(self, *, event: RunStarted) -> None:
        self.record(event)
        self.paused, self.current_state = None, event.state
        await self.watches.on_run_started(event=event)

    async def on_step_started(self, *, event: StepStarted) -> None:
        self.current_state = event.state
        if self._held.pop(event.run_id, None) != event.state:  # a run going on from a pause runs that state
            await self.breakpoints.on_step_started(event=event)
        self.record(event)

    async def on_step_ended(self, *, event: StepEnded) -> None:
        self.record(event)
        self.current_state = event.next_state
        await self.watches.on_step_ended(event=event)

    def on_pause(self, *, event: RunPaused) -> None:
        self.record(event)
        self.current_state = event.state
        self.paused = {"run_id": event.run_id, "state": event.state, "reason": event.reason, "step": event.step,
                       "at": time.time()}
        if event.state is not None and event.reason != "interrupted":
            self._held[event.run_id] = event.state

    def on_other(self, *, event: RunEvent) -> None:
        self.record(event)

    on_transition = on_error = on_retry = on_llm_call_ended = on_tool_call_ended = on_wait = on_other
    on_breakpoint = on_watch = on_run_ended = on_other

