"""`agentfsm worker`: advance every run that has something to do (an event, a due timer, a dead owner).

Workers take leases like any other process, so several can share one store: a run one
worker holds, or finished meanwhile, is skipped by the others. A worker that is stopped
(its task cancelled: Ctrl-C, SIGTERM) hands the runs it was advancing back as `running`
with no owner, so the next worker continues them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from agentfsm.history.errors import RunRefused
from agentfsm.history.leases import owner_is_dead
from agentfsm.runtime.loop import RunResult
from agentfsm.service.runs import Runs
from agentfsm.store.base import LeaseHeld, RunFilter, RunMoved, RunNotFound, RunRow, lease_live

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


@dataclass(slots=True)
class Failing:
    """A run a worker could not resume: as it was then, and when to try it again unless it changes first."""

    seen: tuple[str, str, int, float]
    retry_at: float
    delay: float


def _as_seen(row: RunRow) -> tuple[str, str, int, float]:
    return row.status, row.head, row.steps, row.updated_at


async def work_once(runs: Runs, *, concurrency: int = 4, limit: int = 100,
                    on_result: Callable[[RunResult], None] | None = None,
                    failing: dict[str, Failing] | None = None) -> WorkerPass:
    """Resume each run that is due now, `concurrency` at a time.

    `failing` remembers the runs that could not be resumed, so they are not tried (and reported) on
    every pass: each is tried again once it changed (a rollback, `resume --machine`...) or after a
    delay that doubles from 30 s to an hour (a module reinstalled, a server back up).
    """
    done = WorkerPass()
    gate = asyncio.Semaphore(concurrency)

    async def advance(run_id: str) -> None:
        async with gate:
            earlier = failing.get(run_id) if failing is not None else None
            if earlier is not None:
                try:
                    if _as_seen(await runs.get(run_id)) == earlier.seen and runs.clock() < earlier.retry_at:
                        return
                except RunNotFound:
                    return
            try:
                result = await runs.resume(run_id, on_interrupt="running")
            except (LeaseHeld, RunMoved, RunRefused, RunNotFound) as exc:
                logger.info("worker: skipped run %s: %s", run_id, exc)
                done.skipped.append(run_id)
                return
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the worker
                logger.warning("worker: run %s could not be resumed: %s", run_id, exc)
                done.failed[run_id] = str(exc)
                if failing is not None:
                    delay = RETRY_FIRST if earlier is None else min(earlier.delay * 2, RETRY_MOST)
                    with contextlib.suppress(RunNotFound):
                        failing[run_id] = Failing(_as_seen(await runs.get(run_id)), runs.clock() + delay, delay)
                return
            if failing is not None:
                failing.pop(run_id, None)
            done.advanced.append(result)
            if on_result is not None:
                on_result(result)

    due = await runs.store.due_runs(runs.clock(), limit)
    due += [run_id for run_id in await _orphans(runs, limit - len(due)) if run_id not in due]
    await asyncio.gather(*(advance(run_id) for run_id in due))
    return done


async def _orphans(runs: Runs, limit: int) -> list[str]:
    """`running` runs whose lease has not expired yet but whose process is known dead (it ran on this host):
    taken over now, as `resume` would, rather than when the lease runs out."""
    if limit <= 0:
        return []
    now = runs.clock()
    running = reversed(await runs.store.list_runs(RunFilter(("running",))))  # oldest first, as due_runs
    return [run.id for run in running
            if lease_live(run.lease_owner, run.lease_expires, now) and owner_is_dead(run.lease_owner)][:limit]


async def work(runs: Runs, *, interval: float = 1.0, concurrency: int = 4, stop: asyncio.Event | None = None,
               on_result: Callable[[RunResult], None] | None = None) -> None:
    """Pass over the store every `interval` seconds until `stop` is set."""
    stop = stop or asyncio.Event()
    failing: dict[str, Failing] = {}
    while not stop.is_set():
        await work_once(runs, concurrency=concurrency, on_result=on_result, failing=failing)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
