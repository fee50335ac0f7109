"""Advancing durable runs: start a run in a store, resume one from its head, and how an advance ends.

The machine arrives ready (compiled by the caller); this module records it. The step loop
never sees the store: a `StoreRecorder` observer commits each step before the next state
starts, the store's `LeaseKeeper` renews the run's lease while a long step runs, and whatever ends the
advance (the run's end, a wait, Ctrl-C, a lost lease) leaves the run in a state another
process can continue from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from agentfsm.history import debug_trace  # noqa: F401 - registers the breakpoint and watch entries
from agentfsm.history.children import StoredChildren
from agentfsm.history.deltas import SNAPSHOT_EVERY, ContextNotJSON, ContextTracker
from agentfsm.history.leases import LEASE_SECONDS, keeper, new_owner, owner_is_dead
from agentfsm.history.lineage import Position, position
from agentfsm.history.recorder import UNCUT, CheckpointNamer, StoreRecorder, recordable, redacted
from agentfsm.history.tally import Tally
from agentfsm.history.memory import MemorySampler
from agentfsm.history.trace import TraceRecorder
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.loop import RunResult, run_machine
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.history.errors import RunRefused
from agentfsm.store.base import FINISHED, LeaseLost, RunRow, StepRow
from agentfsm.store.core import Store
from agentfsm.store.rules import finished_phrase

Interrupted = Literal["paused", "running"]
"""How a run whose advance was interrupted (Ctrl-C, a cancelled task) is left once it took a step:
`paused` waits for a person's `resume`; `running` with no owner is continued by the next worker at once.
A run interrupted before it took any step goes back to how it was (a wait keeps waiting, with its timer)."""


class MachineSource(Protocol):
    """What a run records of the machine it runs: its text, the text's digest and the file it came from."""

    @property
    def text(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def path(self) -> Path: ...


@dataclass(frozen=True, slots=True)
class Recording:
    """How runs are recorded: lease length, snapshot cadence, and the clock."""

    lease_seconds: float = LEASE_SECONDS
    snapshot_every: int = SNAPSHOT_EVERY
    clock: Callable[[], float] = time.time
    trace: bool = True
    """Keep the run's trace (always, but for measuring what it costs)."""


@dataclass(frozen=True, slots=True)
class Parent:
    """For a child run: the run that starts it, the step of the parent that does, and the child's name there."""

    run_id: str
    step: int
    name: str


def source_of(machine: StateMachine) -> MachineSource | None:
    """The source a machine was compiled from (None for a machine built in Python)."""
    source = machine.source
    return source if all(hasattr(source, name) for name in ("text", "digest", "path")) else None


def flagged(machine: StateMachine) -> list[str]:
    """The states that name a checkpoint when a run reaches them."""
    return [name for name, state in machine.states.items() if state.checkpoint]


def _new_run(machine: StateMachine, inputs: Mapping[str, Any] | None, *, llms: Mapping[str, str] | None,
             run_id: str | None, recording: Recording, parent: Parent | None, owner: str | None,
             status: str, breakpoints: list[str] | None = None) -> tuple[RunRow, StateContext, ContextTracker, StepRow]:
    """A new run's row (leased to `owner`, if any), context and step 0; bad inputs are refused here."""
    context = machine.new_context(inputs)
    context.run_id = run_id or new_run_id()
    tracker = ContextTracker(context.data, snapshot_every=recording.snapshot_every)
    now = recording.clock()
    source = source_of(machine)
    run = RunRow(
        id=context.run_id, machine=machine.name, digest=None if source is None else source.digest,
        path=None if source is None else str(source.path.resolve()), status=status, head="main",
        created_at=now, updated_at=now, llms=dict(llms or {}), lease_owner=owner,
        lease_expires=None if owner is None else now + recording.lease_seconds,
        parent_run=None if parent is None else parent.run_id,
        parent_step=None if parent is None else parent.step, child_name=None if parent is None else parent.name,
        breakpoints=list(breakpoints or ()),
    )
    first = StepRow("main", 0, None, started_at=now, next_state=machine.initial, context_kind="snapshot",
                    context=redacted(tracker.snapshot()), tally=Tally().as_json())
    return run, context, tracker, first


async def start(store: Store, machine: StateMachine, inputs: Mapping[str, Any] | None, *,
                llms: Mapping[str, str] | None = None, observers: Iterable[object] = (), run_id: str | None = None,
                on_interrupt: Interrupted = "paused", recording: Recording = Recording(),
                parent: Parent | None = None, breakpoints: list[str] | None = None) -> RunResult:
    """Start a durable run: every step is committed to the store before the next state starts."""
    owner = new_owner()
    run, context, tracker, first = _new_run(machine, inputs, llms=llms, run_id=run_id, recording=recording,
                                            parent=parent, owner=owner, status="running", breakpoints=breakpoints)
    source = source_of(machine)
    namer = CheckpointNamer(flagged(machine), (), "main", recording.clock)
    await store.create_run(run, None if source is None else source.text, first,
                           namer.reached(machine.initial, 1), recordable(dict(inputs or {}), UNCUT))
    drive = _Advance(store, machine, context, owner, "main", recording, llms or {})
    return await drive.advance(tracker, namer, observers, idle_status=on_interrupt, on_interrupt=on_interrupt,
                               first_trace=1)


async def submit(store: Store, machine: StateMachine, inputs: Mapping[str, Any] | None, *,
                 llms: Mapping[str, str] | None = None, run_id: str | None = None,
                 recording: Recording = Recording()) -> RunRow:
    """Record a run as `queued`, as `start` would record it, without running it: a worker starts it."""
    run, _context, _tracker, first = _new_run(machine, inputs, llms=llms, run_id=run_id, recording=recording,
                                              parent=None, owner=None, status="queued")
    source = source_of(machine)
    namer = CheckpointNamer(flagged(machine), (), "main", recording.clock)
    await store.create_run(run, None if source is None else source.text, first,
                           namer.reached(machine.initial, 1), recordable(dict(inputs or {}), UNCUT))
    return run


async def resume(store: Store, run: RunRow, machine: StateMachine, *, replaced: MachineSource | None = None,
                 observers: Iterable[object] = (), on_interrupt: Interrupted = "paused",
                 recording: Recording = Recording(), owner: str | None = None) -> RunResult:
    """Continue a run from its head with `machine` (after a crash, a wait, a pause or a rollback).

    Everything is read and checked before the lease is taken, so a refused resume writes nothing;
    taking the lease with `expect=run` then makes sure nobody advanced, finished or cancelled the run
    meanwhile. `replaced` is the new source when the caller swaps in an edited machine file. `owner`: a worker
    that claimed the run (its lease is already `owner`'s) advances it under that lease.
    """
    refuse_finished(run)
    branches = await store.branches(run.id)
    where = await position(store, run.id, branches, run.head, run.steps + 1)
    ended = where.state is None and where.last is not None and where.last.step > 0
    if not ended and (where.state is None or where.state not in machine.states):
        raise RunRefused(f"run {run.id} is at state '{where.state}', which machine '{machine.name}' does not have")
    owner = owner or new_owner()
    now = recording.clock()
    taken_over = {run.lease_owner} if run.lease_owner and owner_is_dead(run.lease_owner) else set()
    # where a run goes back to when this resume takes no step: a wait keeps waiting (with its timer), a
    # paused run stays paused; a run taken over from a dead process is handed on like an interrupted one
    idle_status = "waiting" if run.status == "waiting" or run.waiting else (
        run.status if run.status in ("paused", "queued") else on_interrupt)
    before = run
    run = await store.acquire(run.id, owner, now + recording.lease_seconds, now=now, takeover=taken_over,
                              status="running", expect=before)
    context = context_at(machine, run.id, where)
    drive = _Advance(store, machine, context, owner, run.head, recording, run.llms)
    if ended:  # its process died between recording the last step and recording the end
        return await drive.finish_ended(where)
    try:
        if replaced is not None:
            await store.set_machine(run.id, owner, replaced.digest, replaced.text, str(replaced.path.resolve()))
        for event in await store.pending_events(run.id):
            context.mailbox.deliver(event.name, event.data, event.id)
        # the wait's timer runs on whatever happened to the resumes before this one (a crash, Ctrl-C)
        if before.waiting and before.waiting.get("state") == where.state:
            context.mailbox.deadline = before.waiting.get("deadline")
        tracker = ContextTracker(where.data, since=where.cost, snapshot_every=recording.snapshot_every)
        taken = {checkpoint.name for checkpoint in await store.checkpoints(run.id)}
        namer = CheckpointNamer(flagged(machine), taken, run.head, recording.clock)
        first_trace = await store.trace_end(run.id) + 1
    except BaseException:
        await store.release(run.id, owner, status=idle_status)
        raise
    return await drive.advance(tracker, namer, observers, idle_status=idle_status, on_interrupt=on_interrupt,
                               first_trace=first_trace)


class _Advance:
    """One process advancing one run under its lease."""

    def __init__(self, store: Store, machine: StateMachine, context: StateContext, owner: str, branch: str,
                 recording: Recording, llms: Mapping[str, str]) -> None:
        self.store, self.machine, self.context, self.owner, self.branch = store, machine, context, owner, branch
        self.recording = recording
        context.children = StoredChildren(store, recording, branch, llms)
        context.metadata["branch"] = branch

    async def advance(self, tracker: ContextTracker, namer: CheckpointNamer, observers: Iterable[object], *,
                      idle_status: str, on_interrupt: Interrupted, first_trace: int) -> RunResult:
        store, context, run_id = self.store, self.context, self.context.run_id
        leases = keeper(store, self.recording.lease_seconds)
        lease = leases.hold(run_id, self.owner, self.recording.clock)
        trace = TraceRecorder(context, self.branch, first_trace) if self.recording.trace else None
        recorder = StoreRecorder(store, context, self.owner, self.branch, tracker, namer, lease, trace)
        # the trace only buffers: it goes before the recorder, which writes its entries with each step
        # the memory sampler notes into the trace: after it, before the recorder that writes what it notes
        watching: list[object] = [recorder, *observers]
        if trace is not None:
            watching[:0] = [trace, MemorySampler(trace)]
        try:
            return await run_machine(self.machine, context, observers=watching, run_id=run_id)
        except LeaseLost:
            run = await store.get_run(run_id)
            if run.status != "cancelled":
                raise
            # the step in flight (if any) was refused: the run's steps are the ones the store kept
            return RunResult(run_id, "cancelled", None, context, run.steps)
        except ContextNotJSON as exc:
            error = {"type": "context.not_json", "message": str(exc), "state": context.state}
            await store.end_run(run_id, self.owner, "failed", error=error)
            return RunResult(run_id, "failed", None, context, context.step - 1, error)
        except BaseException as exc:
            # interrupted (Ctrl-C, a cancelled task) or a failing store: the last committed step stands
            if trace is not None:
                await flush_quietly(store, run_id, trace)
            await release_quietly(store, run_id, self.owner, left_as(exc, recorder.committed, idle_status,
                                                                        on_interrupt))
            raise
        finally:
            leases.drop(lease)

    async def finish_ended(self, where: Position) -> RunResult:
        """Record the end of a run whose last step ended it, as the loop would have."""
        last = where.last
        assert last is not None
        failed = last.error is not None or last.event == "fail"
        status = "failed" if failed else "succeeded"
        output = None if failed else last.result
        await self.store.end_run(self.context.run_id, self.owner, status, output=output, error=last.error,
                                 usage=self.context.usage)
        return RunResult(self.context.run_id, status, output, self.context, where.step, last.error,
                         dict(self.context.usage))


async def release_quietly(store: Store, run_id: str, owner: str, status: str) -> None:
    """Hand the run back; if even that fails, its lease expires (the original error matters more)."""
    try:
        await asyncio.shield(store.release(run_id, owner, status=status))
    except (Exception, asyncio.CancelledError):  # noqa: BLE001, S110 - see the docstring
        pass


async def flush_quietly(store: Store, run_id: str, trace: TraceRecorder) -> None:
    """Write the trace entries no step took (why the run stopped); the run's own state matters more."""
    write = trace.take()
    if write is None:
        return
    try:
        await asyncio.shield(store.append_trace(run_id, write))
    except (Exception, asyncio.CancelledError):  # noqa: BLE001, S110 - a trace must not hide the real error
        pass


def left_as(exc: BaseException, committed: int, idle_status: str, on_interrupt: Interrupted) -> str:
    """The status a run is released with when its advance ends by an exception."""
    if not committed and idle_status != "running":
        return idle_status  # nothing happened: as it was
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return on_interrupt
    # a failing store: a person looks first (a worker would run the failing step again and again)
    return "paused"


def refuse_finished(run: RunRow) -> None:
    if run.status in FINISHED:
        raise RunRefused(f"run {run.id} has {finished_phrase(run.status)}; nothing to resume "
                         f"(roll it back to continue from an earlier point: agentfsm rollback {run.id} --to ...)")


def context_at(machine: StateMachine, run_id: str, where: Position) -> StateContext:
    """A context standing where `where` says: ready for the loop to continue the run.

    Its `history` starts empty: the transitions before the point are in the store
    (`Runs.history`), and reading them all would make resuming cost the run's length.
    """
    context = StateContext(where.data, metadata={"machine": machine.name})
    context.run_id = run_id
    context.step = where.step
    context.state = where.state
    context.visits = dict(where.visits)
    context.event = where.event
    context.usage = {binding: dict(totals) for binding, totals in where.usage.items()}
    context.bindings = {binding: dict(session) for binding, session in where.bindings.items()}
    return context
