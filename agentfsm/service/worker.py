"""`agentfsm worker`: claim runs that have something to do and advance up to N of them at once.

A run has something to do when it is queued (`agentfsm submit`), waits with a delivered event
or a due timer, or was left by a process that died. A worker claims such runs in one
transaction (`agentfsm.store.queue.claim_due`: FOR UPDATE SKIP LOCKED on PostgreSQL, leased to
the worker), so workers on any number of machines never start on the same run, then advances
each under that lease. Idle, it waits for a wake-up (PostgreSQL's LISTEN/NOTIFY: a submit, a
send, a run handed back) or the polling interval (timers; SQLite and memory stores poll).
A worker that is stopped (its task cancelled: Ctrl-C, SIGTERM) hands its runs back as
`running` with no owner, so the next worker continues them at once; one killed outright loses
them when their leases expire. A run whose machine cannot be loaded here (a module this host
lacks) is handed back untouched for another worker, and said once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agentfsm.history.errors import RunRefused
from agentfsm.history.leases import new_owner, owner_is_dead
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.service.runs import Runs
from agentfsm.store.base import LeaseHeld, LeaseLost, RunFilter, RunMoved, RunNotFound, RunRow, StoreError, WorkerRow
from agentfsm.store.base import lease_live
from agentfsm.store.queue import beat, claim_due, leave

logger = logging.getLogger("agentfsm")


@dataclass(slots=True)
class WorkerPass:
    """What one pass over the store did."""

    advanced: list[RunResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Runs another process took first, or that stopped needing work (finished, advanced or rolled back)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Runs that could not be resumed, with why (a machine that no longer compiles...)."""


RETRY_FIRST = 30.0
RETRY_MOST = 3600.0
ORPHAN_SCAN = 1.0
"""Seconds between two looks for runs whose process died on this host (their leases still live)."""
MACHINES_KEPT = 64
"""Compiled machines a worker keeps (by source digest, path and `--llm` overrides)."""
HEARTBEAT = 5.0
"""Seconds between a worker's heartbeats; `agentfsm workers` lists workers heard from in the last 3."""


@dataclass(slots=True)
class Failing:
    """A run a worker could not resume: as it was then, and when to try it again unless it changes first."""

    seen: tuple[str, str, int, float]
    retry_at: float
    delay: float
    reason: str = ""


def _as_seen(row: RunRow) -> tuple[str, str, int, float]:
    return row.status, row.head, row.steps, row.updated_at


class Worker:
    """One worker process: its identity (the owner of the leases it claims), its runs in flight, what failed."""

    def __init__(self, runs: Runs, *, concurrency: int = 16, machine: str | None = None,
                 on_result: Callable[[RunResult], None] | None = None,
                 failing: dict[str, Failing] | None = None, observers: Iterable[object] = ()) -> None:
        self.runs, self.concurrency, self.machine, self.on_result = runs, concurrency, machine, on_result
        self.observers = tuple(observers)
        """Watch every run this worker advances (OpenTelemetry spans, the logs' run context)."""
        self.owner = new_owner()
        self.failing: dict[str, Failing] = {} if failing is None else failing
        self.active: dict[str, asyncio.Task[None]] = {}
        self.machines: dict[tuple[str, str, tuple[tuple[str, str], ...]], StateMachine] = {}
        self.orphans_at = 0.0
        """When to look for runs of dead processes of this host again."""
        self.done = WorkerPass()
        self.wake = asyncio.Event()
        now = runs.clock()
        self.row = WorkerRow(self.owner, socket.gethostname(), os.getpid(), now, now, concurrency, machine)

    # -- claiming -------------------------------------------------------------------------------------

    async def _skip(self) -> set[str]:
        """Runs that failed here and have neither changed nor waited out their delay."""
        skip = set()
        for run_id, earlier in list(self.failing.items()):
            if self.runs.clock() >= earlier.retry_at:
                continue
            try:
                if _as_seen(await self.runs.store.get_run(run_id)) == earlier.seen:
                    skip.add(run_id)
            except RunNotFound:
                self.failing.pop(run_id, None)
        return skip

    async def claim(self, limit: int) -> list[str]:
        """Claim up to `limit` runs that have something to do, and runs left by dead processes of this host."""
        now = self.runs.clock()
        expires = now + self.runs.recording.lease_seconds
        claimed = await claim_due(self.runs.store, self.owner, expires, now=now, limit=limit, machine=self.machine,
                                  skip=await self._skip() | set(self.active))
        ids = [run.id for run in claimed]
        if len(ids) < limit and now >= self.orphans_at:  # a scan of every running run: once a second at most
            self.orphans_at = now + ORPHAN_SCAN
            ids += [run_id for run_id in await self._orphans(limit - len(ids)) if run_id not in ids]
        return ids

    async def _orphans(self, limit: int) -> list[str]:
        """`running` runs whose lease has not expired yet but whose process is known dead (it ran on this host):
        taken over now, as `resume` would, rather than when the lease runs out."""
        now = self.runs.clock()
        running = reversed(await self.runs.store.list_runs(RunFilter(("running",), self.machine)))  # oldest first
        return [run.id for run in running if run.id not in self.active
                and lease_live(run.lease_owner, run.lease_expires, now) and owner_is_dead(run.lease_owner)][:limit]

    # -- advancing --------------------------------------------------------------------------------------

    async def _machine(self, run_id: str) -> StateMachine:
        """The run's machine, compiled once per source and `--llm` overrides in this worker (a compiled machine
        keeps no run's state: runs share it, as runs started from one `StateMachine` object do)."""
        row = await self.runs.store.get_run(run_id)
        key = (row.digest or row.id, row.path or "", tuple(sorted(row.llms.items())))
        machine = self.machines.pop(key, None)
        if machine is None:
            machine = await self.runs.machine(run_id)
        self.machines[key] = machine  # the newest last: the oldest goes first when there are too many
        if len(self.machines) > MACHINES_KEPT:
            del self.machines[next(iter(self.machines))]
        return machine

    async def advance(self, run_id: str) -> None:
        """Advance one claimed run; a run that cannot go on here is handed back as it was."""
        try:
            machine = await self._machine(run_id)
            result = await self.runs.resume(run_id, machine=machine, on_interrupt="running", owner=self.owner,
                                            observers=self.observers)
        except (LeaseHeld, RunMoved, RunRefused, RunNotFound) as exc:
            logger.info("worker: skipped run %s: %s", run_id, exc)
            self.done.skipped.append(run_id)
            await self._hand_back(run_id)
            return
        except asyncio.CancelledError:
            await self._hand_back(run_id)
            raise
        except Exception as exc:  # noqa: BLE001 - one broken run must not stop the worker
            await self._hand_back(run_id)
            self._failed(run_id, str(exc))
            with contextlib.suppress(StoreError):
                failing = self.failing[run_id]
                failing.seen = _as_seen(await self.runs.store.get_run(run_id))
            return
        self.failing.pop(run_id, None)
        self.done.advanced.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def _failed(self, run_id: str, reason: str) -> None:
        earlier = self.failing.get(run_id)
        if earlier is None or earlier.reason != reason:  # said once, not at every retry
            logger.warning("worker: run %s could not be resumed: %s", run_id, reason)
        self.done.failed[run_id] = reason
        delay = RETRY_FIRST if earlier is None else min(earlier.delay * 2, RETRY_MOST)
        seen = earlier.seen if earlier is not None else ("", "", -1, 0.0)
        self.failing[run_id] = Failing(seen, self.runs.clock() + delay, delay, reason)

    async def _hand_back(self, run_id: str) -> None:
        """Drop this worker's claim on a run it did not advance (if it still holds it)."""
        with contextlib.suppress(LeaseLost, StoreError, RunNotFound, asyncio.CancelledError):
            await asyncio.shield(self.runs.store.release(run_id, self.owner))

    def _spawn(self, run_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.advance(run_id))
        self.active[run_id] = task

        def finished(_task: asyncio.Task[None]) -> None:
            self.active.pop(run_id, None)
            self.wake.set()

        task.add_done_callback(finished)

    # -- the loop ---------------------------------------------------------------------------------------

    async def once(self, limit: int = 100) -> WorkerPass:
        """One pass: claim what is due now (up to `limit`) and advance it, `concurrency` at a time."""
        ids = await self.claim(limit)
        gate = asyncio.Semaphore(self.concurrency)

        async def gated(run_id: str) -> None:
            async with gate:
                await self.advance(run_id)

        await asyncio.gather(*(gated(run_id) for run_id in ids))
        return self.done

    async def serve(self, *, interval: float = 1.0, stop: asyncio.Event | None = None,
                    on_store_error: Callable[[str], None] | None = None) -> None:
        """Claim and advance until `stop` is set (or the task is cancelled: the runs in flight are handed back)."""
        stop = stop or asyncio.Event()
        listener = await _listen(self.runs, self.wake)
        heart = asyncio.get_running_loop().create_task(self._beat())
        broken = False
        try:
            while not stop.is_set():
                free = self.concurrency - len(self.active)
                full = False
                if free > 0:
                    try:
                        ids = await self.claim(free)
                        broken = False
                    except StoreError as exc:
                        ids = []
                        if not broken and on_store_error is not None:
                            on_store_error(str(exc))
                        broken = True
                    for run_id in ids:
                        self._spawn(run_id)
                    full = len(ids) == free
                if full:
                    await asyncio.sleep(0)  # there may be more: claim again once the new runs got going
                    continue
                await self._idle(stop, interval)
        finally:
            heart.cancel()
            if listener is not None:
                listener.cancel()
            await self._stop()

    async def _idle(self, stop: asyncio.Event, interval: float) -> None:
        """Wait for a wake-up (a notification, a run finished here), `stop`, or the polling interval."""
        stopping = asyncio.ensure_future(stop.wait())
        waking = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait([stopping, waking], timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            waking.cancel()
        self.wake.clear()

    async def _beat(self) -> None:
        while True:
            self.row.heartbeat_at = self.runs.clock()
            try:
                await beat(self.runs.store, self.row)
            except StoreError as exc:
                logger.debug("worker: heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT)

    async def _stop(self) -> None:
        """Hand back every run in flight (their advances end as interrupted) and leave the workers' list."""
        tasks = list(self.active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StoreError, asyncio.CancelledError):
            await asyncio.shield(leave(self.runs.store, self.owner))


async def _listen(runs: Runs, wake: asyncio.Event) -> asyncio.Task[None] | None:
    """A task setting `wake` whenever the store notifies workers (None: the store cannot; polling alone)."""
    listener = runs.store.backend.listener()
    if listener is None:
        return None
    return asyncio.get_running_loop().create_task(listener.run(wake.set))


async def work_once(runs: Runs, *, concurrency: int = 4, limit: int = 100,
                    on_result: Callable[[RunResult], None] | None = None,
                    failing: dict[str, Failing] | None = None, machine: str | None = None,
                    observers: Iterable[object] = ()) -> WorkerPass:
    """Claim each run that is due now and advance it, `concurrency` at a time.

    `failing` remembers the runs that could not be resumed, so they are not tried (and reported) on
    every pass: each is tried again once it changed (a rollback, `resume --machine`...) or after a
    delay that doubles from 30 s to an hour (a module reinstalled, a server back up).
    """
    worker = Worker(runs, concurrency=concurrency, machine=machine, on_result=on_result, failing=failing,
                    observers=observers)
    return await worker.once(limit)


async def work(runs: Runs, *, interval: float = 1.0, concurrency: int = 16, stop: asyncio.Event | None = None,
               on_result: Callable[[RunResult], None] | None = None, machine: str | None = None,
               on_store_error: Callable[[str], None] | None = None, observers: Iterable[object] = ()) -> None:
    """Claim and advance runs until `stop` is set; idle, wait for a wake-up or `interval` seconds."""
    worker = Worker(runs, concurrency=concurrency, machine=machine, on_result=on_result, observers=observers)
    await worker.serve(interval=interval, stop=stop, on_store_error=on_store_error)
