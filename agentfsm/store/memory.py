"""The memory backend (`memory://NAME`): rows in this process's memory, for tests and runs nobody keeps.

Every store opened on the same `memory://NAME` in one process shares its rows; they are
gone when the process ends. Values are kept as their JSON text, so what comes back is
what a database would give back (a tuple comes back a list, nothing is shared with the
caller). Its operations never suspend, so no other task sees a transaction half-done; a
write transaction that fails is undone (each change it made is journalled), so, as in a
database, it changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from agentfsm.store.base import (
    BranchRow,
    CheckpointRow,
    Conflict,
    DueCandidate,
    EventRow,
    RunFilter,
    RunRow,
    StepRow,
    TraceRow,
    TraceWrite,
    WorkerRow,
    lease_live,
)
from agentfsm.store import rules
from agentfsm.store.memory_teams import MemoryTeamRows, TeamRowsKept

_SHARED: dict[str, MemoryBackend] = {}


def memory_backend(name: str) -> MemoryBackend:
    """The backend of `memory://NAME` in this process (made on first use)."""
    backend = _SHARED.get(name)
    if backend is None:
        backend = _SHARED[name] = MemoryBackend(name)
    return backend


_PLAIN = (str, int, float, bool, type(None))


def _frozen(value: Any) -> Any:
    """A value as kept: plain values as they are (immutable), containers as their JSON text."""
    if isinstance(value, _PLAIN):
        return value
    return _Text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _thawed(kept: Any) -> Any:
    return json.loads(kept) if isinstance(kept, _Text) else kept


class _Text(str):
    """JSON text standing for a container (so a kept string is never mistaken for one)."""

    __slots__ = ()


@dataclass(slots=True)
class _Branch:
    row: BranchRow
    steps: list[StepRow] = field(default_factory=list)
    """Steps `row.fork`, `row.fork + 1`... in order (a branch records its steps one after another)."""


@dataclass(slots=True)
class _Run:
    row: RunRow
    inputs: str
    branches: dict[str, _Branch] = field(default_factory=dict)
    checkpoints: dict[str, CheckpointRow] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    trace: list[TraceRow] = field(default_factory=list)
    trace_seqs: set[int] = field(default_factory=set)
    payloads: dict[str, str] = field(default_factory=dict)


class MemoryBackend:
    """Rows in dicts; see the module's docstring."""

    def __init__(self, name: str) -> None:
        self.url = f"memory://{name}"
        self.runs: dict[str, _Run] = {}
        self.sources: dict[str, str] = {}
        self.workers: dict[str, WorkerRow] = {}
        self.next_event = 1
        self.teams: dict[str, TeamRowsKept] = {}
        self.next_message = [0]

    async def close(self) -> None:
        """Nothing to release: the rows stay for the next store opened on this name."""

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[MemoryTransaction]:
        yield MemoryTransaction(self)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[MemoryTransaction]:
        tx = MemoryTransaction(self)
        try:
            yield tx
        except BaseException as exc:
            for undo in reversed(tx.journal):
                undo()
            if isinstance(exc, _Duplicate):  # as a database's unique key refuses it: the whole transaction fails
                raise Conflict(f"{self.url}: {exc}") from None
            raise

    def listener(self) -> None:
        """None: workers on this store poll."""
        return None

    async def stream_steps(self, run_id: str, branch: str, first: int, last: int | None) -> AsyncIterator[StepRow]:
        async with self.reading() as tx:
            rows = await tx.steps(run_id, branch, first, last, None)
        for row in rows:
            yield row


def _set_all(row: RunRow, values: list[tuple[str, Any]]) -> None:
    for key, value in values:
        setattr(row, key, value)


def _unappend(run: _Run, seq: int) -> None:
    run.trace.pop()
    run.trace_seqs.discard(seq)


class _Duplicate(Exception):
    """A row whose key is taken (a database's unique constraint): it fails the transaction it is written in."""


def _copy_run(row: RunRow) -> RunRow:
    return replace(row, llms=dict(row.llms), usage=_thawed(_frozen(row.usage)), output=_thawed(_frozen(row.output)),
                   error=_thawed(_frozen(row.error)), waiting=_thawed(_frozen(row.waiting)),
                   breakpoints=list(row.breakpoints))


def _copy_step(row: StepRow) -> StepRow:
    return replace(row, event_data=_thawed(_frozen(row.event_data)), error=_thawed(_frozen(row.error)),
                   result=_thawed(_frozen(row.result)), calls=_thawed(_frozen(row.calls)),
                   tally=_thawed(_frozen(row.tally)))


class MemoryTransaction:
    """The row operations of the memory backend (see `agentfsm.store.base.Transaction`)."""

    __slots__ = ("backend", "journal")

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.journal: list[Callable[[], object]] = []
        """How to undo each change this transaction made, oldest first."""

    def _run(self, run_id: str) -> _Run | None:
        return self.backend.runs.get(run_id)

    # -- reads ---------------------------------------------------------------------------------------

    async def run(self, run_id: str) -> RunRow | None:
        found = self._run(run_id)
        return None if found is None else _copy_run(found.row)

    async def lease_owner(self, run_id: str) -> str | None:
        found = self._run(run_id)
        return None if found is None else found.row.lease_owner

    async def runs_by_prefix(self, prefix: str, limit: int) -> list[RunRow]:
        matching = sorted(run_id for run_id in self.backend.runs if run_id.startswith(prefix))[:limit]
        return [_copy_run(self.backend.runs[run_id].row) for run_id in matching]

    async def runs_by_suffix(self, suffix: str, limit: int) -> list[RunRow]:
        matching = sorted(run_id for run_id in self.backend.runs if run_id.endswith(suffix))[:limit]
        return [_copy_run(self.backend.runs[run_id].row) for run_id in matching]

    async def list_runs(self, where: RunFilter) -> list[RunRow]:
        rows = [run.row for run in self.backend.runs.values() if rules.matches(run.row, where)]
        rows.sort(key=lambda row: (row.created_at, row.id), reverse=True)
        return [_copy_run(row) for row in rows[:where.limit]]

    async def inputs(self, run_id: str) -> dict[str, Any] | None:
        found = self._run(run_id)
        return None if found is None else _thawed(found.inputs)

    async def source(self, digest: str) -> str | None:
        return self.backend.sources.get(digest)

    async def branches(self, run_id: str) -> list[BranchRow]:
        found = self._run(run_id)
        # oldest first, as made (ties in the order written)
        rows = [] if found is None else [replace(branch.row) for branch in found.branches.values()]
        return sorted(rows, key=lambda row: row.created_at)

    def _steps(self, run_id: str, branch: str, first: int, last: int | None) -> list[StepRow]:
        found = self._run(run_id)
        kept = found.branches.get(branch) if found is not None else None
        if kept is None:
            return []
        base = kept.row.fork
        stop = len(kept.steps) if last is None else max(0, min(len(kept.steps), last - base + 1))
        return kept.steps[max(0, first - base):stop]

    async def steps(self, run_id: str, branch: str, first: int, last: int | None, limit: int | None) -> list[StepRow]:
        rows = self._steps(run_id, branch, first, last)
        return [_copy_step(row) for row in rows[:limit]]

    async def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        found: list[StepRow] = []
        for row in reversed(self._steps(run_id, branch, first, last)):
            if row.context_kind is None:
                continue
            found.append(_copy_step(row))
            if row.context_kind == "snapshot":
                break
        return found

    async def tally_row(self, run_id: str, branch: str, first: int, last: int) -> StepRow | None:
        for row in reversed(self._steps(run_id, branch, first, last)):
            if row.tally is not None:
                return _copy_step(row)
        return None

    async def newest_step(self, run_id: str, branch: str, first: int, last: int | None) -> StepRow | None:
        rows = self._steps(run_id, branch, first, last)
        return _copy_step(rows[-1]) if rows else None

    async def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        found = self._run(run_id)
        rows = [] if found is None else [replace(row) for row in found.checkpoints.values()]
        return sorted(rows, key=lambda row: row.created_at)

    async def checkpoint_names(self, run_id: str, prefix: str) -> set[str]:
        found = self._run(run_id)
        return set() if found is None else {name for name in found.checkpoints if name.startswith(prefix)}

    async def pending_events(self, run_id: str) -> list[EventRow]:
        found = self._run(run_id)
        return [] if found is None else [replace(e, data=_thawed(_frozen(e.data)))
                                         for e in found.events if e.taken_step is None]

    async def events(self, run_id: str) -> list[EventRow]:
        found = self._run(run_id)
        return [] if found is None else [replace(e, data=_thawed(_frozen(e.data))) for e in found.events]

    async def pending_event_ids(self, run_id: str) -> set[int]:
        found = self._run(run_id)
        return set() if found is None else {event.id for event in found.events if event.taken_step is None}

    async def trace_rows(self, run_id: str, after: int, limit: int | None) -> list[TraceRow]:
        found = self._run(run_id)
        rows = [] if found is None else [replace(row) for row in found.trace if row.last > after]
        return sorted(rows, key=lambda row: row.seq)[:limit]

    async def step_trace(self, run_id: str, branch: str, step: int) -> list[TraceRow]:
        found = self._run(run_id)
        rows = [] if found is None else [replace(row) for row in found.trace if (row.branch, row.step) == (branch, step)]
        return sorted(rows, key=lambda row: row.seq)

    async def trace_end(self, run_id: str) -> int:
        found = self._run(run_id)
        return max((row.last for row in found.trace), default=0) if found is not None else 0

    async def payloads(self, run_id: str, digests: list[str]) -> dict[str, str]:
        found = self._run(run_id)
        kept = {} if found is None else found.payloads
        return {digest: kept[digest] for digest in digests if digest in kept}

    async def due_candidates(self, now: float, limit: int, *, machine: str | None = None) -> list[DueCandidate]:
        candidates = []
        for run in sorted(self.backend.runs.values(), key=lambda run: (run.row.created_at, run.row.id)):
            row, pending = run.row, tuple(e.name for e in run.events if e.taken_step is None)
            if machine is not None and row.machine != machine:
                continue
            waiting = row.status == "waiting" and ((row.wake_at is not None and row.wake_at <= now) or pending)
            unheld = not lease_live(row.lease_owner, row.lease_expires, now)  # nobody advances or claimed it
            if unheld and (waiting or row.status in ("running", "queued")):
                candidates.append(DueCandidate(_copy_run(row), pending))
        return candidates[:limit]

    async def workers(self) -> list[WorkerRow]:
        return [replace(row) for row in self.backend.workers.values()]

    async def lease_counts(self, owners: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.backend.runs.values():
            if run.row.lease_owner in owners:
                counts[run.row.lease_owner] = counts.get(run.row.lease_owner, 0) + 1
        return counts

    async def claimable(self, now: float, limit: int, *, machine: str | None, skip: Collection[str]) -> list[RunRow]:
        return await rules.due_in_windows(self, now, limit, machine=machine, skip=skip)

    # -- writes --------------------------------------------------------------------------------------

    async def put_worker(self, worker: WorkerRow) -> None:
        self._put(self.backend.workers, worker.id, replace(worker))

    async def delete_workers(self, worker_ids: list[str]) -> None:
        for worker_id in worker_ids:
            self._drop(self.backend.workers, worker_id)

    def _put(self, kept: dict[str, Any], key: str, value: Any) -> None:
        """Set `kept[key]`, journalling how to put back what was there."""
        missing = key not in kept
        previous = kept.get(key)
        kept[key] = value
        self.journal.append(lambda: kept.pop(key) if missing else kept.__setitem__(key, previous))

    def _drop(self, kept: dict[str, Any], key: str) -> None:
        """Remove `kept[key]` (if there), journalling how to put it back."""
        if key in kept:
            value = kept.pop(key)
            self.journal.append(lambda: kept.__setitem__(key, value))

    async def insert_run(self, run: RunRow, inputs: Mapping[str, Any], source: str | None) -> None:
        if run.id in self.backend.runs:
            raise _Duplicate(f"run {run.id} exists already")
        if source is not None and run.digest is not None and run.digest not in self.backend.sources:
            self._put(self.backend.sources, run.digest, source)
        self._put(self.backend.runs, run.id, _Run(_copy_run(run), _frozen(dict(inputs))))

    async def insert_branch(self, run_id: str, branch: BranchRow) -> None:
        branches = self.backend.runs[run_id].branches
        if branch.name in branches:
            raise _Duplicate(f"run {run_id} has a branch '{branch.name}' already")
        self._put(branches, branch.name, _Branch(replace(branch)))

    async def insert_step(self, run_id: str, step: StepRow, trace: TraceRow | None = None) -> None:
        if trace is not None:
            await self.insert_trace(run_id, TraceWrite([trace]))
        kept = self.backend.runs[run_id].branches[step.branch]
        expected = kept.row.fork + len(kept.steps)
        if step.step != expected:  # a database would take a gap; this list of steps cannot
            raise _Duplicate(f"step {step.step} of branch '{step.branch}' recorded out of order (next: {expected})")
        kept.steps.append(_copy_step(step))
        self.journal.append(kept.steps.pop)

    async def insert_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> bool:
        checkpoints = self.backend.runs[run_id].checkpoints
        if checkpoint.name in checkpoints:
            return False
        self._put(checkpoints, checkpoint.name, CheckpointRow(checkpoint.name, checkpoint.branch, checkpoint.point,
                                                              checkpoint.created_at))
        return True

    async def update_run(self, run_id: str, values: Mapping[str, Any], *, owner: str | None = None) -> bool:
        found = self._run(run_id)
        if found is None or (owner is not None and found.row.lease_owner != owner):
            return False
        row = found.row
        previous: list[tuple[str, Any]] = []
        self.journal.append(partial(_set_all, row, previous))  # first: a value failing half-way is undone too
        for key, value in values.items():
            previous.append((key, getattr(row, key)))
            setattr(row, key, _thawed(_frozen(value)) if isinstance(value, dict | list) else value)
        return True

    async def add_source(self, digest: str, text: str) -> None:
        if digest not in self.backend.sources:
            self._put(self.backend.sources, digest, text)

    def _mark_taken(self, event: EventRow, branch: str, step: int) -> None:
        def undo() -> None:
            event.taken_branch, event.taken_step = None, None

        event.taken_branch, event.taken_step = branch, step
        self.journal.append(undo)

    async def take_event(self, run_id: str, event_id: int, branch: str, step: int) -> bool:
        for event in self.backend.runs[run_id].events:
            if event.id == event_id and event.taken_step is None:
                self._mark_taken(event, branch, step)
                return True
        return False

    async def set_aside_events(self, run_id: str, branch: str) -> None:
        for event in self.backend.runs[run_id].events:
            if event.taken_step is None:
                self._mark_taken(event, branch, -1)

    async def insert_event(self, run_id: str, name: str, data: Any, now: float) -> int:
        backend, events = self.backend, self.backend.runs[run_id].events
        event_id = backend.next_event

        def undo() -> None:
            events.pop()
            backend.next_event = event_id

        events.append(EventRow(event_id, name, _thawed(_frozen(data)), now))
        backend.next_event += 1
        self.journal.append(undo)
        return event_id

    async def insert_trace(self, run_id: str, write: TraceWrite) -> None:
        kept = self.backend.runs[run_id]
        for digest, data in write.payloads.items():
            if digest not in kept.payloads:
                self._put(kept.payloads, digest, data)
        for row in write.rows:
            if row.seq in kept.trace_seqs:  # as the database's key on (run_id, seq) refuses it
                raise _Duplicate(f"trace entry {row.seq} of run {run_id} exists already")
            kept.trace.append(replace(row))
            kept.trace_seqs.add(row.seq)
            self.journal.append(partial(_unappend, kept, row.seq))

    def teams(self) -> MemoryTeamRows:
        return MemoryTeamRows(self.backend.teams, self.backend.next_message, self.journal)

    async def delete_runs(self, run_ids: list[str]) -> None:
        self.teams().delete_runs(set(run_ids))
        for run_id in run_ids:
            self._drop(self.backend.runs, run_id)
        used = {run.row.digest for run in self.backend.runs.values()}
        for digest in [digest for digest in self.backend.sources if digest not in used]:
            self._drop(self.backend.sources, digest)



