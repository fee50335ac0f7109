"""`Store`: every operation on runs, as one transaction of a backend, with the domain rules applied once.

Each method is one transaction; a refused or failing call changes nothing. Step commits
that are ready at the same moment (many runs in one process) are written together in one
transaction (`agentfsm.store.batch`); each caller still returns only once its own step is
durable. Times the store records come from the injected `clock`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from agentfsm.store import rules
from agentfsm.store.base import (
    FINISHED,
    Backend,
    BranchRow,
    CheckpointRow,
    Conflict,
    DueCandidate,
    EventRow,
    LeaseHeld,
    LeaseLost,
    RunFilter,
    RunMoved,
    RunNotFound,
    RunRow,
    StepRow,
    TraceRow,
    TraceWrite,
    Transaction,
    lease_live,
)
from agentfsm.store.batch import WriteBatch


class Store:
    """Runs kept by a backend (SQLite, memory, PostgreSQL): the one interface the layers above use."""

    def __init__(self, backend: Backend, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.url = backend.url
        self.clock = clock
        self._batch = WriteBatch(backend)
        self._closer: Callable[[], Awaitable[None] | None] | None = None

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    async def close(self) -> None:
        """Close the store (a store shared by several callers in one process closes when the last one does)."""
        await self._batch.drain()
        closing = self._closer() if self._closer is not None else self.backend.close()
        if closing is not None:
            await closing

    # -- runs ---------------------------------------------------------------------------------------

    async def create_run(self, run: RunRow, source: str | None, first: StepRow, checkpoints: list[CheckpointRow],
                         inputs: Mapping[str, Any] | None = None) -> None:
        """Insert a run (leased to `run.lease_owner`), branch `main`, its step 0, checkpoints and inputs.

        `source` is the machine's text, kept once per digest. Raises Conflict if the id exists.
        """
        rules.check_json(dict(inputs or {}), "the run's inputs")
        async def create(tx: Transaction) -> None:
            if await tx.run(run.id) is not None:
                raise Conflict(f"run {run.id} already exists in {self.url}")
            await tx.insert_run(run, dict(inputs or {}), source if run.digest is not None else None)
            await tx.insert_branch(run.id, BranchRow("main", None, 0, run.created_at))
            await tx.insert_step(run.id, first)
            for checkpoint in checkpoints:
                await tx.insert_checkpoint(run.id, checkpoint)

        await self._batch.submit(create)

    async def transact(self, write: Callable[[Transaction], Awaitable[Any]]) -> Any:
        """Run `write(tx)` in the next write transaction (with whatever else is ready); a refusal it raises
        (`Conflict`, such as `Refused`) fails it alone and changes nothing."""
        return await self._batch.submit(write)

    async def get_run(self, run_id: str) -> RunRow:
        """The run with this id, or the one run whose id starts or ends with it (at least 4 characters: tables
        show the tail of an id, which tells runs apart). Raises RunNotFound."""
        if not rules.encodable(run_id):
            raise RunNotFound(f"no run {run_id.encode('utf-8', 'backslashreplace').decode()!r} in {self.url}")
        async with self.backend.reading() as tx:
            run = await tx.run(run_id)
            if run is not None:
                return run
            if len(run_id) < rules.MIN_PREFIX:
                raise RunNotFound(f"no run '{run_id}' in {self.url} (a part of a run id needs at least "
                                  f"{rules.MIN_PREFIX} characters)")
            found = [*await tx.runs_by_prefix(run_id, 6), *await tx.runs_by_suffix(run_id, 6)]
            return rules.part_match(run_id, found, self.url)

    async def find_run(self, run_id: str) -> RunRow | None:
        """The run with exactly this id, None when there is none (no search by a part of an id)."""
        if not rules.encodable(run_id):
            return None
        async with self.backend.reading() as tx:
            return await tx.run(run_id)

    async def inputs(self, run_id: str) -> dict[str, Any]:
        """The inputs a run started with."""
        async with self.backend.reading() as tx:
            return await tx.inputs(run_id) or {}

    async def source(self, digest: str) -> str | None:
        """The machine text stored under `digest`."""
        async with self.backend.reading() as tx:
            return await tx.source(digest)

    async def list_runs(self, where: RunFilter) -> list[RunRow]:
        """Matching runs, newest first (by creation)."""
        async with self.backend.reading() as tx:
            return await tx.list_runs(where)

    async def delete_runs(self, run_ids: list[str], where: RunFilter | None = None, *, now: float,
                          takeover: set[str] | None = None) -> list[str]:
        """Delete runs with everything they own (steps, branches, checkpoints, events, unused sources).

        A run is skipped if it no longer matches `where` (its statuses and `updated_before`) or a live
        process holds its lease at `now` (owners in `takeover` are known dead): it changed since the caller
        chose it. Returns the ids deleted.
        """
        async def delete(tx: Transaction) -> list[str]:
            chosen = []
            for run_id in dict.fromkeys(run_ids):
                run = await tx.run(run_id)
                if run is None or (where is not None and not rules.matches(run, where)):
                    continue
                if lease_live(run.lease_owner, run.lease_expires, now) and run.lease_owner not in (takeover or ()):
                    continue
                chosen.append(run_id)
            if chosen:
                await tx.delete_runs(chosen)
            return chosen

        result: list[str] = await self._batch.submit(delete)
        return result

    # -- leases ---------------------------------------------------------------------------------------

    async def acquire(self, run_id: str, owner: str, expires: float, *, now: float,
                      takeover: set[str] | None = None, status: str | None = None,
                      expect: RunRow | None = None) -> RunRow:
        """Lease the run to `owner` until `expires` (setting `status` when given) and return it as it is now.

        Succeeds when the run has no lease, the lease expired before `now`, it is already `owner`'s,
        or its owner is in `takeover` (owners known dead); else LeaseHeld, naming the holder. A
        finished run is refused (RunMoved), and so is one whose status, head or steps differ from
        `expect`'s (another process advanced, finished or cancelled it since the caller read it).
        """
        rules.check_status(status)

        async def take(tx: Transaction) -> RunRow:
            run = await self._existing(tx, run_id)
            if run.status in FINISHED:
                raise RunMoved(f"run {run_id} has {rules.finished_phrase(run.status)}; nothing to resume")
            if expect is not None and (run.status, run.head, run.steps) != (expect.status, expect.head, expect.steps):
                raise RunMoved(f"run {run_id} changed while it was being resumed (it is now {run.status} at step "
                               f"{run.steps} of branch '{run.head}'); try again")
            mine = run.lease_owner == owner or (takeover is not None and run.lease_owner in takeover)
            if not mine and lease_live(run.lease_owner, run.lease_expires, now):
                raise LeaseHeld(rules.lease_held_message(run, now))
            run.lease_owner, run.lease_expires = owner, expires
            if status is not None:
                run.status, run.updated_at = status, now
            await tx.update_run(run_id, {"lease_owner": owner, "lease_expires": expires, "status": run.status,
                                         "updated_at": run.updated_at})
            return run

        result: RunRow = await self._batch.submit(take)
        return result

    async def renew(self, run_id: str, owner: str, expires: float) -> None:
        """Extend `owner`'s lease. Raises LeaseLost if `owner` no longer holds it."""
        async def renew(tx: Transaction) -> None:
            if not await tx.update_run(run_id, {"lease_expires": expires}, owner=owner):
                raise self._lease_lost(run_id)

        await self._batch.submit(renew)

    async def release(self, run_id: str, owner: str, *, status: str | None = None) -> None:
        """Drop `owner`'s lease (optionally setting the status). Raises LeaseLost if it no longer holds it.

        `waiting` is only set while the run still records what it waits for; otherwise it becomes `paused`."""
        rules.check_status(status)

        async def release(tx: Transaction) -> None:
            values: dict[str, Any] = {"lease_owner": None, "lease_expires": None}
            if status is not None:
                run = await tx.run(run_id)
                if run is None or run.lease_owner != owner:
                    raise self._lease_lost(run_id)
                values.update(status=rules.released_status(run, status), updated_at=self.clock())
            if not await tx.update_run(run_id, values, owner=owner):
                raise self._lease_lost(run_id)

        await self._batch.submit(release)

    # -- advancing a run (all fenced by the lease) -----------------------------------------------------

    async def commit_step(self, run_id: str, owner: str, expires: float, step: StepRow,
                          checkpoints: list[CheckpointRow], taken_event: int | None,
                          *, ends_wait: bool = True, trace: TraceWrite | None = None) -> list[str]:
        """Record one step in one transaction: the step row, the checkpoints it reached, the event it took
        (other pending events, sent to the same visit of the wait, are set aside), the run's `steps`,
        `updated_at` and `status='running'` (a wait it was in is over: `ends_wait`), and the lease extended
        to `expires`. Returns the names the checkpoints got (see `CheckpointRow.state`).

        `trace` (the step's trace entries) is written in the same transaction.

        Raises LeaseLost (and writes nothing) if `owner` no longer holds the lease. Steps of many runs
        committed at the same moment share one transaction.
        """
        commit = _StepCommit(self, run_id, owner, expires, step, checkpoints, taken_event, ends_wait, self.clock(),
                             trace)
        result: list[str] = await self._batch.submit(commit.apply)
        return result

    async def _reached(self, tx: Transaction, run_id: str, checkpoint: CheckpointRow) -> str:
        """Name a checkpoint the run reached; if a person took the name meanwhile, the first free `STATE#k`."""
        if await tx.insert_checkpoint(run_id, checkpoint):
            return checkpoint.name
        taken = await tx.checkpoint_names(run_id, f"{checkpoint.state or checkpoint.name}#")
        name = rules.free_checkpoint_name(checkpoint.name, checkpoint.state, {checkpoint.name, *taken})
        await tx.insert_checkpoint(run_id, CheckpointRow(name, checkpoint.branch, checkpoint.point,
                                                         checkpoint.created_at, checkpoint.state))
        return name

    async def end_run(self, run_id: str, owner: str, status: str, *, output: Any = None,
                      error: dict[str, Any] | None = None, usage: dict[str, Any] | None = None,
                      waiting: dict[str, Any] | None = None, trace: TraceWrite | None = None) -> None:
        """Set how the run stopped (`succeeded`, `failed`, `waiting` with `waiting`, `paused`) and release the lease.

        `wake_at` becomes waiting["deadline"]; `trace` is written in the same transaction. Raises LeaseLost if
        `owner` no longer holds the lease.
        """
        rules.check_status(status, ending=True)
        values: dict[str, Any] = {
            "status": status, "output": output, "error": error, "waiting": waiting,
            "wake_at": waiting.get("deadline") if waiting else None, "updated_at": self.clock(),
            "lease_owner": None, "lease_expires": None,
        }
        if usage is not None:
            values["usage"] = usage

        async def end(tx: Transaction) -> None:
            if not await tx.update_run(run_id, values, owner=owner):
                raise self._lease_lost(run_id)
            if trace is not None and (trace.rows or trace.payloads):
                await tx.insert_trace(run_id, trace)

        await self._batch.submit(end)

    async def set_machine(self, run_id: str, owner: str, digest: str | None, source: str | None,
                          path: str | None) -> None:
        """Switch the run to another machine source (a resume with an edited file), kept once per digest.

        Raises LeaseLost if `owner` no longer holds the lease. The old text stays until no run uses it."""
        async def switch(tx: Transaction) -> None:
            if not await tx.update_run(run_id, {"digest": digest, "path": path}, owner=owner):
                raise self._lease_lost(run_id)
            if source is not None and digest is not None:
                await tx.add_source(digest, source)

        await self._batch.submit(switch)

    async def set_breakpoints(self, run_id: str, breakpoints: list[str], *, now: float) -> RunRow:
        """Replace the run's breakpoints (whoever holds its lease: a process advancing it reads them again)."""
        async def put(tx: Transaction) -> RunRow:
            run = await self._existing(tx, run_id)
            return await self._updated(tx, run, {"breakpoints": list(breakpoints), "updated_at": now})

        result: RunRow = await self._batch.submit(put)
        return result

    async def cancel(self, run_id: str, *, now: float) -> RunRow:
        """Mark a run `cancelled` and drop any lease (a live holder finds out at its next write).

        Raises Conflict if it is already finished."""
        async def cancel(tx: Transaction) -> RunRow:
            run = await self._existing(tx, run_id)
            if run.status in FINISHED:
                raise Conflict(f"run {run_id} has already {rules.finished_phrase(run.status)}")
            values = {"status": "cancelled", "lease_owner": None, "lease_expires": None, "updated_at": now,
                      **rules.cleared_wait()}
            await tx.update_run(run_id, values)
            for key, value in values.items():
                setattr(run, key, value)
            return run

        result: RunRow = await self._batch.submit(cancel)
        return result

    # -- reading a run's history ------------------------------------------------------------------------

    async def branches(self, run_id: str) -> list[BranchRow]:
        """All branches of the run, oldest first."""
        async with self.backend.reading() as tx:
            return await tx.branches(run_id)

    async def steps(self, run_id: str, branch: str, first: int = 0, last: int | None = None,
                    limit: int | None = None) -> list[StepRow]:
        """The steps this branch recorded itself (not inherited ones), numbered first..last, in order."""
        async with self.backend.reading() as tx:
            return await tx.steps(run_id, branch, first, last, limit)

    def stream_steps(self, run_id: str, branch: str, first: int = 0, last: int | None = None
                     ) -> AsyncIterator[StepRow]:
        """The same steps, read a page at a time."""
        return self.backend.stream_steps(run_id, branch, first, last)

    async def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        """Steps first..last of this branch whose context changed, newest first, stopping after the first
        snapshot met (so the caller can rebuild from it)."""
        async with self.backend.reading() as tx:
            return await tx.context_rows(run_id, branch, first, last)

    async def tally_row(self, run_id: str, branch: str, first: int, last: int) -> StepRow | None:
        """The newest of steps first..last of this branch that carries a tally."""
        async with self.backend.reading() as tx:
            return await tx.tally_row(run_id, branch, first, last)

    async def newest_step(self, run_id: str, branch: str, first: int = 0, last: int | None = None
                          ) -> StepRow | None:
        """The newest of steps first..last this branch recorded itself (one row, however long the branch)."""
        async with self.backend.reading() as tx:
            return await tx.newest_step(run_id, branch, first, last)

    async def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        """Named points of the run, oldest first."""
        async with self.backend.reading() as tx:
            return await tx.checkpoints(run_id)

    async def add_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> None:
        """Name a point. Raises Conflict if the run already has a checkpoint with that name."""
        async def add(tx: Transaction) -> None:
            await self._existing(tx, run_id)
            await self._branch(tx, run_id, checkpoint.branch)
            if not await tx.insert_checkpoint(run_id, checkpoint):
                raise Conflict(f"run {run_id} already has a checkpoint '{checkpoint.name}'")

        await self._batch.submit(add)

    # -- branches -----------------------------------------------------------------------------------------

    async def create_branch(self, run_id: str, branch: BranchRow, *, now: float,
                            trace: TraceWrite | None = None) -> RunRow:
        """Add a branch and make it the head; the run becomes `paused` (ready to resume from the fork). `trace`
        (the rollback's entry) is written in the same transaction.

        Events still pending were sent to the old head's wait: they are set aside, never taken.
        Raises Conflict if the name exists, LeaseHeld if a live process holds the run's lease."""
        async def create(tx: Transaction) -> RunRow:
            run = await self._unleased(tx, run_id, now)
            names = {existing.name for existing in await tx.branches(run_id)}
            if branch.name in names:
                raise Conflict(f"run {run_id} already has a branch '{branch.name}'")
            if branch.parent not in names:
                raise RunNotFound(f"run {run_id} has no branch '{branch.parent}' to start '{branch.name}' from")
            await tx.insert_branch(run_id, BranchRow(branch.name, branch.parent, branch.fork,
                                                     branch.created_at or now))
            await tx.set_aside_events(run_id, run.head)
            values = {"head": branch.name, "status": "paused", "steps": branch.fork - 1, "output": None,
                      "error": None, "lease_owner": None, "lease_expires": None, "updated_at": now,
                      **rules.cleared_wait()}
            if trace is not None and (trace.rows or trace.payloads):
                await tx.insert_trace(run_id, trace)
            return await self._updated(tx, run, values)

        result: RunRow = await self._batch.submit(create)
        return result

    async def switch_branch(self, run_id: str, name: str, status: str, steps: int, *, now: float,
                            output: Any = None, error: dict[str, Any] | None = None) -> RunRow:
        """Make an existing branch the head, with the status, last step, output and error it has there.

        Pending events are set aside as in `create_branch`. Raises RunNotFound for an unknown branch,
        LeaseHeld if a live process holds the lease."""
        rules.check_status(status)

        async def switch(tx: Transaction) -> RunRow:
            run = await self._unleased(tx, run_id, now)
            await self._branch(tx, run_id, name)
            await tx.set_aside_events(run_id, run.head)
            # a wait the new head was in is entered again on resume (with a fresh timer)
            values = {"head": name, "status": status, "steps": steps, "output": output, "error": error,
                      "lease_owner": None, "lease_expires": None, "updated_at": now, **rules.cleared_wait()}
            return await self._updated(tx, run, values)

        result: RunRow = await self._batch.submit(switch)
        return result

    # -- traces ----------------------------------------------------------------------------------------------

    async def append_trace(self, run_id: str, write: TraceWrite) -> None:
        """Add trace rows (and their payloads) to a run, outside any step. Raises RunNotFound, or Conflict when
        an entry's number is taken."""
        async def append(tx: Transaction) -> None:
            await self._existing(tx, run_id)
            await tx.insert_trace(run_id, write)

        await self._batch.submit(append)

    async def trace(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[TraceRow]:
        """The run's trace rows holding entries numbered above `after`, oldest first (at most `limit` rows)."""
        async with self.backend.reading() as tx:
            return await tx.trace_rows(run_id, after, limit)

    async def step_trace(self, run_id: str, branch: str, step: int) -> list[TraceRow]:
        """The trace rows of step `step` that branch `branch` recorded itself (a few rows, whatever the run's
        length: what a page showing one step reads)."""
        async with self.backend.reading() as tx:
            return await tx.step_trace(run_id, branch, step)

    async def trace_end(self, run_id: str) -> int:
        """The number of the run's last trace entry (0 when it has none)."""
        async with self.backend.reading() as tx:
            return await tx.trace_end(run_id)

    async def payloads(self, run_id: str, digests: list[str]) -> dict[str, str]:
        """The payloads (JSON text) the run keeps under these digests; unknown digests are left out."""
        if not digests:
            return {}
        async with self.backend.reading() as tx:
            return await tx.payloads(run_id, digests)

    # -- external events ------------------------------------------------------------------------------------

    async def add_event(self, run_id: str, name: str, data: Any, *, now: float) -> int:
        """Record an event for a run that is `waiting` for `name` and whose timer has not run out; returns its id.

        Raises Conflict (naming the events the run waits for, its status, or when its timer ran out) otherwise."""
        rules.check_json(data, "the event's data")  # here, not in the shared transaction: it fails alone

        async def add(tx: Transaction) -> int:
            refusal = rules.event_refusal(await self._existing(tx, run_id), name, now)
            if refusal is not None:
                raise Conflict(refusal)
            return await tx.insert_event(run_id, name, data, now)

        result: int = await self._batch.submit(add)
        return result

    async def pending_events(self, run_id: str) -> list[EventRow]:
        """Events delivered to the run and not yet taken, oldest first."""
        async with self.backend.reading() as tx:
            return await tx.pending_events(run_id)

    async def write(self, write: Callable[[Transaction], Awaitable[Any]]) -> Any:
        """Run `write` (row operations applying their own rules) in the next write transaction; for the store's
        own modules (`agentfsm.store.queue`)."""
        return await self._batch.submit(write)

    async def due_runs(self, now: float, limit: int) -> list[str]:
        """Runs a worker should advance: `waiting` with a pending event it waits for or a timer due by `now`,
        and `running` runs whose lease expired before `now` (their process died). Oldest first."""
        window = limit * 4 + 16
        while True:
            async with self.backend.reading() as tx:
                candidates: list[DueCandidate] = await tx.due_candidates(now, window)
            due = [candidate.run.id for candidate in candidates if rules.is_due(candidate, now)]
            # candidates that are not due (events they do not wait for) must not hide the due ones behind them
            if len(due) >= limit or len(candidates) < window:
                return due[:limit]
            window *= 4

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _existing(self, tx: Transaction, run_id: str) -> RunRow:
        run = await tx.run(run_id)
        if run is None:
            raise RunNotFound(f"no run '{run_id}' in {self.url}")
        return run

    async def _unleased(self, tx: Transaction, run_id: str, now: float) -> RunRow:
        """The run, refused with LeaseHeld while a live process holds it."""
        run = await self._existing(tx, run_id)
        if lease_live(run.lease_owner, run.lease_expires, now):
            raise LeaseHeld(rules.lease_held_message(run, now))
        return run

    async def _branch(self, tx: Transaction, run_id: str, name: str) -> None:
        if name not in {branch.name for branch in await tx.branches(run_id)}:
            raise RunNotFound(f"run {run_id} has no branch '{name}'")

    @staticmethod
    async def _updated(tx: Transaction, run: RunRow, values: dict[str, Any]) -> RunRow:
        await tx.update_run(run.id, values)
        for key, value in values.items():
            setattr(run, key, value)
        return run

    @staticmethod
    def _lease_lost(run_id: str) -> LeaseLost:
        return LeaseLost(f"run {run_id}: this process no longer holds its lease (the run was cancelled or taken over)")


class _StepCommit:
    """One step's commit, as a write of the batch (the store's hot path: a plain object, not a closure)."""

    __slots__ = ("store", "run_id", "owner", "expires", "step", "checkpoints", "taken_event", "ends_wait", "now",
                 "trace")

    def __init__(self, store: Store, run_id: str, owner: str, expires: float, step: StepRow,
                 checkpoints: list[CheckpointRow], taken_event: int | None, ends_wait: bool, now: float,
                 trace: TraceWrite | None = None) -> None:
        self.store, self.run_id, self.owner, self.expires, self.step = store, run_id, owner, expires, step
        self.checkpoints, self.taken_event, self.ends_wait, self.now = checkpoints, taken_event, ends_wait, now
        self.trace = trace

    async def apply(self, tx: Transaction) -> list[str]:
        run_id, step, taken_event = self.run_id, self.step, self.taken_event
        # a refused step changes nothing (the others in its batch commit): the event is checked first, and
        # the lease by the first write, which writes nothing when this process no longer holds it
        if taken_event is not None and taken_event not in await tx.pending_event_ids(run_id):
            if await tx.lease_owner(run_id) != self.owner:
                raise Store._lease_lost(run_id)
            raise Conflict(f"run {run_id}: event {taken_event} is not pending (taken already, or not its)")
        values: dict[str, Any] = {"steps": step.step, "updated_at": self.now, "lease_expires": self.expires}
        if self.ends_wait:
            values.update(status="running", waiting=None, wake_at=None)
        if not await tx.update_run(run_id, values, owner=self.owner):
            raise Store._lease_lost(run_id)
        if taken_event is not None:
            await tx.take_event(run_id, taken_event, step.branch, step.step)
            # the others were sent to the same visit of the wait, which is over: no later visit takes them
            await tx.set_aside_events(run_id, step.branch)
        trace = self.trace
        if trace is None or not trace.rows:
            await tx.insert_step(run_id, step)
        else:
            # the step's own entries go in its row; any others (and the payloads) where traces are kept
            own = trace.rows[0] if trace.rows[0].branch == step.branch and trace.rows[0].step == step.step else None
            await tx.insert_step(run_id, step, own)
            rest = TraceWrite(trace.rows[1:] if own is not None else trace.rows, trace.payloads)
            if rest.rows or rest.payloads:
                await tx.insert_trace(run_id, rest)
        if not self.checkpoints:
            return []
        return [await self.store._reached(tx, run_id, checkpoint) for checkpoint in self.checkpoints]
