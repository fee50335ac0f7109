"""The run queue's store operations on every backend: claiming due runs, and the workers' rows."""

from __future__ import annotations

import asyncio

import pytest

from agentfsm.store import Store
from agentfsm.store.base import WorkerRow
from agentfsm.store.queue import beat, claim_due, leave, live_workers
from tests.store_backends import LEASE, NOW, Place, make_waiting, place, start, store

__all__ = ["place", "store"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.asyncio


async def queued(store: Store, run_id: str, *, machine: str = "m", created_at: float = NOW) -> None:
    await start(store, run_id, owner=None, status="queued", machine=machine, created_at=created_at)


async def test_claims_lease_due_runs_oldest_first_and_skip_what_is_held(store: Store) -> None:
    for number in range(4):
        await queued(store, f"q{number}", created_at=NOW + number)
    await start(store, "live", created_at=NOW - 5)  # running, its owner's lease live: not due
    await start(store, "wait", created_at=NOW - 4)
    await make_waiting(store, "wait", ["go"])  # waits for an event nobody sent: not due
    first = await claim_due(store, "worker-a", LEASE, now=NOW, limit=3, skip={"q0"})
    assert [run.id for run in first] == ["q1", "q2", "q3"]
    assert {(await store.get_run(run.id)).lease_owner for run in first} == {"worker-a"}
    assert [(await store.get_run(f"q{n}")).status for n in range(4)] == ["queued"] * 4  # a claim starts nothing
    second = await claim_due(store, "worker-b", LEASE, now=NOW, limit=10)
    assert [run.id for run in second] == ["q0"]
    assert await claim_due(store, "worker-c", LEASE, now=NOW, limit=10) == []
    # a claim whose worker died expires with its lease: the run is due again (as is a dead owner's run)
    again = await claim_due(store, "worker-c", LEASE + 100, now=LEASE + 1, limit=10)
    assert [run.id for run in again] == ["live", "q0", "q1", "q2", "q3"]


async def test_a_claim_takes_only_the_machine_asked_for(store: Store) -> None:
    await queued(store, "a1", machine="alpha")
    await queued(store, "b1", machine="beta", created_at=NOW - 1)
    assert [run.id for run in await claim_due(store, "w", LEASE, now=NOW, limit=5, machine="alpha")] == ["a1"]


async def test_claims_racing_on_many_connections_never_share_a_run(place: Place) -> None:
    first = place.store()
    for number in range(30):
        await queued(first, f"r{number:02d}", created_at=NOW + number)
    stores = [place.store() for _ in range(4)]
    claims = await asyncio.gather(*(claim_due(each, f"w{index}", LEASE, now=NOW, limit=10)
                                    for index, each in enumerate(stores)))
    ids = [run.id for claim in claims for run in claim]
    assert len(ids) == len(set(ids)) == 30


async def test_workers_register_beat_and_leave(store: Store) -> None:
    old = WorkerRow("host:1:a", "host", 1, NOW - 7200, NOW - 7200, 16)
    await beat(store, old)
    alive = WorkerRow("host:2:b", "host", 2, NOW, NOW, 4, "alpha")
    await beat(store, alive)  # registering forgets workers gone for an hour
    await queued(store, "q1")
    await claim_due(store, alive.id, LEASE, now=NOW, limit=5)
    [seen] = await live_workers(store, now=NOW + 5, within=30)
    assert (seen.row, seen.held) == (alive, 1)
    alive.heartbeat_at = NOW + 60
    await beat(store, alive)
    assert [view.row.heartbeat_at for view in await live_workers(store, now=NOW + 70, within=30)] == [NOW + 60]
    assert await live_workers(store, now=NOW + 200, within=30) == []  # silent too long: not live
    await leave(store, alive.id)
    assert await live_workers(store, now=NOW + 61, within=30) == []
