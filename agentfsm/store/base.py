"""The store interface: what the durable-run layer needs from a database, and nothing more.

The step loop never sees a store; `agentfsm.history` drives one through the runtime's
hooks. A store keeps rows and enforces the few rules that must hold atomically
(a lease fences every write of a run; an event is accepted only by a run waiting for
it). It does not interpret contexts: context changes arrive as ready-made JSON text
(a full snapshot or an RFC 6902 patch) and leave the same way.

`SQLiteStore` (`agentfsm.store.sqlite`) is the implementation; a PostgreSQL store
implements the same protocol and runs the same tests.

Vocabulary:
- a run has branches; `main` is the first. A branch other than `main` starts at a
  *point* of its parent branch: it inherits the parent's steps numbered below `fork`
  and records its own steps from `fork` on.
- point k of a branch is the moment just before step k runs (point 1 is the start,
  after the run's step 0, which holds the initial context).
- the run's `head` is the branch that `resume` continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RunStatus = Literal["running", "waiting", "paused", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATUSES: tuple[str, ...] = ("running", "waiting", "paused", "succeeded", "failed", "cancelled")

ContextKind = Literal["snapshot", "patch"]


class StoreError(Exception):
    """The store cannot be used: a damaged or foreign file, a newer schema, a lock held too long.

    The message is one line naming the store's file or URL.
    """


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
    inputs: dict[str, Any] = field(default_factory=dict)
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
class RunFilter:
    """Which runs `list_runs` and `prune` look at; every set field must match."""

    statuses: tuple[str, ...] = ()
    machine: str | None = None
    updated_before: float | None = None
    limit: int | None = None


class Store(Protocol):
    """A durable home for runs. Every method is one transaction; a failing one changes nothing."""

    url: str
    """Where the store lives, as shown in messages (`sqlite:///abs/path/runs.db`)."""

    def close(self) -> None: ...

    # -- runs ---------------------------------------------------------------------------------

    def create_run(self, run: RunRow, source: str | None, first: StepRow, checkpoints: list[CheckpointRow]) -> None:
        """Insert a run (status `running`, leased to `run.lease_owner`), branch `main`, its step 0 and checkpoints.

        `source` is the machine's text, kept once per digest. Raises Conflict if the id exists.
        """
        ...

    def get_run(self, run_id: str) -> RunRow:
        """The run with this id, or with this unique id prefix (at least 4 characters). Raises RunNotFound."""
        ...

    def source(self, digest: str) -> str | None:
        """The machine text stored under `digest`."""
        ...

    def list_runs(self, where: RunFilter) -> list[RunRow]:
        """Matching runs, newest first (by creation)."""
        ...

    def delete_runs(self, run_ids: list[str], where: RunFilter | None = None, *, now: float,
                    takeover: set[str] | None = None) -> list[str]:
        """Delete runs with everything they own (steps, branches, checkpoints, events, unused sources).

        Within the same transaction, a run is skipped if it no longer matches `where` (its statuses and
        `updated_before`) or a live process holds its lease at `now` (owners in `takeover` are known dead):
        it changed since the caller chose it. Returns the ids deleted.
        """
        ...

    # -- leases ---------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str, expires: float, *, now: float,
                takeover: set[str] | None = None, status: str | None = None,
                expect: RunRow | None = None) -> RunRow:
        """Lease the run to `owner` until `expires` (setting `status` when given) and return it as it is now.

        Succeeds when the run has no lease, the lease expired before `now`, it is already
        `owner`'s, or its owner is in `takeover` (owners known dead). Otherwise raises LeaseHeld,
        whose message names the holder and when its lease expires. A finished run is refused
        (RunMoved), and so is one whose status, head or steps differ from `expect`'s (it changed
        since the caller read it: another process advanced, finished or cancelled it).
        """
        ...

    def renew(self, run_id: str, owner: str, expires: float) -> None:
        """Extend `owner`'s lease. Raises LeaseLost if `owner` no longer holds it."""
        ...

    def release(self, run_id: str, owner: str, *, status: str | None = None) -> None:
        """Drop `owner`'s lease (optionally setting the status). Raises LeaseLost if it no longer holds it.

        `waiting` is only set while the run still records what it waits for; otherwise it becomes `paused`."""
        ...

    # -- advancing a run (all fenced by the lease) -------------------------------------------------

    def commit_step(self, run_id: str, owner: str, expires: float, step: StepRow,
                    checkpoints: list[CheckpointRow], taken_event: int | None) -> list[str]:
        """Record one step in one transaction: the step row, the checkpoints it reached, the event it took
        (marked taken by this step; other pending events, sent to the same visit of the wait, are set aside),
        the run's `steps`, `updated_at` and `status='running'` (a wait it was in is over), and the lease
        extended to `expires`. Returns the names the checkpoints got (see `CheckpointRow.state`).

        Raises LeaseLost (and writes nothing) if `owner` no longer holds the lease."""
        ...

    def end_run(self, run_id: str, owner: str, status: str, *, output: Any = None,
                error: dict[str, Any] | None = None, usage: dict[str, Any] | None = None,
                waiting: dict[str, Any] | None = None) -> None:
        """Set how the run stopped (`succeeded`, `failed`, `waiting` with `waiting`, `paused`) and release the lease.

        `wake_at` becomes waiting["deadline"]. Raises LeaseLost if `owner` no longer holds the lease.
        """
        ...

    def set_machine(self, run_id: str, owner: str, digest: str, source: str, path: str) -> None:
        """Switch the run to another machine source (`resume --machine`), kept once per digest.

        Raises LeaseLost if `owner` no longer holds the lease."""
        ...

    def cancel(self, run_id: str, *, now: float) -> RunRow:
        """Mark a run `cancelled` and drop any lease (a live holder finds out at its next write).

        Raises Conflict if it is already finished."""
        ...

    # -- reading a run's history ------------------------------------------------------------------

    def branches(self, run_id: str) -> list[BranchRow]:
        """All branches of the run, oldest first."""
        ...

    def steps(self, run_id: str, branch: str, first: int = 0, last: int | None = None) -> list[StepRow]:
        """The steps this branch recorded itself (not inherited ones), numbered first..last, in order."""
        ...

    def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        """Steps first..last of this branch whose context changed (kind not None), newest first,
        stopping after the first snapshot met (so the caller can rebuild from it)."""
        ...

    def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        """Named points of the run, oldest first."""
        ...

    def add_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> None:
        """Name a point. Raises Conflict if the run already has a checkpoint with that name."""
        ...

    # -- branches -------------------------------------------------------------------------------

    def create_branch(self, run_id: str, branch: BranchRow, *, now: float) -> RunRow:
        """Add a branch and make it the head; the run becomes `paused` (ready to resume from the fork).

        Events still pending were sent to the old head's wait: they are set aside (taken_step -1), never taken.

        Raises Conflict if the name exists, LeaseHeld if a live process holds the run's lease."""
        ...

    def switch_branch(self, run_id: str, name: str, status: str, steps: int, *, now: float, output: Any = None,
                      error: dict[str, Any] | None = None) -> RunRow:
        """Make an existing branch the head, with the status, last step, output and error it has there.

        Pending events are set aside as in `create_branch`.

        Raises RunNotFound for an unknown branch, LeaseHeld if a live process holds the lease."""
        ...

    # -- external events --------------------------------------------------------------------------

    def add_event(self, run_id: str, name: str, data: Any, *, now: float) -> int:
        """Record an event for a run that is `waiting` for `name` and whose timer has not run out; returns its id.

        Raises Conflict (naming the events the run waits for, its status, or when its timer ran out) otherwise."""
        ...

    def pending_events(self, run_id: str) -> list[EventRow]:
        """Events delivered to the run and not yet taken, oldest first."""
        ...

    def due_runs(self, now: float, limit: int) -> list[str]:
        """Runs a worker should advance: `waiting` with a pending event it waits for or a timer due by `now`,
        and `running` runs whose lease expired before `now` (their process died). Oldest first."""
        ...
