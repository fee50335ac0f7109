"""Group commit, for every backend: writes ready at the same moment share one transaction, and each
caller still returns only once its own write is durable (see `agentfsm.store.batch`)."""

from __future__ import annotations

import asyncio
import math

import pytest

from agentfsm.store import BranchRow, CheckpointRow, Conflict, LeaseLost, Store
from agentfsm.store.base import Backend
from agentfsm.store.batch import MAX_BATCH
from tests.store_backends import (
    LEASE,
    NOW,
    Broken,
    Place,
    Spy,
    everything,
    make_waiting,
    place,
    start,
    step,
    unchanged,
)

__all__ = ["place"]  # the fixture, imported for pytest

pytestmark = pytest.mark.asyncio


def spied(place: Place, *, slow_commit: bool = False) -> tuple[Store, Spy]:
    """A store over a new connection, with a spy counting its write transactions."""
    spies: list[Spy] = []

    def wrap(backend: Backend) -> Backend:
        spies.append(Spy(backend, slow_commit=slow_commit))
        return spies[-1]

    return place.store(wrap), spies[0]


async def started(store: Store, count: int) -> list[str]:
    """`count` runs leased to w1, each at its step 0 (made at once: they share few transactions)."""
    run_ids = [f"run-{number:04d}" for number in range(count)]
    await asyncio.gather(*(start(store, run_id) for run_id in run_ids))
    return run_ids


async def commit_all(store: Store, run_ids: list[str], owner: str = "w1") -> list[object]:
    """Step 1 of every run, submitted at the same moment from concurrent tasks; results or exceptions."""
    checkpoint = [CheckpointRow("one", "main", 2, NOW, "one")]
    return await asyncio.gather(*(store.commit_step(run_id, owner, LEASE, step(1), checkpoint, None)
                                  for run_id in run_ids), return_exceptions=True)


async def test_steps_of_many_runs_committed_at_once_share_one_transaction(place: Place) -> None:
    store, spy = spied(place)
    run_ids = await started(store, 50)
    spy.transactions = 0
    assert await commit_all(store, run_ids) == [["one"]] * 50
    assert spy.transactions == 1
    for run_id in run_ids:
        assert [row.step for row in await store.steps(run_id, "main")] == [0, 1]
        assert (await store.get_run(run_id)).steps == 1
        assert [c.name for c in await store.checkpoints(run_id)] == ["one"]


async def test_a_transaction_holds_a_bounded_number_of_writes(place: Place) -> None:
    store, spy = spied(place)
    run_ids = await started(store, MAX_BATCH + 88)
    spy.transactions = 0
    assert await commit_all(store, run_ids) == [["one"]] * len(run_ids)
    assert spy.transactions == math.ceil(len(run_ids) / MAX_BATCH)
    assert {(await store.get_run(run_id)).steps for run_id in run_ids} == {1}


async def test_each_caller_returns_only_once_its_step_is_readable_elsewhere(place: Place) -> None:
    """`await commit_step(...)` returning means committed: another connection to the store sees the row,
    even when the database lets other tasks run before it commits."""
    writer, elsewhere = spied(place, slow_commit=True)[0], place.store()
    run_ids = await started(writer, 30)

    async def commit_and_look(run_id: str) -> tuple[list[int], int]:
        await writer.commit_step(run_id, "w1", LEASE, step(1), [], None)
        # nothing else may run in between: the step must already be visible
        seen = [row.step for row in await elsewhere.steps(run_id, "main", 1)]
        return seen, (await elsewhere.get_run(run_id)).steps

    assert await asyncio.gather(*(commit_and_look(run_id) for run_id in run_ids)) == [([1], 1)] * 30


async def test_writes_submitted_while_a_transaction_commits_go_in_the_next_one(place: Place) -> None:
    """A database that is slow to commit: steps that get ready meanwhile wait for the next transaction (one
    connection never has two open at once) and all land."""
    store, spy = spied(place, slow_commit=True)
    run_ids = await started(store, 20)
    spy.transactions = 0
    later: list[asyncio.Task[list[object]]] = []
    spy.while_committing.append(lambda: later.append(asyncio.create_task(commit_all(store, run_ids[10:]))))
    assert await commit_all(store, run_ids[:10]) == [["one"]] * 10
    assert await later[0] == [["one"]] * 10
    assert spy.transactions == 2
    assert {(await store.get_run(run_id)).steps for run_id in run_ids} == {1}


async def test_a_refused_write_fails_alone_and_the_others_in_its_batch_commit(place: Place) -> None:
    store, spy = spied(place)
    run_ids = await started(store, 10)
    await store.cancel(run_ids[3], now=NOW)  # its owner finds out at its next write
    await store.acquire(run_ids[7], "w2", LEASE, now=NOW, takeover={"w1"})
    await make_waiting(store, run_ids[8], ["go"])
    await store.acquire(run_ids[8], "w1", LEASE, now=NOW)
    refused = {run_id: value for run_id, value in (await everything(store)).items()
               if run_id in (run_ids[3], run_ids[7], run_ids[8])}
    spy.transactions = 0

    taking_nothing_pending = store.commit_step(run_ids[8], "w1", LEASE, step(1), [], 12345)
    outcomes = await asyncio.gather(commit_all(store, run_ids[:8] + run_ids[9:]), taking_nothing_pending,
                                    return_exceptions=True)
    assert spy.transactions == 1
    by_run = dict(zip(run_ids[:8] + run_ids[9:], outcomes[0], strict=True))
    assert isinstance(by_run.pop(run_ids[3]), LeaseLost)
    assert isinstance(by_run.pop(run_ids[7]), LeaseLost)
    assert isinstance(outcomes[1], Conflict)
    assert list(by_run.values()) == [["one"]] * 7
    after = await everything(store)
    assert {run_id: after[run_id] for run_id in refused} == refused
    for run_id in by_run:
        assert after[run_id]["run"].steps == 1


async def test_a_failing_transaction_fails_every_write_in_it_and_changes_nothing(place: Place) -> None:
    """The database fails part-way through a batch: every caller in it hears so, and no write of it stays."""
    store, spy = spied(place)
    run_ids = await started(store, 10)
    await start(store, "lonely", digest="own", source="its own text")
    await store.end_run("lonely", "w1", "succeeded")
    await store.end_run(run_ids[8], "w1", "failed")
    await make_waiting(store, run_ids[7], ["go"])
    await make_waiting(store, run_ids[9], ["go", "stop"])
    taken = await store.add_event(run_ids[9], "go", None, now=NOW)
    await store.add_event(run_ids[9], "stop", None, now=NOW)
    await store.acquire(run_ids[9], "w1", LEASE, now=NOW)
    spy.fail = lambda operation, args: operation == "insert_step" and args[0] == run_ids[5]
    async with unchanged(store):
        # each of these is written before the step that fails (concurrent tasks queue in the order they start)
        others = [
            store.add_event(run_ids[7], "go", None, now=NOW),
            store.commit_step(run_ids[9], "w1", LEASE, step(1), [], taken),  # takes one event, sets one aside
            store.create_branch(run_ids[8], BranchRow("retry", "main", 1), now=NOW),
            store.delete_runs(["lonely"], now=NOW),  # and the source only it used
            start(store, "newcomer"),
            store.cancel(run_ids[6], now=NOW),
        ]
        outcomes = await asyncio.gather(*others, commit_all(store, run_ids[:6]), return_exceptions=True)
        assert [type(outcome) for outcome in outcomes[:-1]] == [Broken] * len(others)
        assert [type(outcome) for outcome in outcomes[-1]] == [Broken] * 6  # type: ignore[union-attr]
    spy.fail = None  # the database works again: so does the store
    assert await commit_all(store, run_ids[:6]) == [["one"]] * 6


async def test_closing_a_store_commits_the_writes_already_submitted(place: Place) -> None:
    store = place.store()
    run_ids = await started(store, 5)
    commits = [asyncio.create_task(store.commit_step(run_id, "w1", LEASE, step(1), [], None)) for run_id in run_ids]
    await asyncio.sleep(0)  # every task has submitted its write; none is committed yet
    commits[2].cancel()  # a caller that gives up does not take back a write it submitted
    await store.close()
    outcomes = await asyncio.gather(*commits, return_exceptions=True)
    assert outcomes[:2] + outcomes[3:] == [[]] * 4 and commits[2].cancelled()
    reopened = place.store()
    assert {(await reopened.get_run(run_id)).steps for run_id in run_ids} == {1}
