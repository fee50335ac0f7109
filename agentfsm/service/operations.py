"""Operations a front end runs against a store it names by URL, each opening and closing the store around it.

They are what a command does once its arguments are parsed: the CLI renders what they
return, the worker and the web UI call the same `Runs` methods on a store they keep open.
`observers` watch a run the operation advances (the progress display, logs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfsm.history.rewrite import Rollback
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.service.stores import open_runs, store_exists
from agentfsm.store.base import NoStore, RunRow
from agentfsm.store.queue import WorkerView, live_workers

if TYPE_CHECKING:
    from agentfsm.store.copy import CopyReport

__all__ = ["EventRecorded", "copy_runs", "list_runs", "run_tree", "list_workers", "new_run_id", "resume_run", "rollback_run", "send_event",
           "start_run", "stored_run", "submit_runs"]

@dataclass(frozen=True, slots=True)
class EventRecorded:
    """An event stored for a run that was not continued (`send --no-resume`)."""

    run_id: str
    event: str
    status: str


async def start_run(store: str | None, machine: StateMachine, inputs: Mapping[str, Any], *,
                    llms: Mapping[str, str], observers: list[object], run_id: str,
                    breakpoints: Iterable[str] = ()) -> RunResult:
    """Record and run `machine` (ready, its inputs checked) in the store, creating the store if needed."""
    async with open_runs(store, create=True) as runs:
        return await runs.start(machine, inputs, llms=llms, observers=observers, run_id=run_id,
                                breakpoints=breakpoints)


async def stored_machine(store: str | None, run_id: str, machine_file: Path | None = None) -> StateMachine:
    """The machine a resume of the run would use (`machine_file` when given: an edited file)."""
    if machine_file is not None:
        from agentfsm.service.machines import load_machine

        return load_machine(machine_file)
    async with open_runs(store, create=False) as runs:
        return await runs.machine(run_id)


async def keep_breakpoints(store: str | None, run_id: str, texts: Iterable[str]) -> None:
    """Keep breakpoints with a stored run (added at `--step`'s prompt while it ran)."""
    from agentfsm.service.debugging import set_breakpoint

    async with open_runs(store, create=False) as runs:
        for text in texts:
            await set_breakpoint(runs, run_id, text)


async def resume_run(store: str | None, run_id: str, *, machine_file: Path | None, llms: Mapping[str, str],
                     observers: list[object], breakpoints: Iterable[str] = ()) -> RunResult:
    async with open_runs(store, create=False) as runs:
        return await runs.resume(run_id, machine=machine_file, llms=llms, observers=observers,
                                 breakpoints=breakpoints)


async def send_event(store: str | None, run_id: str, event: str, data: Any, *, resume: bool,
                     observers: list[object]) -> RunResult | EventRecorded:
    """Deliver an event; continue the run at once unless `resume` is false (a worker or `resume` does it later)."""
    async with open_runs(store, create=False) as runs:
        if not resume:
            await runs.send(run_id, event, data, resume=False)
            run = await runs.get(run_id)
            return EventRecorded(run.id, event, run.status)
        result = await runs.send(run_id, event, data, observers=observers)
        assert result is not None  # send(resume=True) advances the run
        return result


async def rollback_run(store: str | None, run_id: str, to: str, *, branch: str | None, resume: bool,
                       observers: list[object], on_rolled_back: Callable[[Rollback], None],
                       llms: Mapping[str, str] | None = None) -> tuple[Rollback, RunResult | None]:
    """Roll back to a point (a new branch made the head); with `resume`, continue from there at once (the run's
    machine is checked first, so a rollback that could not go on makes no branch)."""
    async with open_runs(store, create=False) as runs:
        if not resume:
            made = await runs.rollback(run_id, to, branch=branch)
            on_rolled_back(made)
            return made, None
        made, result = await runs.rollback_and_resume(run_id, to, branch=branch, observers=observers,
                                                      on_rolled_back=on_rolled_back, llms=llms)
        return made, result


async def submit_runs(store: str | None, machine: StateMachine, batch: list[dict[str, Any]], *,
                      llms: Mapping[str, str]) -> list[str]:
    """Record one `queued` run per inputs of `batch` (each checked already); their ids, in order."""
    async with open_runs(store, create=True) as runs:
        return [(await runs.submit(machine, inputs, llms=llms)).id for inputs in batch]


async def copy_runs(source: str, target: str) -> CopyReport:
    """Copy every run of the store at `source` (which must exist) into `target` (made if needed), verified."""
    from agentfsm.store.copy import copy_store

    async with open_runs(source, create=False) as origin, open_runs(target, create=True) as destination:
        return await copy_store(origin.store, destination.store)


async def list_workers(store: str | None, *, within: float) -> list[WorkerView]:
    """Workers heard from in the last `within` seconds (none when no run was ever recorded in that store)."""
    if not store_exists(store):
        return []
    try:
        async with open_runs(store, create=False) as runs:
            return await live_workers(runs.store, now=runs.clock(), within=within)
    except NoStore:
        return []


async def list_runs(store: str | None, *, status: str | None, machine: str | None, limit: int) -> list[RunRow]:
    """Runs, newest first; none when no run was ever recorded in that store (it is not made for asking)."""
    if not store_exists(store):
        return []
    try:
        async with open_runs(store, create=False) as runs:
            return await runs.list(status=status, machine=machine, limit=limit)
    except NoStore:  # a server's schema nobody recorded a run in yet
        return []


async def run_tree(store: str | None, *, status: str | None, machine: str | None, limit: int
                   ) -> list[tuple[int, RunRow]]:
    """Top-level runs with their child runs under them, as (depth, run); none when nothing was recorded."""
    if not store_exists(store):
        return []
    try:
        async with open_runs(store, create=False) as runs:
            return await runs.tree(status=status, machine=machine, limit=limit)
    except NoStore:
        return []


async def stored_run(store: str | None, run_id: str) -> RunRow | None:
    """The run as the store has it now; None when it is not there or the store cannot be read."""
    try:
        async with open_runs(store, create=False) as runs:
            return await runs.get(run_id)
    except Exception:  # noqa: BLE001 - asked to explain an interruption: an unreadable store explains nothing
        return None
