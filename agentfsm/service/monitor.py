"""`StateMonitor`: watch machines' runs as they happen, in the mission's vocabulary.

    >>> import asyncio, agentfsm
    >>> from agentfsm import StateMonitor
    >>> monitor = StateMonitor()
    >>> machine = agentfsm.load_machine("machines/hello.yaml")
    >>> monitor.register_machine("greeter", machine)
    >>> _ = asyncio.run(machine.run({"name": "Ada"}))
    >>> status = monitor.get_status("greeter")
    >>> status["status"], status["current_state"], status["running"]
    ('succeeded', 'done', False)

Registering attaches an observer to the machine, so every run of it reports to the monitor: in
memory (`machine.run()`, `machine.start()`) or recorded (`Runs.start(machine)`, `Runs.resume(..., machine=machine)`).
The monitor keeps each run's path (the states it entered, the transitions it took and how often, where it
stands) and draws it over the machine's diagram (`get_diagram`), as `agentfsm diagram RUN` does for a
stored run. Watching cannot break a run: an observer that fails is logged and the run goes on.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentfsm.observability.run_diagram import RunPath
from agentfsm.runtime.events import RunEvent, RunStarted, StepEnded
from agentfsm.service.diagrams import live_diagram

if TYPE_CHECKING:
    from agentfsm.runtime.machine import StateMachine

RUNS_KEPT = 100
"""Runs a monitor remembers per machine (the oldest are forgotten first)."""

_NOT_FOUND = "machine not registered"


@dataclass(slots=True)
class _Watch:
    """The observer a monitor attaches to one machine: the paths of its runs, newest last."""

    machine: StateMachine
    paths: OrderedDict[str, RunPath] = field(default_factory=OrderedDict)
    events: int = 0
    context_size: int = 0
    last_error: dict[str, Any] | None = None

    def path(self, run_id: str) -> RunPath:
        found = self.paths.get(run_id)
        if found is None:
            found = self.paths[run_id] = RunPath(run_id)
            while len(self.paths) > RUNS_KEPT:
                self.paths.popitem(last=False)
        return found

    def on_event(self, *, event: RunEvent) -> None:
        self.events += 1
        if isinstance(event, RunStarted):
            path = self.path(event.run_id)
            self.paths.move_to_end(event.run_id)  # the newest run is the one a status shows
            path.on_run_started(event=event)
            return
        path = self.path(event.run_id)
        method = getattr(path, _METHODS.get(type(event).__name__, ""), None)
        if method is not None:
            method(event=event)
        if isinstance(event, StepEnded):
            self.context_size = len(event.data)
            if event.error is not None:
                self.last_error = dict(event.error)


_METHODS = {"StepEnded": "on_step_ended", "WaitStarted": "on_wait", "RunPaused": "on_pause", "RunEnded": "on_run_ended"}


class StateMonitor:
    """Live status and run-aware diagrams of the machines registered with it."""

    def __init__(self) -> None:
        self._watches: dict[str, _Watch] = {}

    @property
    def active_machines(self) -> dict[str, StateMachine]:
        """The registered machines, by id."""
        return {machine_id: watch.machine for machine_id, watch in self._watches.items()}

    def register_machine(self, machine_id: str, machine: StateMachine) -> None:
        """Watch every run of `machine` from now on, under `machine_id` (registering the id again replaces it)."""
        self.unregister_machine(machine_id)
        watch = _Watch(machine)
        machine.add_observer(watch)
        self._watches[machine_id] = watch

    def unregister_machine(self, machine_id: str) -> None:
        """Stop watching; unknown ids are ignored."""
        watch = self._watches.pop(machine_id, None)
        if watch is not None and watch in watch.machine.observers:
            watch.machine.observers.remove(watch)

    def get_status(self, machine_id: str) -> dict[str, Any]:
        """Where the machine's latest run stands: `{machine_id, name, run_id, status, current_state, running,
        step, event_count, visits, context_size, history_length, last_error, runs}`; an unknown id gives
        `{machine_id, error}`."""
        watch = self._watches.get(machine_id)
        if watch is None:
            return {"machine_id": machine_id, "error": _NOT_FOUND}
        latest = next(reversed(watch.paths.values()), None)
        status = latest.status if latest is not None else "idle"
        return {
            "machine_id": machine_id, "name": watch.machine.name,
            "run_id": latest.run_id if latest is not None else None, "status": status,
            "current_state": latest.current if latest is not None else None,
            "running": status in ("running", "queued"), "step": latest.steps if latest is not None else 0,
            "event_count": watch.events, "visits": latest.marks().visits if latest is not None else {},
            "context_size": watch.context_size, "history_length": latest.steps if latest is not None else 0,
            "last_error": watch.last_error, "runs": len(watch.paths),
        }

    def get_all_status(self) -> list[dict[str, Any]]:
        """`get_status` of every registered machine, in the order they were registered."""
        return [self.get_status(machine_id) for machine_id in self._watches]

    def get_diagram(self, machine_id: str, diagram_format: str = "mermaid", *, run_id: str | None = None
                    ) -> str | bytes:
        """The machine's diagram with its latest run (or `run_id`) drawn over it: counts on the transitions taken,
        states never entered dimmed, where the run stands highlighted (before any run: the plain diagram).
        `diagram_format` as `agentfsm diagram` takes it. An unknown machine id gives ""."""
        watch = self._watches.get(machine_id)
        if watch is None:
            return ""
        path = watch.paths.get(run_id) if run_id is not None else next(reversed(watch.paths.values()), None)
        if run_id is not None and path is None:
            raise KeyError(f"machine '{machine_id}' has no run '{run_id}' in this monitor")
        return live_diagram(watch.machine, path, diagram_format)
