"""`Runs`: every operation a front end needs on runs kept in a store.

    >>> import asyncio, agentfsm
    >>> async def main():
    ...     async with agentfsm.Runs("memory://doc") as runs:
    ...         result = await runs.start("machines/hello.yaml", {"name": "Ada"})
    ...         return result.output, len(await runs.history(result.run_id))
    >>> asyncio.run(main())
    ('Hello, Ada!', 2)

The CLI, the worker, `agentfsm.run(..., store=URL)` and the web UI call these methods and
nothing else. Each takes observers where it advances a run; each that changes a run is
checked first and changes nothing when the request is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfsm.bindings.known_secrets import redact_value
from agentfsm.history import advance, rewrite
from agentfsm.history.advance import Interrupted, Parent, Recording
from agentfsm.history.errors import RunRefused
from agentfsm.history.deltas import SNAPSHOT_EVERY
from agentfsm.history.diff import RunDiff, diff_positions
from agentfsm.history.leases import LEASE_SECONDS
from agentfsm.history.lineage import Position, lineage, path_to, position, stream_branch
from agentfsm.history.points import Point, resolve_point
from agentfsm.history.rewrite import Rollback
from agentfsm.history.trace_read import iter_trace, iter_trace_pages
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.loop import RunResult
from agentfsm.service.inputs import checked_data, checked_inputs
from agentfsm.runtime.machine import StateMachine
from agentfsm.store import open_store
from agentfsm.store.base import STATUSES, BranchRow, CheckpointRow, RunFilter, RunRow, StepRow, lease_live
from agentfsm.store.core import Store

if TYPE_CHECKING:
    from agentfsm.service.handle import RunHandle

__all__ = ["STATUSES", "MachineArgument", "Rollback", "RunDiff", "RunResult", "RunRow", "Runs"]

MachineArgument = StateMachine | str | Path


class Runs:
    """Runs kept in one store: start them, advance them, and read or rewrite their history without losing any."""

    def __init__(self, store: Store | str | None = None, *, lease_seconds: float = LEASE_SECONDS,
                 snapshot_every: int = SNAPSHOT_EVERY, clock: Callable[[], float] | None = None,
                 trace: bool = True) -> None:
        self.store: Store = open_store(store) if store is None or isinstance(store, str) else store
        self.clock = clock or self.store.clock
        self.recording = Recording(lease_seconds, snapshot_every, self.clock, trace)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Runs:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- advancing runs ---------------------------------------------------------------------------------

    async def start(self, machine: MachineArgument, inputs: Mapping[str, Any] | None = None, *,
                    llms: Mapping[str, str] | None = None, observers: Iterable[object] = (),
                    run_id: str | None = None, on_interrupt: Interrupted = "paused",
                    parent: Parent | None = None, breakpoints: Iterable[str] = ()) -> RunResult:
        """Start a durable run: every step is committed to the store before the next state starts.

        `breakpoints` (`STATE` or `STATE:GUARD`) are kept with the run: it pauses before entering those states
        (see `agentfsm.service.debugging`)."""
        from agentfsm.service import debugging  # Jinja2 and the language: not for reading commands

        llms = dict(llms or {})
        checked_inputs(inputs)
        if not isinstance(machine, StateMachine):
            from agentfsm.service.machines import load_machine  # compiling loads Jinja2, pydantic and bindings

            machine = load_machine(machine, llms=llms)
        machine.check()
        kept = debugging.added([], debugging.read_breakpoints(breakpoints, machine))
        run_id = run_id or new_run_id()
        pausing = debugging.observer(self, run_id, machine, kept)
        return await advance.start(self.store, machine, inputs, llms=llms, observers=[pausing, *observers],
                                   run_id=run_id, on_interrupt=on_interrupt, recording=self.recording,
                                   parent=parent, breakpoints=kept)

    async def submit(self, machine: MachineArgument, inputs: Mapping[str, Any] | None = None, *,
                     llms: Mapping[str, str] | None = None, run_id: str | None = None) -> RunRow:
        """Record a run as `queued` without running it (inputs checked, machine compiled); a worker starts it."""
        llms = dict(llms or {})
        if not isinstance(machine, StateMachine):
            from agentfsm.service.machines import load_machine

            machine = load_machine(machine, llms=llms)
        machine.check()
        return await advance.submit(self.store, machine, inputs, llms=llms, run_id=run_id, recording=self.recording)

    async def resume(self, run_id: str, *, machine: MachineArgument | None = None,
                     llms: Mapping[str, str] | None = None, observers: Iterable[object] = (),
                     on_interrupt: Interrupted = "paused", owner: str | None = None,
                     breakpoints: Iterable[str] = ()) -> RunResult:
        """Continue a run from its head: after a crash, a wait, a pause or a rollback (or a breakpoint: the state
        it paused before runs first; `breakpoints` adds more, kept with the run).

        The run resumes with the machine it started with (kept in the store). `machine` opts
        into another one (an edited file) once the state the run is in exists in it.
        `on_interrupt` says how a run interrupted after it took a step is left. `owner`: the lease a worker's
        claim already holds on the run.
        """
        from agentfsm.service import debugging  # Jinja2 and the language: not for reading commands

        run = await self.store.get_run(run_id)
        advance.refuse_finished(run)
        ready, replaced = await self._machine_for(run, machine, llms)
        given = debugging.read_breakpoints(breakpoints, ready)
        if given:
            run = await self.store.set_breakpoints(run.id, debugging.added(run.breakpoints, given), now=self.clock())
        pausing = debugging.observer(self, run.id, ready, run.breakpoints,
                                     passing=await debugging.stopped_at(self, run))
        return await advance.resume(self.store, run, ready, replaced=replaced, observers=[pausing, *observers],
                                    on_interrupt=on_interrupt, recording=self.recording, owner=owner)

    async def send(self, run_id: str, event: str, data: Any = None, *, resume: bool = True,
                   machine: MachineArgument | None = None, llms: Mapping[str, str] | None = None,
                   observers: Iterable[object] = ()) -> RunResult | None:
        """Deliver an event to a run waiting for it; continue the run unless `resume` is false.

        The machine is made ready first (as `resume` takes it), so an event that could not be acted on
        is refused, not left behind in the store.
        """
        from agentfsm.service import debugging  # Jinja2 and the language: not for reading commands

        checked_data(data, "the event's data")
        run = await self.store.get_run(run_id)
        # a run that is not waiting is refused by add_event, with the reason: no need to compile its machine
        ready = await self._machine_for(run, machine, llms) if resume and run.status == "waiting" else None
        data = redact_value(data)  # after the machine is ready: its bindings have read their keys by then
        await self.store.add_event(run.id, event, data, now=self.clock())
        if ready is None:
            return None
        run = await self.store.get_run(run.id)
        pausing = debugging.observer(self, run.id, ready[0], run.breakpoints,
                                     passing=await debugging.stopped_at(self, run))
        return await advance.resume(self.store, run, ready[0], replaced=ready[1], observers=[pausing, *observers],
                                    recording=self.recording)

    async def machine(self, run_id: str, *, llms: Mapping[str, str] | None = None) -> StateMachine:
        """The machine a resume of this run would use (its stored source, with its `--llm` overrides).

        Raises what loading it raises (a module that no longer imports...), so a caller can check a run
        can go on before changing anything."""
        return (await self._machine_for(await self.store.get_run(run_id), None, llms))[0]

    async def _machine_for(self, run: RunRow, machine: MachineArgument | None, llms: Mapping[str, str] | None
                           ) -> tuple[StateMachine, advance.MachineSource | None]:
        """The machine to resume with, and the new source when the caller swaps in an edited machine file."""
        overrides = {**run.llms, **(llms or {})}
        if isinstance(machine, StateMachine):
            return machine, None
        from agentfsm.service.machines import load_machine, loaded_source, machine_from_source

        if machine is not None:
            ready = load_machine(machine, llms=overrides)
            source = loaded_source(ready)
            return ready, (source if source is not None and source.digest != run.digest else None)
        text = await self.store.source(run.digest) if run.digest else None
        if text is None:
            raise RunRefused(f"run {run.id} was started from a machine built in Python; "
                             "pass that machine to resume it: Runs.resume(run_id, machine=...)")
        return machine_from_source(text, run.path or f"{run.machine}.yaml", llms=overrides), None

    # -- rewriting history ---------------------------------------------------------------------------------

    async def rollback(self, run_id: str, to: str | int, *, branch: str | None = None) -> Rollback:
        """Start a new branch at a point (a checkpoint name, a step number, `state:NAME`) and make it the head.

        Nothing is deleted: the branch the run was on stays readable.
        """
        return await rewrite.rollback(self.store, run_id, to, branch=branch, clock=self.clock)

    async def rollback_and_resume(self, run_id: str, to: str | int, *, branch: str | None = None,
                                  llms: Mapping[str, str] | None = None, observers: Iterable[object] = (),
                                  on_rolled_back: Callable[[Rollback], None] | None = None
                                  ) -> tuple[Rollback, RunResult]:
        """`rollback`, then `resume` at once; the machine is made ready first, so a rollback that could not
        go on (a module that no longer imports...) is refused before the branch is made."""
        machine = await self.machine(run_id, llms=llms)
        made = await self.rollback(run_id, to, branch=branch)
        if on_rolled_back is not None:
            on_rolled_back(made)
        return made, await self.resume(made.run_id, machine=machine, observers=observers)

    async def create_branch(self, run_id: str, name: str) -> Rollback:
        """A new branch at the run's current point, made the head (the old branch keeps its place)."""
        run = await self.store.get_run(run_id)
        return await self.rollback(run.id, run.steps + 1, branch=name)

    async def switch_branch(self, run_id: str, name: str) -> RunRow:
        """Make an existing branch the head again; the run is `paused` there unless that branch had ended."""
        return await rewrite.switch_branch(self.store, run_id, name, clock=self.clock)

    async def checkpoint(self, run_id: str, name: str) -> CheckpointRow:
        """Name the run's current point (just before its next step)."""
        return await rewrite.name_checkpoint(self.store, run_id, name, clock=self.clock)

    async def cancel(self, run_id: str) -> RunRow:
        """Stop a run for good; a process advancing it stops at its next step."""
        run = await self.store.get_run(run_id)
        return await self.store.cancel(run.id, now=self.clock())

    async def prune(self, *, older_than: float | None = None, keep_last: int | None = None,
                    statuses: Iterable[str] = (), dry_run: bool = False) -> list[RunRow]:
        """Delete old finished runs (see `agentfsm.history.rewrite.prune`); returns what was (or would be) deleted."""
        return await rewrite.prune(self.store, older_than=older_than, keep_last=keep_last, statuses=statuses,
                                   dry_run=dry_run, clock=self.clock)

    # -- reading --------------------------------------------------------------------------------------------

    async def open(self, run_id: str) -> RunHandle:
        """A handle on one run, with the seed's vocabulary (`rollback(steps)`, `rollback_to_point`...)."""
        from agentfsm.service.handle import RunHandle

        return RunHandle(self, (await self.store.get_run(run_id)).id)

    async def get(self, run_id: str) -> RunRow:
        return await self.store.get_run(run_id)

    async def list(self, *, status: str | None = None, machine: str | None = None, limit: int | None = None,
                   parent: str | None = None) -> list[RunRow]:
        """Runs, newest first; with `parent`, that run's child runs."""
        return await self.store.list_runs(RunFilter((status,) if status else (), machine, None, limit, parent))

    async def tree(self, *, status: str | None = None, machine: str | None = None, limit: int | None = None
                   ) -> list[tuple[int, RunRow]]:
        """Top-level runs, newest first, each followed by its child runs (and theirs), as (depth, run)."""
        found: list[tuple[int, RunRow]] = []

        async def add(run: RunRow, depth: int) -> None:
            found.append((depth, run))
            children = await self.store.list_runs(RunFilter(parent_run=run.id))
            for child in sorted(children, key=lambda row: (row.parent_step or 0, row.created_at)):
                await add(child, depth + 1)

        top = RunFilter((status,) if status else (), machine, None, limit, None, True)
        for run in await self.store.list_runs(top):
            await add(run, 0)
        return found

    async def inputs(self, run_id: str) -> dict[str, Any]:
        return await self.store.inputs((await self.store.get_run(run_id)).id)

    async def iter_history(self, run_id: str, branch: str | None = None) -> AsyncIterator[StepRow]:
        """The steps of a branch (default: the head), oldest first, without step 0, read a page at a time."""
        run = await self.store.get_run(run_id)
        segments = lineage(await self.store.branches(run.id), branch or run.head)
        async for row in stream_branch(self.store, run.id, segments, first=1):
            yield row

    async def history(self, run_id: str, branch: str | None = None) -> list[StepRow]:
        """The steps of a branch (default: the head), oldest first, without step 0."""
        return [row async for row in self.iter_history(run_id, branch)]

    async def branches(self, run_id: str) -> list[BranchRow]:
        return await self.store.branches((await self.store.get_run(run_id)).id)

    async def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        return await self.store.checkpoints((await self.store.get_run(run_id)).id)

    async def point(self, run_id: str, text: str) -> Point:
        """Resolve a point as written on the command line (on the head branch unless it names another)."""
        run = await self.store.get_run(run_id)
        return await resolve_point(self.store, run, await self.store.branches(run.id), text)

    async def position(self, run_id: str, point: Point) -> Position:
        run = await self.store.get_run(run_id)
        return await position(self.store, run.id, await self.store.branches(run.id), point.branch, point.point)

    async def diff(self, run_id: str, a: str, b: str) -> RunDiff:
        """What changed from point `a` to point `b` of one run (each as `point()` reads it)."""
        run = await self.store.get_run(run_id)
        branches = await self.store.branches(run.id)
        sides = []
        for text in (a, b):
            point = await resolve_point(self.store, run, branches, text)
            sides.append((await position(self.store, run.id, branches, point.branch, point.point),
                          await path_to(self.store, run.id, branches, point.branch, point.point)))
        (where_a, path_a), (where_b, path_b) = sides
        return diff_positions(run.id, a, where_a, path_a, b, where_b, path_b)

    # -- traces ----------------------------------------------------------------------------------------------

    async def iter_trace(self, run_id: str, *, after: int = 0, resolved: bool = True
                         ) -> AsyncIterator[dict[str, Any]]:
        """The run's trace entries numbered above `after`, oldest first (large values put back unless `resolved`
        is false, which leaves them as `{"$ref": DIGEST}`); read a page at a time."""
        run = await self.store.get_run(run_id)
        async for entry in iter_trace(self.store, run.id, after=after, resolved=resolved):
            yield entry

    async def trace_pages(self, run_id: str, *, after: int = 0, resolved: bool = True
                          ) -> AsyncIterator[list[dict[str, Any]]]:
        """`iter_trace` a page at a time: lists of entries, oldest first (what a long trace is written from)."""
        run = await self.store.get_run(run_id)
        async for page in iter_trace_pages(self.store, run.id, after=after, resolved=resolved):
            yield page

    async def trace(self, run_id: str, *, after: int = 0, resolved: bool = True) -> list[dict[str, Any]]:
        """The run's trace entries (see `iter_trace`); each is the JSON described in docs/observability.md."""
        return [entry async for entry in self.iter_trace(run_id, after=after, resolved=resolved)]

    async def follow_trace(self, run_id: str, *, after: int = 0, poll: float = 0.2
                           ) -> AsyncIterator[dict[str, Any]]:
        """The trace as it grows, from any process sharing the store: entries as they are committed, until the
        run stops advancing (it ended, waits or is paused, and nobody holds it)."""
        import asyncio

        run = await self.store.get_run(run_id)
        while True:
            async for entry in iter_trace(self.store, run.id, after=after):
                after = entry["seq"]
                yield entry
            now = await self.store.get_run(run.id)
            advancing = now.status == "running" and lease_live(now.lease_owner, now.lease_expires, self.clock())
            if not advancing and await self.store.trace_end(run.id) <= after:
                return
            await asyncio.sleep(poll)

    async def summary(self, run_id: str, branch: str | None = None) -> dict[str, Any]:
        """The seed's history summary: state path, visits per state, branches and checkpoints."""
        run = await self.store.get_run(run_id)
        steps = await self.history(run.id, branch)
        visits: dict[str, int] = {}
        for row in steps:
            if row.state is not None:
                visits[row.state] = visits.get(row.state, 0) + 1
        return {
            "run_id": run.id, "machine": run.machine, "status": run.status, "branch": branch or run.head,
            "steps": len(steps), "state_path": [row.state for row in steps], "visits": visits,
            "branches": [known.name for known in await self.store.branches(run.id)],
            "checkpoints": {checkpoint.name: {"branch": checkpoint.branch, "step": checkpoint.point}
                            for checkpoint in await self.store.checkpoints(run.id)},
        }

