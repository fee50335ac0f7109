"""What a store keeps (rows), how it fails (errors), and what a backend must provide (transactions of primitives).

The step loop never sees a store; `agentfsm.history` records runs through an observer.
A store keeps rows and enforces the few rules that must hold atomically (a lease fences
every write of a run; an event is accepted only by a run waiting for it); those rules
live once, in `agentfsm.store.store`, above the backends. A backend (SQLite, memory,
PostgreSQL) only reads and writes rows inside transactions (`Backend`, `Transaction`).
Contexts are not interpreted here: their changes arrive as ready-made JSON text (a full
snapshot or an RFC 6902 patch) and leave the same way.

Vocabulary:
- a run has branches; `main` is the first. A branch other than `main` starts at a
  *point* of its parent branch: it inherits the parent's steps numbered below `fork`
  and records its own steps from `fork` on.
- point k of a branch is the moment just before step k runs (point 1 is the start,
  after the run's step 0, which holds the initial context).
- the run's `head` is the branch that `resume` continues.
- a child run (a nested machine, a parallel branch, a team agent) names its parent run,
  the parent's step that started it, and its name there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RunStatus = Literal["queued", "running", "waiting", "paused", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATUSES: tuple[str, ...] = ("queued", "running", "waiting", "paused", "succeeded", "failed", "cancelled")
"""`queued`: submitted (`agentfsm submit`), no worker has started it yet."""

ContextKind = Literal["snapshot", "patch"]


class StoreError(Exception):
    """The store cannot be used: a damaged or foreign file, a newer schema, a lock held too long.

    The message is one line naming the store's file or URL.
    """


class NoStore(StoreError):
    """No store was ever made there (reading commands do not make one)."""


class RunNotFound(StoreError):
    """No run has that id (or the prefix matches none or several)."""


class Conflict(StoreError):
    """The write breaks a rule that other writers rely on: a duplicate name, a run that is not waiting."""


class LeaseHeld(Conflict):
    """Another live process holds the run's lease."""


class RunMoved(Conflict):
    """The run finished, or was advanced, rolled back or cancelled, since the caller read it."""


class LeaseLost(StoreError):
    """This process no longer holds the run's lease (it was cancelled, or another process took it over)."""


class Transient(StoreError):
    """The transaction failed for a passing reason and changed nothing (a deadlock broken by the database, a
    connection lost before it committed): running it again may succeed."""


class Refused(Conflict):
    """A write a caller's own rule refused inside the transaction (a memory key locked by another agent...):
    `reason` is what the caller raised."""

    def __init__(self, reason: Exception) -> None:
        super().__init__(str(reason))
        self.reason = reason


class Damaged(StoreError):
    """A stored value cannot be read (the store's file was edited or damaged); the message names the file."""


def lease_live(owner: str | None, expires: float | None, now: float) -> bool:
    """Whether a process holds a run's lease at `now` (an owner without an expiry holds it for good)."""
    return owner is not None and (expires is None or expires >= now)


@dataclass(slots=True)
class RunRow:
    """One run, as the store keeps it. JSON-valued fields are Python values here."""

    id: str
    machine: str
    """The machine's name."""
    digest: str | None
    """sha256 of the machine's source text; None for a machine built in Python."""
    path: str | None
    """The machine file's path when the run started (it resolves relative files and modules)."""
    status: str
    head: str = "main"
    created_at: float = 0.0
    updated_at: float = 0.0
    llms: dict[str, str] = field(default_factory=dict)
    """`--llm` overrides the run started with (NAME -> PROVIDER:MODEL), reused on resume."""
    output: Any = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    """The number of the head branch's last recorded step."""
    waiting: dict[str, Any] | None = None
    """While `waiting`: {"state", "events": [...], "deadline": seconds since the epoch or None}."""
    wake_at: float | None = None
    """While `waiting` with a timer: when the timer is due (same as waiting["deadline"])."""
    lease_owner: str | None = None
    lease_expires: float | None = None
    parent_run: str | None = None
    """For a child run: the run that started it."""
    parent_step: int | None = None
    """For a child run: the parent's step that started it."""
    child_name: str | None = None
    """For a child run: its name in the parent (the nested state, branch or agent)."""
    breakpoints: list[str] = field(default_factory=list)
    """Breakpoints set on the run (`STATE` or `STATE:GUARD`, as written): it pauses before entering those states."""


@dataclass(slots=True)
class StepRow:
    """One recorded step of one branch. Step 0 is the run's start (no state ran; it holds the first context)."""

    branch: str
    step: int
    state: str | None
    event: str | None = None
    event_data: Any = None
    next_state: str | None = None
    started_at: float = 0.0
    duration: float = 0.0
    retries: int = 0
    error: dict[str, Any] | None = None
    result: Any = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    context_kind: ContextKind | None = None
    """How the context after this step is stored: a full snapshot, a patch from the step before, or None (unchanged)."""
    context: str | None = None
    """The snapshot or patch as JSON text (None when unchanged)."""
    tally: dict[str, Any] | None = None
    """Now and then (see `agentfsm.history.tally`): what the run's path added up to after this step (visits per
    state, usage, what bindings remember), so reading a position never folds the whole history."""


@dataclass(slots=True)
class BranchRow:
    name: str
    parent: str | None
    """The branch it started from (None for `main`)."""
    fork: int
    """The first step number this branch records itself; steps below come from `parent`. `main` has 0."""
    created_at: float = 0.0


@dataclass(slots=True)
class CheckpointRow:
    name: str
    branch: str
    point: int
    """The point named: just before step `point` of `branch` runs."""
    created_at: float = 0.0
    state: str | None = None
    """For a checkpoint a run names itself after a `checkpoint: true` state: that state. If `name` is taken
    meanwhile (someone named a checkpoint by hand while the run went on), the store uses the first free
    `STATE#k` instead."""


@dataclass(slots=True)
class EventRow:
    id: int
    name: str
    data: Any
    created_at: float
    taken_branch: str | None = None
    taken_step: int | None = None
    """The step that took the event (None while it is pending; -1 when a rollback left the wait it was sent to)."""


@dataclass(slots=True)
class TraceRow:
    """Trace entries of one run written together (those of one step, or one outside any), numbered `seq`..`last`.

    `entries` is their JSON text (an array of objects), made by `agentfsm.history.trace`; the store
    does not read it. A large value inside an entry stands as `{"$ref": DIGEST}` for a payload.
    """

    seq: int
    last: int
    branch: str
    step: int
    entries: str


@dataclass(slots=True)
class TraceWrite:
    """Trace rows to write with a step (or alone), and the payloads they refer to (digest -> JSON text).

    A payload's JSON text is a string, or a change of another payload of the run (its base, a whole
    string): `{"$base": DIGEST, "start": N, "end": M, "middle": TEXT}` stands for the base's first N
    characters, then TEXT, then the base's last M characters. The base is written in the same or an
    earlier write, and is never a change itself. A small change is kept in the entry instead (the same
    object in place of `{"$ref": ...}`), its base a payload.
    """

    rows: list[TraceRow] = field(default_factory=list)
    payloads: dict[str, str] = field(default_factory=dict)


def payload_base(data: str) -> str | None:
    """The digest of the payload `data` (a stored payload's JSON text) is a change of, or None for a whole one."""
    if not data.startswith('{"$base":'):
        return None
    import json

    base = json.loads(data).get("$base")
    return base if isinstance(base, str) else None


def inline_base(value: dict[str, Any]) -> str | None:
    """The base's digest when `value` (a dict in an entry) is a change kept in the entry itself, else None."""
    base = value.get("$base")
    return base if isinstance(base, str) and len(value) == 4 and "middle" in value else None


@dataclass(slots=True)
class MessageRow:
    """A message on a team's bus, addressed to one agent (a message to `all` is one row per recipient)."""

    id: int
    team: str
    sender: str
    recipient: str
    topic: str | None
    content: Any
    writer: str
    """The step that sent it (`run:branch:step`): a step taken again after a crash sends nothing twice."""
    created_at: float
    taken_by: str | None = None
    """The step that took it (`run:branch:step`); None while nobody has."""


@dataclass(slots=True)
class MemoryRow:
    """One key of a team's shared memory: its value, version (0: never written) and lock."""

    key: str
    value: Any = None
    version: int = 0
    lock_owner: str | None = None
    lock_expires: float | None = None
    updated_at: float = 0.0


@dataclass(slots=True)
class WriteRow:
    """A write to a team's shared memory by one step (`writer`), kept so the step taken again finds it done."""

    writer: str
    key: str
    op: str
    value: Any
    version: int
    at: float
    agent: str = ""


class TeamRows(Protocol):
    """The rows of teams' message buses and shared memories, inside one transaction (no rules: the store's)."""

    async def messages(self, team: str, *, recipient: str | None = None, untaken: bool = False,
                       writer: str | None = None, taker: str | None = None) -> list[MessageRow]:
        """A team's messages matching every given filter, oldest first."""
        ...
    async def insert_message(self, run_id: str, message: MessageRow) -> int: ...
    async def take_message(self, team: str, message_id: int, taker: str) -> bool: ...
    async def memory(self, team: str, key: str | None = None) -> list[MemoryRow]: ...
    async def put_memory(self, run_id: str, team: str, row: MemoryRow) -> None: ...
    async def writes(self, team: str, *, writer: str | None = None, key: str | None = None) -> list[WriteRow]: ...
    async def insert_write(self, run_id: str, team: str, row: WriteRow) -> None: ...
    async def run_messages(self, run_id: str) -> list[MessageRow]:
        """Every message of the teams run `run_id` holds, oldest first (for `store copy`)."""
        ...
    async def run_memory(self, run_id: str) -> list[tuple[str, MemoryRow]]:
        """Every (team, key) of the memories of the teams run `run_id` holds, by team and key."""
        ...
    async def run_writes(self, run_id: str) -> list[tuple[str, WriteRow]]:
        """Every logged memory write of the teams run `run_id` holds, by team, then as `writes` orders them."""
        ...


@dataclass(slots=True)
class RunFilter:
    """Which runs `list_runs` and `prune` look at; every set field must match."""

    statuses: tuple[str, ...] = ()
    machine: str | None = None
    updated_before: float | None = None
    limit: int | None = None
    parent_run: str | None = None
    """Only the children of this run."""
    top_level: bool = False
    """Only runs that are not children of another run."""
    before: tuple[float, str] | None = None
    """Only runs listed after this (created_at, id) in newest-first order: the next page of a listing (a keyset
    cursor, so page 200 costs what page 1 does)."""
    parents: tuple[str, ...] = ()
    """Only the children of any of these runs (one read for a whole level of a tree of runs)."""


@dataclass(slots=True)
class DueCandidate:
    """A run that may need a worker: as it is, and the names of the events pending for it."""

    run: RunRow
    pending: tuple[str, ...] = ()


@dataclass(slots=True)
class WorkerRow:
    """A worker process, as it registers itself in the store and beats while it lives."""

    id: str
    """Its lease owner id: the runs it holds have `lease_owner == id`."""
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    concurrency: int = 1
    machine: str | None = None
    """Only runs of this machine (`worker --machine NAME`)."""


# -- what a backend provides ------------------------------------------------------------------------------


class Transaction(Protocol):
    """Row operations inside one transaction of a backend; a write transaction commits when its block ends.

    Operations that find nothing return None or an empty list; they never apply domain rules
    (those are the store's). `update_run` with `owner` writes only while that owner holds the
    lease and says whether it wrote.
    """

    async def run(self, run_id: str) -> RunRow | None: ...
    async def lease_owner(self, run_id: str) -> str | None: ...
    async def runs_by_prefix(self, prefix: str, limit: int) -> list[RunRow]: ...
    async def runs_by_suffix(self, suffix: str, limit: int) -> list[RunRow]: ...
    async def list_runs(self, where: RunFilter) -> list[RunRow]: ...
    async def inputs(self, run_id: str) -> dict[str, Any] | None: ...
    async def source(self, digest: str) -> str | None: ...
    async def branches(self, run_id: str) -> list[BranchRow]: ...
    async def steps(self, run_id: str, branch: str, first: int, last: int | None, limit: int | None) -> list[StepRow]: ...
    async def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        """Steps first..last whose context changed, newest first, up to and including the first snapshot met."""
        ...
    async def tally_row(self, run_id: str, branch: str, first: int, last: int) -> StepRow | None:
        """The newest of steps first..last that carries a tally."""
        ...
    async def newest_step(self, run_id: str, branch: str, first: int, last: int | None) -> StepRow | None:
        """The newest of steps first..last (None: no upper bound) this branch recorded itself."""
        ...
    async def checkpoints(self, run_id: str) -> list[CheckpointRow]: ...
    async def checkpoint_names(self, run_id: str, prefix: str) -> set[str]: ...
    async def pending_events(self, run_id: str) -> list[EventRow]: ...
    async def pending_event_ids(self, run_id: str) -> set[int]: ...
    async def trace_rows(self, run_id: str, after: int, limit: int | None) -> list[TraceRow]:
        """Trace rows holding entries numbered above `after` (`last > after`), in order."""
        ...
    async def trace_end(self, run_id: str) -> int:
        """The number of the run's last trace entry (0: none)."""
        ...
    async def step_trace(self, run_id: str, branch: str, step: int) -> list[TraceRow]:
        """Trace rows of one step of one branch (those written with it, and any written apart for it), in order."""
        ...
    async def payloads(self, run_id: str, digests: list[str]) -> dict[str, str]: ...
    async def events(self, run_id: str) -> list[EventRow]:
        """Every event of the run, taken or not, oldest first."""
        ...
    async def due_candidates(self, now: float, limit: int, *, machine: str | None = None) -> list[DueCandidate]:
        """Runs nobody holds a live lease on (or claimed) at `now`: `waiting` ones with a pending event or a
        timer due by `now`, `running` ones (their process died) and `queued` ones, oldest first (only runs of
        `machine`, when given)."""
        ...
    async def claimable(self, now: float, limit: int, *, machine: str | None, skip: Collection[str]) -> list[RunRow]:
        """In a write transaction: up to `limit` due runs (as `rules.is_due` decides) not in `skip`, oldest
        first, locked until the transaction ends; rows another transaction holds locked are passed over, not
        waited for (PostgreSQL's FOR UPDATE SKIP LOCKED; a backend whose writers take turns needs no row lock)."""
        ...
    async def workers(self) -> list[WorkerRow]: ...
    async def lease_counts(self, owners: list[str]) -> dict[str, int]:
        """How many runs each of `owners` holds a lease on."""
        ...

    async def insert_run(self, run: RunRow, inputs: Mapping[str, Any], source: str | None) -> None: ...
    async def insert_branch(self, run_id: str, branch: BranchRow) -> None: ...
    async def insert_step(self, run_id: str, step: StepRow, trace: TraceRow | None = None) -> None:
        """Insert a step with the trace entries it made (kept with the step: no other row is written)."""
        ...
    async def insert_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> bool:
        """Insert unless the run has a checkpoint of that name; says whether it inserted."""
        ...
    async def update_run(self, run_id: str, values: Mapping[str, Any], *, owner: str | None = None) -> bool: ...
    async def add_source(self, digest: str, text: str) -> None: ...
    async def take_event(self, run_id: str, event_id: int, branch: str, step: int) -> bool:
        """Mark a pending event taken by a step; False when it is not pending."""
        ...
    async def set_aside_events(self, run_id: str, branch: str) -> None:
        """Mark every pending event of the run as never to be taken (taken_step -1)."""
        ...
    async def insert_event(self, run_id: str, name: str, data: Any, now: float) -> int: ...
    async def insert_trace(self, run_id: str, write: TraceWrite) -> None:
        """Insert trace rows and the payloads not kept yet (a payload is kept once per run and digest)."""
        ...
    def teams(self) -> TeamRows:
        """The team bus and memory rows in this transaction."""
        ...
    async def delete_runs(self, run_ids: list[str]) -> None:
        """Delete runs with everything they own (their trace and payloads too), and the sources no run uses any
        more."""
        ...
    async def put_worker(self, worker: WorkerRow) -> None:
        """Insert the worker's row, or replace it (its heartbeat)."""
        ...
    async def delete_workers(self, worker_ids: list[str]) -> None: ...


class Listener(Protocol):
    """Wake-ups for idle workers (PostgreSQL's LISTEN/NOTIFY): a run was queued, sent an event, handed back."""

    async def run(self, wake: Callable[[], None]) -> None:
        """Call `wake` at each notification, until cancelled (a lost connection is made again, then `wake`)."""
        ...


class Watcher(Protocol):
    """Which runs change, as they do, for readers showing runs live (the web UI): PostgreSQL's LISTEN/NOTIFY.

    A backend that can offer one has `watcher() -> Watcher`; without it such readers poll."""

    async def run(self, changed: Callable[[str | None], None], lost: Callable[[], None]) -> None:
        """Until cancelled: `changed(RUN_ID)` when a run's row changed; `changed(None)` when listening starts (what
        changed before is not told: read everything); `lost()` when listening stops (it starts again by itself)."""
        ...


class Heartbeat(Protocol):
    """Lease renewals from a thread of their own, on a connection of their own: they go on while the event loop
    is blocked (a state calling `time.sleep`), so a live process never loses its runs to a takeover.

    A backend that can offer one has `heartbeat() -> Heartbeat`; without it leases are renewed by a task of the
    event loop."""

    def renew(self, leases: list[tuple[str, str, float]]) -> list[bool]:
        """Set each (run, owner, expires) lease's expiry where `owner` still holds it; whether each one did."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    """A database holding rows: transactions, and nothing about what the rows mean."""

    def listener(self) -> Listener | None:
        """Wake-ups for idle workers, or None when this backend has none (its workers poll)."""
        ...

    url: str
    """Where the store lives, as shown in messages (`sqlite:///abs/path/runs.db`), never with a password."""

    def reading(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction whose reads see one snapshot."""
        ...

    def writing(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: it commits when the block ends, and rolls back (changing nothing) on an exception."""
        ...

    def stream_steps(self, run_id: str, branch: str, first: int, last: int | None) -> AsyncIterator[StepRow]:
        """Steps first..last of a branch, in order, read a page at a time (a long history is never held whole)."""
        ...

    async def close(self) -> None: ...
