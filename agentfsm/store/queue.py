"""The run queue's store operations: claiming due runs for a worker, and the workers' own rows.

A worker claims runs in one write transaction: it picks due runs (queued, waiting with an
event or a due timer, or left by a dead owner), skipping rows another worker's claim has
locked (PostgreSQL's `FOR UPDATE SKIP LOCKED`; SQLite's write lock serializes claims), and
leases them to itself, so two workers never start on the same run and never wait on each
other. The lease is the run's usual one: a worker that dies loses its claims when they expire.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from agentfsm.store.base import RunRow, Transaction, WorkerRow
from agentfsm.store.core import Store

STALE_WORKER = 3600.0
"""A worker row not beaten for this long is deleted by the next worker that registers."""


@dataclass(slots=True)
class WorkerView:
    """A worker as `agentfsm workers` lists it."""

    row: WorkerRow
    held: int
    """How many runs it holds a lease on now."""


async def claim_due(store: Store, owner: str, expires: float, *, now: float, limit: int,
                    machine: str | None = None, skip: Collection[str] = ()) -> list[RunRow]:
    """Lease up to `limit` due runs to `owner` until `expires` and return them (oldest first); `skip`: runs the
    caller does not want now (they failed to load here)."""
    if limit <= 0:
        return []

    async def claim(tx: Transaction) -> list[RunRow]:
        chosen = await tx.claimable(now, limit, machine=machine, skip=skip)
        for run in chosen:
            await tx.update_run(run.id, {"lease_owner": owner, "lease_expires": expires})
            run.lease_owner, run.lease_expires = owner, expires
        return chosen

    result: list[RunRow] = await store.write(claim)
    return result


async def beat(store: Store, worker: WorkerRow) -> None:
    """Register the worker, or renew its heartbeat (and forget workers gone for an hour)."""
    async def put(tx: Transaction) -> None:
        stale = [row.id for row in await tx.workers() if row.heartbeat_at < worker.heartbeat_at - STALE_WORKER]
        if stale:
            await tx.delete_workers(stale)
        await tx.put_worker(worker)

    await store.write(put)


async def leave(store: Store, worker_id: str) -> None:
    """The worker stopped: its row goes."""
    async def drop(tx: Transaction) -> None:
        await tx.delete_workers([worker_id])

    await store.write(drop)


async def live_workers(store: Store, *, now: float, within: float) -> list[WorkerView]:
    """Workers whose last heartbeat is at most `within` seconds old, oldest first, with the runs each holds."""
    async with store.backend.reading() as tx:
        rows = [row for row in await tx.workers() if row.heartbeat_at >= now - within]
        held = await tx.lease_counts([row.id for row in rows])
    return [WorkerView(row, held.get(row.id, 0)) for row in sorted(rows, key=lambda row: (row.started_at, row.id))]
