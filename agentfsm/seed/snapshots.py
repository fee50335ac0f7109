"""`StateHistory`: the seed's snapshots, rollback points and branches, kept as one run of a store.

A history is a run (`history.run_id`): each snapshot is a step of it (the state as its next
state, the context as the durable layer stores contexts: a full snapshot now and then,
RFC 6902 patches in between, so storage grows with what changes), a rollback point is a
checkpoint, and a branch is a branch. `agentfsm history|branches|checkpoints|diff RUN` and
`agentfsm.Runs` read it like any run.

The seed's methods are synchronous, the store is not. So the history keeps in memory what
it wrote (the same JSON texts the store holds: memory grows with change too) and answers
from that, and the writes wait in order until the next awaited call (`flush()`, a rollback,
a branch switch, the next transition of a run of the machine): a snapshot is durable once
flushed, and a process that dies before loses what it had not flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from agentfsm.history.deltas import ContextNotJSON, ContextTracker, ReplayCost, rebuild
from agentfsm.history.errors import RunRefused
from agentfsm.history.leases import LEASE_SECONDS, new_owner
from agentfsm.history.lineage import Segment, lineage
from agentfsm.history.persistence import checkpoint_version, private_context
from agentfsm.history.recorder import UNCUT, recordable
from agentfsm.history.rewrite import check_branch_name, check_checkpoint_name, next_rollback_name
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.model import StateContext
from agentfsm.store import open_store, rules
from agentfsm.store.base import BranchRow, CheckpointRow, Conflict, ContextKind, RunRow, StepRow
from agentfsm.store.core import Store
from agentfsm.store.memory import MemoryBackend

SNAPSHOT_EVENT = "snapshot"
"""The event of a step that records a snapshot taken by hand (no state ran in it)."""


class StateSnapshot:
    """One snapshot: `state_name`, `context` (read back from what is stored), `timestamp`, `metadata`, and its place.

    `index` is its step on its branch: snapshot `i` of a branch's path is step `i` of the run.
    """

    __slots__ = ("_history", "_row")

    def __init__(self, history: StateHistory, row: StepRow) -> None:
        self._history = history
        self._row = row

    @property
    def index(self) -> int:
        return self._row.step

    @property
    def branch(self) -> str:
        """The branch that recorded it (a branch made later may share it)."""
        return self._row.branch

    @property
    def state_name(self) -> str | None:
        return self._row.next_state

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch, as the runtime's `StateTransition.timestamp`."""
        return self._row.started_at

    @property
    def transition_index(self) -> int:
        """How many transitions the context had taken when the snapshot was taken."""
        return int((self._row.event_data or {}).get("transition_index", 0))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict((self._row.event_data or {}).get("metadata") or {})

    @property
    def context(self) -> StateContext:
        """The context as it was, a new copy each time (changing it changes no snapshot)."""
        data, _ = self._history.data_at(self._row.branch, self._row.step)
        context = StateContext(data, metadata={"machine": self._history.machine})
        context.state = self.state_name
        return context

    def __repr__(self) -> str:
        return f"StateSnapshot(index={self.index}, branch={self.branch!r}, state_name={self.state_name!r})"


@dataclass(frozen=True, slots=True)
class _NewRun:
    first: StepRow


@dataclass(frozen=True, slots=True)
class _Step:
    row: StepRow


@dataclass(frozen=True, slots=True)
class _Name:
    checkpoint: CheckpointRow
    wanted: str


@dataclass(frozen=True, slots=True)
class _Fork:
    branch: BranchRow


@dataclass(frozen=True, slots=True)
class _Head:
    name: str
    steps: int


_Write = _NewRun | _Step | _Name | _Fork | _Head


def check_point_name(name: str) -> None:
    check_checkpoint_name(name, "rollback point")


def _private_store(run_id: str) -> Store:
    """A memory store of this history's own: not shared by URL, gone with the history."""
    return Store(MemoryBackend(f"history-{run_id}"))


class StateHistory:
    """Snapshots, rollback points and branches of one machine, as one run of `store` (see the module's docstring).

    `store`: a `Store`, a store URL (durable), or None for a private in-memory store. `run_id`:
    a history kept before, read back by `await load()`; None starts a new one.
    """

    def __init__(self, store: Store | str | None = None, *, run_id: str | None = None,
                 machine: str = "history") -> None:
        self.run_id = run_id or new_run_id()
        self.store: Store = _private_store(self.run_id) if store is None else (
            open_store(store) if isinstance(store, str) else store)
        self.machine = machine
        self.head = "main"
        self._branches: dict[str, BranchRow] = {}
        self._steps: dict[str, list[StepRow]] = {}
        self._checkpoints: dict[str, CheckpointRow] = {}
        self._tracker: ContextTracker | None = None
        self._pending: list[_Write] = []
        self._loaded = run_id is None
        self._lock: asyncio.Lock | None = None

    # -- the seed's reads (synchronous, from memory) -----------------------------------------------------

    @property
    def snapshots(self) -> list[StateSnapshot]:
        """The snapshots on the current branch's path, oldest first (index `i` is snapshot `i`)."""
        return [StateSnapshot(self, row) for row in self._path(self.head)]

    @property
    def branches(self) -> list[str]:
        return list(self._branches)

    @property
    def rollback_points(self) -> dict[str, int]:
        """Rollback points on the current branch's path: name -> snapshot index."""
        return {name: row.point - 1 for name, row in self._checkpoints.items()
                if (found := self._row_at(self.head, row.point - 1)) is not None
                and found is self._row_at(row.branch, row.point - 1)}

    @property
    def checkpoints(self) -> list[CheckpointRow]:
        """Every rollback point, on whichever branch, oldest first."""
        return list(self._checkpoints.values())

    @property
    def pending_writes(self) -> int:
        """Writes waiting for the next awaited call (`flush()`)."""
        return len(self._pending)

    def rollback_to_snapshot(self, index: int) -> StateSnapshot | None:
        """Snapshot `index` of the current branch's path (None when there is none); reading it changes nothing."""
        row = self._row_at(self.head, index) if index >= 0 else None
        return None if row is None else StateSnapshot(self, row)

    def rollback_to_point(self, name: str) -> StateSnapshot | None:
        """The snapshot the newest rollback point `name` names, on whichever branch; None when there is none."""
        checkpoint = self.checkpoint(name)
        row = None if checkpoint is None else self._row_at(checkpoint.branch, checkpoint.point - 1)
        return None if row is None else StateSnapshot(self, row)

    def get_recent_snapshots(self, count: int = 10) -> list[StateSnapshot]:
        path = self._path(self.head)
        return [StateSnapshot(self, row) for row in path[max(0, len(path) - count):]]

    def find_snapshot_by_state(self, state_name: str) -> StateSnapshot | None:
        """The newest snapshot of `state_name` on the current branch's path."""
        for row in reversed(self._path(self.head)):
            if row.next_state == state_name:
                return StateSnapshot(self, row)
        return None

    def get_state_path(self) -> list[str | None]:
        """The state of each snapshot on the current branch's path, oldest first."""
        return [row.next_state for row in self._path(self.head)]

    def latest(self) -> StateSnapshot | None:
        """The newest snapshot on the current branch's path."""
        last = self.last_step(self.head)
        return self.rollback_to_snapshot(last) if last >= 0 else None

    def checkpoint(self, name: str) -> CheckpointRow | None:
        """The newest rollback point of that name (`NAME`, `NAME#2`...)."""
        versions = [(version, row) for row in self._checkpoints.values()
                    if (version := checkpoint_version(row.name, name)) is not None]
        return max(versions, key=lambda pair: pair[0])[1] if versions else None

    # -- the seed's writes (synchronous: recorded in memory, written by the next flush) ----------------------

    def take_snapshot(self, state_name: str | None, context: StateContext,
                      metadata: dict[str, Any] | None = None) -> StateSnapshot:
        """Record the state and a copy of the context (what changed since the last snapshot) as the next snapshot."""
        snapshot = self.record(state_name, context.data, metadata=metadata, transition_index=len(context.history))
        assert snapshot is not None  # only `only_if_changed` records nothing
        return snapshot

    def record(self, state_name: str | None, data: Any, *, metadata: dict[str, Any] | None = None,
               transition_index: int = 0, source: str | None = None, event: str = SNAPSHOT_EVENT,
               only_if_changed: bool = False) -> StateSnapshot | None:
        """Record a snapshot; `source` and `event` say which state and event led to it (a run's transition).

        With `only_if_changed`, nothing is recorded (None) when the state and data are the newest snapshot's.
        Raises ContextNotJSON, naming the key, when the data is not JSON (nothing is recorded).
        """
        self._check_loaded()
        extra = recordable({"metadata": dict(metadata or {}), "transition_index": transition_index}, UNCUT)
        now = self.store.clock()
        if self._tracker is None:
            tracker = ContextTracker(data)
            first = StepRow("main", 0, None, event, extra, state_name, now, context_kind="snapshot",
                            context=private_context(tracker.snapshot()))
            self._branches["main"] = BranchRow("main", None, 0, now)
            self._steps["main"] = [first]
            self._tracker = tracker
            self._pending.append(_NewRun(first))
            return StateSnapshot(self, first)
        try:
            kind, text = self._tracker.change(data)
        except ContextNotJSON:
            self._reset_tracker()  # it may have taken in part of the change before it met the bad value
            raise
        last = self._row_at(self.head, self.last_step(self.head))
        if only_if_changed and kind is None and last is not None and last.next_state == state_name:
            return None
        return self._append(state_name, kind, text, source, event, extra, now)

    def _append(self, state_name: str | None, kind: ContextKind | None, text: str | None, source: str | None,
                event: str, extra: dict[str, Any], now: float) -> StateSnapshot:
        row = StepRow(self.head, self.last_step(self.head) + 1, source, event, extra, state_name, now,
                      context_kind=kind, context=None if text is None else private_context(text))
        self._steps[self.head].append(row)
        self._pending.append(_Step(row))
        return StateSnapshot(self, row)

    def create_rollback_point(self, name: str) -> bool:
        """Name the newest snapshot; False when there is none. A name used before becomes `NAME#2`, `#3`...

        Names that read as a point of a run (a number, `start`, `head`, `state:...`) or hold `@` are refused.
        """
        self._check_loaded()
        check_point_name(name)
        last = self.last_step(self.head)
        if last < 0:
            return False
        given = rules.free_checkpoint_name(name, None, self._checkpoints)
        checkpoint = CheckpointRow(given, self.head, last + 1, self.store.clock())
        self._checkpoints[given] = checkpoint
        self._pending.append(_Name(checkpoint, name))
        return True

    def fork(self, name: str, parent: str, fork: int, *, make_head: bool) -> None:
        """A new branch starting after step `fork - 1` of `parent`'s path; the current one stays unless `make_head`."""
        self._check_loaded()
        check_branch_name(name)
        if name in self._branches:
            raise RunRefused(f"history {self.run_id} already has a branch '{name}'")
        self._branches[name] = BranchRow(name, parent, fork, self.store.clock())
        self._steps[name] = []
        self._pending.append(_Fork(self._branches[name]))  # the store makes a new branch its head...
        if make_head:
            self.head = name
            self._reset_tracker()
        else:  # ...so the head goes back at once
            self._pending.append(_Head(self.head, self.last_step(self.head)))

    def switch(self, name: str) -> None:
        """Make another branch the current one: snapshots go on from its newest."""
        self._check_loaded()
        if name not in self._branches:
            raise RunRefused(f"history {self.run_id} has no branch '{name}'")
        if name != self.head:
            self.head = name
            self._reset_tracker()
            self._pending.append(_Head(name, self.last_step(name)))

    def free_rollback_name(self) -> str:
        return next_rollback_name(self._branches)

    # -- the store ----------------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what waits, in order; each write is the store's own transaction. A failed write stays queued."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await self._write_pending()

    async def _write_pending(self) -> None:
        owner: str | None = None
        try:
            while self._pending:
                write = self._pending[0]
                if isinstance(write, _Step):
                    owner = owner or await self._lease()
                    now = self.store.clock()
                    await self.store.commit_step(self.run_id, owner, now + LEASE_SECONDS, write.row, [], None)
                else:
                    if owner is not None:  # branches and names are refused while the run is leased
                        await self.store.release(self.run_id, owner, status="paused")
                        owner = None
                    await self._write(write)
                self._pending.pop(0)
        except BaseException:
            if owner is not None:
                with contextlib.suppress(Exception):  # the write's own error matters more; the lease expires
                    await self.store.release(self.run_id, owner, status="paused")
            raise
        if owner is not None:
            await self.store.release(self.run_id, owner, status="paused")

    async def _lease(self) -> str:
        owner = new_owner()
        now = self.store.clock()
        await self.store.acquire(self.run_id, owner, now + LEASE_SECONDS, now=now)
        return owner

    async def _write(self, write: _Write) -> None:
        now = self.store.clock()
        if isinstance(write, _NewRun):
            # created when its first snapshot was taken, so its branches are listed in the order they were made
            made = write.first.started_at
            run = RunRow(id=self.run_id, machine=self.machine, digest=None, path=None, status="paused",
                         created_at=made, updated_at=now)
            await self.store.create_run(run, None, write.first, [])
        elif isinstance(write, _Fork):
            await self.store.create_branch(self.run_id, write.branch, now=now)
        elif isinstance(write, _Head):
            await self.store.switch_branch(self.run_id, write.name, "paused", write.steps, now=now)
        elif isinstance(write, _Name):
            await self._name(write.checkpoint, write.wanted)

    async def _name(self, checkpoint: CheckpointRow, wanted: str) -> None:
        try:
            await self.store.add_checkpoint(self.run_id, checkpoint)
        except Conflict:  # someone named a point of this run by hand meanwhile: the next free version
            taken = {row.name for row in await self.store.checkpoints(self.run_id)} | set(self._checkpoints)
            given = rules.free_checkpoint_name(wanted, None, taken)
            renamed = CheckpointRow(given, checkpoint.branch, checkpoint.point, checkpoint.created_at)
            await self.store.add_checkpoint(self.run_id, renamed)
            del self._checkpoints[checkpoint.name]
            self._checkpoints[given] = renamed

    async def load(self) -> None:
        """Read the history `run_id` names from the store (what a new process does before using it)."""
        if self._pending:  # what this history recorded goes first: reading must not drop it
            await self.flush()
        run = await self.store.find_run(self.run_id)
        if run is None:  # a new history under a name of the caller's
            self._loaded = True
            return
        branches = await self.store.branches(run.id)
        self._branches = {branch.name: branch for branch in branches}
        self._steps = {branch.name: await self.store.steps(run.id, branch.name) for branch in branches}
        self._checkpoints = {row.name: row for row in await self.store.checkpoints(run.id)}
        self.machine, self.head, self._pending = run.machine, run.head, []
        self._reset_tracker()
        self._loaded = True

    async def close(self) -> None:
        """Flush, then close the store."""
        try:
            await self.flush()
        finally:
            await self.store.close()

    def _check_loaded(self) -> None:
        if not self._loaded:
            raise RunRefused(f"history {self.run_id} is kept in {self.store.url}: `await load()` it before use")

    # -- reading the branches kept in memory ----------------------------------------------------------------

    def _segments(self, branch: str) -> list[Segment]:
        return lineage(list(self._branches.values()), branch) if self._branches else []

    def _own(self, segment: Segment, step: int) -> StepRow | None:
        rows = self._steps.get(segment.branch, [])
        index = step - segment.first
        return rows[index] if 0 <= index < len(rows) else None

    def _row_at(self, branch: str, step: int) -> StepRow | None:
        """Step `step` as branch `branch` sees it."""
        if branch not in self._branches:
            return None
        for segment in self._segments(branch):
            if segment.first <= step and (segment.last is None or step <= segment.last):
                return self._own(segment, step)
        return None

    def last_step(self, branch: str) -> int:
        """The newest step on a branch's path (-1 while there is no snapshot)."""
        if branch not in self._branches:
            return -1
        own = self._steps[branch]
        return own[-1].step if own else self._branches[branch].fork - 1

    def _path(self, branch: str) -> list[StepRow]:
        rows: list[StepRow] = []
        last = self.last_step(branch)
        for segment in reversed(self._segments(branch)):
            upper = last if segment.last is None else min(segment.last, last)
            rows.extend(row for row in self._steps[segment.branch] if segment.first <= row.step <= upper)
        return rows

    def data_at(self, branch: str, step: int) -> tuple[dict[str, Any], ReplayCost]:
        """The context data after step `step` of a branch: the newest full snapshot, then the patches after it."""
        collected: list[StepRow] = []
        for segment in self._segments(branch):  # newest first
            clipped = segment.clipped(step)
            if clipped is None:
                continue
            first, upper = clipped
            for number in range(step if upper is None else upper, first - 1, -1):
                row = self._own(segment, number)
                if row is None or row.context is None:
                    continue
                collected.append(row)
                if row.context_kind == "snapshot":
                    return rebuild(collected)
        return rebuild(collected)

    def _reset_tracker(self) -> None:
        last = self.last_step(self.head)
        if last < 0:
            self._tracker = None
            return
        data, cost = self.data_at(self.head, last)
        self._tracker = ContextTracker(data, since=cost)
