"""What every store backend must do, written against the `Store` interface only.

Each test runs once per backend in `tests/store_backends.BACKENDS` (SQLite on a file, memory on a
name of its own). Group commit has its own suite: tests/test_store_group_commit.py.
"""

from __future__ import annotations

import asyncio

from dataclasses import replace

import pytest

from agentfsm.store import (
    BranchRow,
    CheckpointRow,
    Conflict,
    EventRow,
    LeaseHeld,
    LeaseLost,
    RunFilter,
    RunMoved,
    RunNotFound,
    RunRow,
    StepRow,
    Store,
)
from tests.store_backends import (LEASE, NOW, Place, everything, make_waiting, place, shared_store, start, step, store,
                                  unchanged)

__all__ = ["place", "shared_store", "store"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.asyncio


# -- runs -------------------------------------------------------------------------------------------


async def test_a_run_round_trips(store: Store) -> None:
    checkpoint = CheckpointRow(name="start", branch="main", point=1, created_at=NOW)
    run = RunRow(id="run-0001", machine="m", digest="d1", path="/abs/m.yaml", status="running", created_at=NOW,
                 updated_at=NOW, llms={"writer": "openai:gpt-4o"}, usage={"tokens": 3}, lease_owner="w1",
                 lease_expires=LEASE)
    first = StepRow(branch="main", step=0, state=None, started_at=NOW, context_kind="snapshot", context='{"a":1}')
    inputs = {"topic": "ünïcode", "n": [1, 2.5, None]}
    await store.create_run(run, "name: m\n", first, [checkpoint], inputs)
    assert await store.get_run("run-0001") == run
    assert await store.inputs("run-0001") == inputs
    assert await store.source("d1") == "name: m\n"
    assert await store.source("unknown") is None
    assert await store.steps("run-0001", "main") == [first]
    assert await store.branches("run-0001") == [BranchRow(name="main", parent=None, fork=0, created_at=NOW)]
    assert await store.checkpoints("run-0001") == [checkpoint]


async def test_a_run_without_inputs_or_source_has_empty_inputs(store: Store) -> None:
    run = RunRow(id="run-0001", machine="m", digest=None, path=None, status="running", created_at=NOW,
                 updated_at=NOW)
    await store.create_run(run, None, StepRow(branch="main", step=0, state=None), [])
    assert await store.inputs("run-0001") == {}
    assert await store.get_run("run-0001") == run


async def test_a_child_run_names_its_parent(store: Store) -> None:
    await start(store, "parent")
    child = await start(store, "child", created_at=NOW + 1, parent_run="parent", parent_step=3, child_name="review")
    found = await store.get_run("child")
    assert found == child
    assert (found.parent_run, found.parent_step, found.child_name) == ("parent", 3, "review")
    assert (await store.get_run("parent")).parent_run is None


async def test_a_duplicate_run_id_is_a_conflict(store: Store) -> None:
    await start(store)
    async with unchanged(store):
        with pytest.raises(Conflict, match="run run-0001 already exists"):
            await start(store, digest="d2", source="other")


async def test_a_run_is_found_by_a_unique_prefix(store: Store) -> None:
    for run_id in ("abcd1111", "abcd2222", "abce0000", "ab"):
        await start(store, run_id)
    assert (await store.get_run("abcd1")).id == "abcd1111"
    assert (await store.get_run("abce")).id == "abce0000"
    assert (await store.get_run("ab")).id == "ab"  # an exact id of any length
    with pytest.raises(RunNotFound) as caught:
        await store.get_run("abcd")
    assert str(caught.value) == "'abcd' matches several runs: abcd1111, abcd2222"
    with pytest.raises(RunNotFound) as caught:
        await store.get_run("zzzz")
    assert str(caught.value) == f"no run 'zzzz' in {store.url}"
    with pytest.raises(RunNotFound) as caught:
        await store.get_run("abc")  # too short to be a prefix
    assert str(caught.value) == f"no run 'abc' in {store.url} (a part of a run id needs at least 4 characters)"


async def test_a_run_is_found_by_the_tail_of_its_id(store: Store) -> None:
    for run_id in ("1m99aaaa0000x1y2", "1m99aaaa0000z3w4", "1m99aaab0000x1y2"):
        await start(store, run_id)
    assert (await store.get_run("z3w4")).id == "1m99aaaa0000z3w4"
    with pytest.raises(RunNotFound) as caught:
        await store.get_run("x1y2")  # two runs end so
    assert str(caught.value) == "'x1y2' matches several runs: 1m99aaaa0000x1y2, 1m99aaab0000x1y2"
    with pytest.raises(RunNotFound, match="matches several runs"):
        await store.get_run("1m99")  # the start of several ids


async def test_a_prefix_matching_many_runs_names_five(store: Store) -> None:
    for number in range(7):
        await start(store, f"abcd{number}")
    with pytest.raises(RunNotFound) as caught:
        await store.get_run("abcd")
    assert str(caught.value) == "'abcd' matches several runs: abcd0, abcd1, abcd2, abcd3, abcd4..."


async def test_a_run_id_that_cannot_be_stored_is_not_found(store: Store) -> None:
    """A command-line argument that was not UTF-8 arrives with surrogates: no run has that id."""
    await start(store, "abcd1111")
    with pytest.raises(RunNotFound) as caught:
        await store.get_run("abcd\udcff")
    assert str(caught.value).startswith("no run 'abcd\\")  # the surrogate shown escaped, on one line
    assert str(caught.value).endswith(f"udcff' in {store.url}")


async def test_list_runs_filters_newest_first(store: Store) -> None:
    await start(store, "run-a", created_at=1.0)
    await start(store, "run-b", created_at=2.0, machine="other")
    await start(store, "run-c", created_at=3.0)
    await store.end_run("run-c", "w1", "succeeded", output={"ok": True})
    assert [r.id for r in await store.list_runs(RunFilter())] == ["run-c", "run-b", "run-a"]
    assert [r.id for r in await store.list_runs(RunFilter(statuses=("running",)))] == ["run-b", "run-a"]
    assert [r.id for r in await store.list_runs(RunFilter(machine="m"))] == ["run-c", "run-a"]
    assert [r.id for r in await store.list_runs(RunFilter(limit=1))] == ["run-c"]
    assert [r.id for r in await store.list_runs(RunFilter(updated_before=2.5))] == ["run-b", "run-a"]
    both = RunFilter(statuses=("running", "succeeded"), machine="m", limit=5)
    assert [r.id for r in await store.list_runs(both)] == ["run-c", "run-a"]
    await start(store, "run-0", created_at=3.0)  # made at the same moment as run-c: the greater id first
    assert [r.id for r in await store.list_runs(RunFilter(limit=2))] == ["run-c", "run-0"]


async def test_list_runs_pages_with_a_keyset_cursor(store: Store) -> None:
    """`before` continues a newest-first listing after the last run shown, ties in creation time included."""
    for name, created in (("run-a", 1.0), ("run-b", 2.0), ("run-c", 2.0), ("run-d", 3.0)):
        await start(store, name, created_at=created, machine="other" if name == "run-b" else "m")
    first = await store.list_runs(RunFilter(limit=2))
    assert [r.id for r in first] == ["run-d", "run-c"]
    cursor = (first[-1].created_at, first[-1].id)
    assert [r.id for r in await store.list_runs(RunFilter(limit=2, before=cursor))] == ["run-b", "run-a"]
    assert [r.id for r in await store.list_runs(RunFilter(machine="m", before=cursor))] == ["run-a"]
    assert await store.list_runs(RunFilter(before=(1.0, "run-a"))) == []


async def test_list_runs_by_parent_and_top_level(store: Store) -> None:
    await start(store, "parent-1", created_at=1.0)
    await start(store, "parent-2", created_at=2.0)
    await start(store, "kid-a", created_at=3.0, parent_run="parent-1", parent_step=1, child_name="a")
    await start(store, "kid-b", created_at=4.0, parent_run="parent-1", parent_step=2, child_name="b")
    await start(store, "kid-c", created_at=5.0, parent_run="parent-2", parent_step=1, child_name="a")
    children = await store.list_runs(RunFilter(parent_run="parent-1"))
    assert [(r.id, r.parent_step, r.child_name) for r in children] == [("kid-b", 2, "b"), ("kid-a", 1, "a")]
    assert [r.id for r in await store.list_runs(RunFilter(top_level=True))] == ["parent-2", "parent-1"]
    assert [r.id for r in await store.list_runs(RunFilter(parent_run="parent-2", limit=1))] == ["kid-c"]
    assert await store.list_runs(RunFilter(parent_run="kid-a")) == []
    # a whole level of the tree in one read: the children of any of several runs, newest first
    level = await store.list_runs(RunFilter(parents=("parent-1", "parent-2", "kid-a")))
    assert [r.id for r in level] == ["kid-c", "kid-b", "kid-a"]
    assert [r.id for r in await store.list_runs(RunFilter(parents=("parent-2",), statuses=("running",)))] == ["kid-c"]


async def test_delete_runs_removes_what_they_own_and_unused_sources(store: Store) -> None:
    await start(store, "run-a", digest="shared", source="a")
    await start(store, "run-b", digest="shared", source="a")
    await start(store, "run-c", digest="own", source="c", checkpoints=[CheckpointRow("cp", "main", 1, NOW)])
    await make_waiting(store, "run-c", ["go"])
    await store.add_event("run-c", "go", None, now=NOW)
    assert await store.delete_runs(["run-c", "run-a", "nope"], now=LEASE + 1) == ["run-c", "run-a"]
    assert await store.source("own") is None
    assert await store.source("shared") == "a"
    for run_id in ("run-a", "run-c"):
        with pytest.raises(RunNotFound):
            await store.get_run(run_id)
        assert await store.branches(run_id) == []
        assert await store.steps(run_id, "main") == []
        assert await store.checkpoints(run_id) == []
        assert await store.pending_events(run_id) == []
        assert await store.inputs(run_id) == {}
    assert [r.id for r in await store.list_runs(RunFilter())] == ["run-b"]
    assert len(await store.steps("run-b", "main")) == 1
    assert await store.delete_runs([], now=NOW) == []
    # nothing of the old run-c is left to meet a new run of that id
    await start(store, "run-c", digest="own", source="c2")
    assert (await store.checkpoints("run-c"), await store.pending_events("run-c")) == ([], [])
    assert await store.source("own") == "c2"


async def test_delete_runs_keeps_runs_that_changed_since_they_were_chosen(store: Store) -> None:
    """prune lists, then deletes: a run leased, revived or touched in between is kept, in the same transaction."""
    await start(store, "run-live")  # leased to w1 until LEASE
    await start(store, "run-old")
    await store.end_run("run-old", "w1", "succeeded")
    await start(store, "run-revived")
    await store.end_run("run-revived", "w1", "failed")
    await store.create_branch("run-revived", BranchRow("rollback-1", "main", 1), now=NOW)  # paused again
    old = (await store.get_run("run-old")).updated_at
    async with unchanged(store):
        chosen = RunFilter(("succeeded", "failed"), updated_before=old)  # run-old was updated at `old`: too new
        assert await store.delete_runs(["run-live", "run-old", "run-revived"], chosen, now=NOW) == []
        assert await store.delete_runs(["run-live"], now=NOW) == []
    chosen = RunFilter(("succeeded", "failed"), updated_before=old + 1)
    assert await store.delete_runs(["run-live", "run-old", "run-revived"], chosen, now=NOW) == ["run-old"]
    assert sorted(r.id for r in await store.list_runs(RunFilter())) == ["run-live", "run-revived"]


async def test_delete_runs_takes_over_a_dead_owners_lease(store: Store) -> None:
    await start(store, "run-live")  # leased to w1 until LEASE
    assert await store.delete_runs(["run-live"], now=NOW, takeover={"w9"}) == []
    assert await store.delete_runs(["run-live", "run-live"], now=NOW, takeover={"w1"}) == ["run-live"]
    assert await store.list_runs(RunFilter()) == []


# -- leases -----------------------------------------------------------------------------------------


async def test_a_live_lease_is_held_against_others(store: Store) -> None:
    await start(store)
    async with unchanged(store):
        with pytest.raises(LeaseHeld) as caught:
            await store.acquire("run-0001", "w2", NOW + 60, now=NOW)
    assert str(caught.value) == "run run-0001 is being advanced by w1 (lease expires in 30s)"
    with pytest.raises(RunNotFound):
        await store.acquire("nope", "w2", NOW + 60, now=NOW)


async def test_a_lease_is_reacquired_by_its_owner_taken_over_or_taken_when_expired(store: Store) -> None:
    await start(store)
    run = await store.acquire("run-0001", "w1", NOW + 60, now=NOW, status="running")
    assert (run.lease_owner, run.lease_expires) == ("w1", NOW + 60)
    run = await store.acquire("run-0001", "w2", NOW + 90, now=NOW, takeover={"w1"})
    assert run.lease_owner == "w2"
    run = await store.acquire("run-0001", "w3", NOW + 200, now=NOW + 91)  # w2's lease expired
    assert run == await store.get_run("run-0001")
    assert (run.lease_owner, run.lease_expires) == ("w3", NOW + 200)


async def test_acquire_sets_the_status_it_is_given(store: Store) -> None:
    await start(store)
    await make_waiting(store, "run-0001", ["go"])
    run = await store.acquire("run-0001", "w2", LEASE, now=NOW + 5, status="running")
    assert run == await store.get_run("run-0001")
    assert (run.status, run.updated_at, run.lease_owner) == ("running", NOW + 5, "w2")


async def test_a_status_the_store_does_not_know_is_refused(store: Store) -> None:
    """A programming error, refused before anything is written, in a sentence that reads."""
    await start(store)
    async with unchanged(store):
        with pytest.raises(ValueError) as caught:
            await store.acquire("run-0001", "w1", LEASE, now=NOW, status="sleeping")
        assert str(caught.value) == "a run cannot be 'sleeping'"
        with pytest.raises(ValueError) as caught:
            await store.release("run-0001", "w1", status="done")
        assert str(caught.value) == "a run cannot be 'done'"
        with pytest.raises(ValueError) as caught:
            await store.end_run("run-0001", "w1", "running")
        assert str(caught.value) == "a run cannot end as 'running'"


async def test_a_lease_without_an_expiry_is_held_for_good(store: Store) -> None:
    await start(store, expires=None)
    async with unchanged(store):
        with pytest.raises(LeaseHeld) as caught:
            await store.acquire("run-0001", "w2", NOW + 60, now=NOW + 10**9)
    assert str(caught.value) == "run run-0001 is being advanced by w1 (its lease does not expire)"
    assert await store.due_runs(NOW + 10**9, 10) == []


async def test_acquire_refuses_a_finished_run_and_one_that_changed_since_it_was_read(store: Store) -> None:
    await start(store, owner=None)
    seen = await store.get_run("run-0001")
    await store.acquire("run-0001", "w1", NOW + 60, now=NOW, expect=seen)  # unchanged: taken
    await store.commit_step("run-0001", "w1", NOW + 60, step(1), [], None)
    await store.release("run-0001", "w1")
    async with unchanged(store):
        with pytest.raises(RunMoved, match="changed while it was being resumed"):
            await store.acquire("run-0001", "w2", NOW + 60, now=NOW, expect=seen)  # a step was recorded since
    await store.cancel("run-0001", now=NOW)
    async with unchanged(store):
        with pytest.raises(RunMoved, match="has been cancelled; nothing to resume"):
            await store.acquire("run-0001", "w2", NOW + 60, now=NOW)


async def test_renew_and_release_are_fenced(store: Store) -> None:
    await start(store)
    await store.renew("run-0001", "w1", NOW + 100)
    assert (await store.get_run("run-0001")).lease_expires == NOW + 100
    async with unchanged(store):
        with pytest.raises(LeaseLost) as caught:
            await store.renew("run-0001", "w2", NOW + 100)
        with pytest.raises(LeaseLost):
            await store.release("run-0001", "w2")
        with pytest.raises(LeaseLost):
            await store.release("run-0001", "w2", status="paused")
    assert str(caught.value) == (
        "run run-0001: this process no longer holds its lease (the run was cancelled or taken over)"
    )
    await store.release("run-0001", "w1", status="paused")
    run = await store.get_run("run-0001")
    assert (run.status, run.lease_owner, run.lease_expires) == ("paused", None, None)
    with pytest.raises(LeaseLost):
        await store.release("run-0001", "w1")
    with pytest.raises(LeaseLost):
        await store.renew("nope", "w1", NOW)


# -- advancing a run --------------------------------------------------------------------------------


async def test_commit_step_records_everything_in_one_go(store: Store, place: Place) -> None:
    await start(store)
    await make_waiting(store, "run-0001", ["approve"])
    event_id = await store.add_event("run-0001", "approve", {"by": "ada"}, now=NOW + 1)
    await store.acquire("run-0001", "w1", LEASE, now=NOW + 2)
    recorded = StepRow(branch="main", step=1, state="ask", event="approve", event_data={"by": "ada"},
                       next_state="done", started_at=NOW + 2, duration=0.25, retries=2,
                       error={"type": "Timeout", "message": "slow"}, result={"answer": [1, "two"]},
                       calls=[{"tool": "search", "args": {"q": "x"}}], context_kind="patch",
                       context='[{"op":"add","path":"/b","value":2}]', tally={"visits": {"ask": 1}})
    checkpoint = CheckpointRow(name="asked", branch="main", point=2, created_at=NOW + 2)
    place.clock.now = NOW + 3
    assert await store.commit_step("run-0001", "w1", NOW + 99, recorded, [checkpoint], event_id) == ["asked"]
    assert await store.steps("run-0001", "main", 1) == [recorded]
    assert await store.checkpoints("run-0001") == [checkpoint]
    assert await store.pending_events("run-0001") == []
    run = await store.get_run("run-0001")
    assert (run.steps, run.status, run.lease_owner, run.lease_expires) == (1, "running", "w1", NOW + 99)
    assert (run.waiting, run.wake_at, run.updated_at) == (None, None, NOW + 3)


async def test_a_step_that_takes_an_event_sets_the_others_aside(store: Store) -> None:
    """Events sent to the same visit of a wait: one is taken, no later visit takes the others."""
    await start(store)
    await make_waiting(store, "run-0001", ["approve", "reject"])
    taken = await store.add_event("run-0001", "approve", None, now=NOW)
    await store.add_event("run-0001", "reject", None, now=NOW)
    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await store.commit_step("run-0001", "w1", LEASE, step(1), [], taken)
    assert await store.pending_events("run-0001") == []
    await make_waiting(store, "run-0001", ["approve", "reject"])  # the wait is visited again
    assert await store.due_runs(NOW, 10) == []


async def test_a_step_that_does_not_end_the_wait_keeps_it(store: Store) -> None:
    await start(store)
    await make_waiting(store, "run-0001", ["go"], deadline=NOW + 60)
    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await store.commit_step("run-0001", "w1", NOW + 50, step(1), [], None, ends_wait=False)
    run = await store.get_run("run-0001")
    assert (run.status, run.wake_at, run.steps, run.lease_expires) == ("waiting", NOW + 60, 1, NOW + 50)
    assert run.waiting == {"state": "ask", "events": ["go"], "deadline": NOW + 60}


async def test_a_checkpoint_name_taken_meanwhile_gets_the_next_free_number(store: Store) -> None:
    """A person names `loop#2` while the run goes on; the run's own second `loop` must not overwrite it."""
    await start(store)
    names = await store.commit_step("run-0001", "w1", LEASE, step(1), [CheckpointRow("loop", "main", 2, NOW, "loop")],
                                    None)
    assert names == ["loop"]
    await store.add_checkpoint("run-0001", CheckpointRow("loop#2", "main", 2, NOW))
    reached = [CheckpointRow("loop#2", "main", 3, NOW + 1, "loop")]
    assert await store.commit_step("run-0001", "w1", LEASE, step(2), reached, None) == ["loop#3"]
    reached = [CheckpointRow("loop", "main", 4, NOW + 2, "loop"), CheckpointRow("end", "main", 4, NOW + 2, "end")]
    assert await store.commit_step("run-0001", "w1", LEASE, step(3), reached, None) == ["loop#4", "end"]
    assert [(c.name, c.point) for c in await store.checkpoints("run-0001")] == [
        ("loop", 2), ("loop#2", 2), ("loop#3", 3), ("loop#4", 4), ("end", 4)]


async def test_a_run_released_as_waiting_after_its_wait_ended_is_paused(store: Store) -> None:
    """A step committed (the wait is over) just before the process was interrupted: nothing is waited for now."""
    await start(store)
    await make_waiting(store, "run-0001", ["go"], deadline=NOW + 60)
    await store.acquire("run-0001", "w2", LEASE, now=NOW, status="running")
    await store.release("run-0001", "w2", status="waiting")  # interrupted before any step: it still waits
    assert (await store.get_run("run-0001")).status == "waiting"
    await store.acquire("run-0001", "w2", LEASE, now=NOW, status="running")
    await store.commit_step("run-0001", "w2", LEASE, step(1), [], None)
    await store.release("run-0001", "w2", status="waiting")
    run = await store.get_run("run-0001")
    assert (run.status, run.waiting, run.wake_at) == ("paused", None, None)


async def test_commit_step_by_a_process_without_the_lease_writes_nothing(store: Store) -> None:
    await start(store)
    async with unchanged(store):
        with pytest.raises(LeaseLost):
            await store.commit_step("run-0001", "w2", LEASE, step(1), [CheckpointRow("cp", "main", 2, NOW)], None)
    await store.cancel("run-0001", now=NOW)
    async with unchanged(store):
        with pytest.raises(LeaseLost):
            await store.commit_step("run-0001", "w1", LEASE, step(1), [], None)
        with pytest.raises(LeaseLost):
            await store.commit_step("nope", "w1", LEASE, step(1), [], None)


async def test_a_step_recorded_twice_is_a_conflict_and_changes_nothing(store: Store, place: Place) -> None:
    await start(store)
    await store.commit_step("run-0001", "w1", LEASE, step(1), [], None)
    place.clock.now = NOW + 9
    async with unchanged(store):
        with pytest.raises(Conflict):
            await store.commit_step("run-0001", "w1", LEASE + 50, step(1), [CheckpointRow("cp", "main", 2, NOW)],
                                    None)


async def test_a_step_whose_values_cannot_be_stored_changes_nothing(store: Store) -> None:
    """Not JSON (a set) or never-ending (a list holding itself): the caller hears why, and the run is not
    left claiming a step it has no row for."""
    await start(store)
    circular: list[object] = []
    circular.append(circular)
    for result, error in (({1, 2}, TypeError), (circular, ValueError)):
        async with unchanged(store):
            with pytest.raises(error):
                await store.commit_step("run-0001", "w1", LEASE + 5, replace(step(1), result=result), [], None)
    assert await store.commit_step("run-0001", "w1", LEASE, step(1), [], None) == []


async def test_commit_step_refuses_an_event_already_taken(store: Store) -> None:
    await start(store)
    await make_waiting(store, "run-0001", ["go"])
    event_id = await store.add_event("run-0001", "go", None, now=NOW)
    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await store.commit_step("run-0001", "w1", LEASE, step(1), [], event_id)
    async with unchanged(store):
        with pytest.raises(Conflict, match=f"event {event_id} is not pending"):
            await store.commit_step("run-0001", "w1", LEASE, step(2), [], event_id)


async def test_commit_step_refuses_another_runs_event(store: Store) -> None:
    await start(store, "run-a")
    await start(store, "run-b")
    await make_waiting(store, "run-b", ["go"])
    event_id = await store.add_event("run-b", "go", None, now=NOW)
    async with unchanged(store):
        with pytest.raises(Conflict, match="not pending"):
            await store.commit_step("run-a", "w1", LEASE, step(1), [], event_id)


async def test_set_machine_points_the_run_at_another_text(store: Store) -> None:
    await start(store)
    await store.set_machine("run-0001", "w1", "d2", "name: m2\n", "/abs/m2.yaml")
    run = await store.get_run("run-0001")
    assert (run.digest, run.path) == ("d2", "/abs/m2.yaml")
    assert await store.source("d2") == "name: m2\n"
    assert await store.source("d1") == "name: m\n"  # kept until no run uses it
    async with unchanged(store):
        with pytest.raises(LeaseLost):
            await store.set_machine("run-0001", "w2", "d3", "name: m3\n", None)
    assert await store.source("d3") is None


async def test_breakpoints_are_kept_with_a_run_whoever_holds_it(store: Store, place: Place) -> None:
    await start(store, breakpoints=["ask"])
    assert (await store.get_run("run-0001")).breakpoints == ["ask"]
    place.clock.now = NOW + 3
    # set by any process (`agentfsm break`) while another holds the lease: the holder reads them at its steps
    changed = await store.set_breakpoints("run-0001", ["ask", "act:tries > 2"], now=NOW + 3)
    run = await store.get_run("run-0001")
    assert run == changed
    assert (run.breakpoints, run.lease_owner, run.updated_at) == (["ask", "act:tries > 2"], "w1", NOW + 3)
    await store.set_breakpoints("run-0001", [], now=NOW + 4)
    assert (await store.get_run("run-0001")).breakpoints == []
    async with unchanged(store):
        with pytest.raises(RunNotFound):
            await store.set_breakpoints("run-9999", ["ask"], now=NOW)


async def test_end_run_sets_the_outcome_and_releases(store: Store, place: Place) -> None:
    await start(store)
    place.clock.now = NOW + 7
    await store.end_run("run-0001", "w1", "waiting", usage={"tokens": 5},
                        waiting={"state": "ask", "events": ["go"], "deadline": NOW + 60})
    run = await store.get_run("run-0001")
    assert (run.status, run.wake_at, run.lease_owner, run.usage) == ("waiting", NOW + 60, None, {"tokens": 5})
    assert (run.waiting, run.updated_at) == ({"state": "ask", "events": ["go"], "deadline": NOW + 60}, NOW + 7)
    async with unchanged(store):
        with pytest.raises(LeaseLost):
            await store.end_run("run-0001", "w1", "succeeded")
    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await store.end_run("run-0001", "w1", "failed", error={"type": "Boom", "message": "no"})
    run = await store.get_run("run-0001")
    assert (run.status, run.error, run.waiting, run.wake_at, run.usage) == (
        "failed", {"type": "Boom", "message": "no"}, None, None, {"tokens": 5})


async def test_cancel(store: Store) -> None:
    await start(store)
    await make_waiting(store, "run-0001", ["go"], deadline=NOW + 60)
    run = await store.cancel("run-0001", now=NOW + 5)
    assert run == await store.get_run("run-0001")
    assert (run.status, run.lease_owner, run.updated_at) == ("cancelled", None, NOW + 5)
    assert (run.waiting, run.wake_at) == (None, None)
    async with unchanged(store):
        with pytest.raises(Conflict, match="run run-0001 has already been cancelled"):
            await store.cancel("run-0001", now=NOW)
    with pytest.raises(RunNotFound):
        await store.cancel("nope", now=NOW)


# -- history ----------------------------------------------------------------------------------------


async def test_context_rows_stop_at_the_latest_snapshot(store: Store) -> None:
    await start(store)  # step 0 is a snapshot
    kinds = {1: "patch", 2: None, 3: "patch", 4: "snapshot", 5: "patch", 6: "patch"}
    for number, kind in kinds.items():
        await store.commit_step("run-0001", "w1", LEASE, step(number, kind=kind), [], None)
    assert [r.step for r in await store.context_rows("run-0001", "main", 0, 6)] == [6, 5, 4]
    assert [r.step for r in await store.context_rows("run-0001", "main", 0, 3)] == [3, 1, 0]
    assert [r.step for r in await store.context_rows("run-0001", "main", 1, 3)] == [3, 1]
    assert (await store.context_rows("run-0001", "main", 0, 6))[2].context == "[]"
    assert [r.step for r in await store.steps("run-0001", "main", 2, 4)] == [2, 3, 4]
    assert [r.step for r in await store.steps("run-0001", "main", 2, limit=2)] == [2, 3]


async def test_tally_row_is_the_newest_tally_in_the_range(store: Store) -> None:
    await start(store)
    tallies = {2: {"visits": {"s2": 1}}, 5: {"visits": {"s2": 1, "s5": 1}}}
    for number in range(1, 8):
        await store.commit_step("run-0001", "w1", LEASE, step(number, tally=tallies.get(number)), [], None)
    assert (await store.tally_row("run-0001", "main", 0, 7)) == step(5, tally=tallies[5])
    assert (await store.tally_row("run-0001", "main", 0, 4)) == step(2, tally=tallies[2])
    assert await store.tally_row("run-0001", "main", 3, 4) is None
    assert await store.tally_row("run-0001", "main", 0, 1) is None


async def test_stream_steps_reads_a_long_history_page_by_page(store: Store) -> None:
    await start(store)
    count = 1_207  # more than two pages of any backend that pages by a few hundred rows
    # submitted at once, in order: they share a few transactions
    await asyncio.gather(*(store.commit_step("run-0001", "w1", LEASE, step(number), [], None)
                           for number in range(1, count + 1)))
    streamed = [row async for row in store.stream_steps("run-0001", "main")]
    assert [row.step for row in streamed] == list(range(count + 1))
    assert streamed[700] == step(700)
    assert [row.step async for row in store.stream_steps("run-0001", "main", 3, 1_101)] == list(range(3, 1_102))
    assert [row.step async for row in store.stream_steps("run-0001", "main", 1_200)] == list(range(1_200, count + 1))
    assert [row async for row in store.stream_steps("run-0001", "main", 5, 4)] == []
    assert [row async for row in store.stream_steps("run-0001", "nope")] == []


async def test_find_run_takes_a_whole_id_only(store: Store) -> None:
    await start(store, "run-0001")
    assert (await store.find_run("run-0001")).id == "run-0001"  # type: ignore[union-attr]
    assert await store.find_run("run-000") is None  # a start of an id names no run here
    assert await store.find_run("0001") is None
    assert await store.find_run("nope\udcff") is None


async def test_newest_step_reads_one_row_of_a_branch(store: Store) -> None:
    await start(store)
    for number in range(1, 6):
        await store.commit_step("run-0001", "w1", LEASE, step(number), [], None)
    assert await store.newest_step("run-0001", "main") == step(5)
    assert await store.newest_step("run-0001", "main", 2, 3) == step(3)
    assert await store.newest_step("run-0001", "main", 6) is None
    assert await store.newest_step("run-0001", "nope") is None


async def test_add_checkpoint(store: Store) -> None:
    await start(store)
    await store.add_checkpoint("run-0001", CheckpointRow("mine", "main", 1, NOW))
    async with unchanged(store):
        with pytest.raises(Conflict, match="already has a checkpoint 'mine'"):
            await store.add_checkpoint("run-0001", CheckpointRow("mine", "main", 1, NOW))
        with pytest.raises(RunNotFound):
            await store.add_checkpoint("run-0001", CheckpointRow("other", "nope", 1, NOW))
        with pytest.raises(RunNotFound):
            await store.add_checkpoint("nope", CheckpointRow("other", "main", 1, NOW))
    assert await store.checkpoints("run-0001") == [CheckpointRow("mine", "main", 1, NOW)]


async def test_checkpoints_and_branches_come_oldest_first(store: Store) -> None:
    """By when they were made, whatever order they were written in (two processes' clocks)."""
    await start(store, checkpoints=[CheckpointRow("start", "main", 1, NOW)])
    await store.add_checkpoint("run-0001", CheckpointRow("late", "main", 1, NOW + 9))
    await store.add_checkpoint("run-0001", CheckpointRow("early", "main", 1, NOW - 9))
    await store.add_checkpoint("run-0001", CheckpointRow("same", "main", 1, NOW))
    assert [c.name for c in await store.checkpoints("run-0001")] == ["early", "start", "same", "late"]
    await store.end_run("run-0001", "w1", "failed")
    await store.create_branch("run-0001", BranchRow("b", "main", 1, NOW + 5), now=NOW + 5)
    await store.create_branch("run-0001", BranchRow("a", "main", 1, NOW - 5), now=NOW + 6)
    await store.create_branch("run-0001", BranchRow("c", "main", 1, NOW + 5), now=NOW + 7)
    assert [b.name for b in await store.branches("run-0001")] == ["a", "main", "b", "c"]


# -- branches ---------------------------------------------------------------------------------------


async def test_create_and_switch_branches(store: Store) -> None:
    await start(store)
    for number in (1, 2, 3):
        await store.commit_step("run-0001", "w1", LEASE, step(number), [], None)
    async with unchanged(store):
        with pytest.raises(LeaseHeld):
            await store.create_branch("run-0001", BranchRow("retry", "main", 2), now=NOW)
    await store.end_run("run-0001", "w1", "failed", error={"type": "Boom"})

    run = await store.create_branch("run-0001", BranchRow("retry", "main", 2, NOW + 1), now=NOW + 1)
    assert run == await store.get_run("run-0001")
    assert (run.head, run.status, run.steps, run.error, run.output) == ("retry", "paused", 1, None, None)
    assert await store.branches("run-0001") == [BranchRow("main", None, 0, NOW), BranchRow("retry", "main", 2, NOW + 1)]
    async with unchanged(store):
        with pytest.raises(Conflict) as caught:
            await store.create_branch("run-0001", BranchRow("retry", "main", 1), now=NOW)
        assert str(caught.value) == "run run-0001 already has a branch 'retry'"
        with pytest.raises(RunNotFound, match="has no branch 'ghost' to start 'other' from"):
            await store.create_branch("run-0001", BranchRow("other", "ghost", 1), now=NOW)
        with pytest.raises(RunNotFound):
            await store.switch_branch("run-0001", "nope", "paused", 0, now=NOW)

    run = await store.switch_branch("run-0001", "main", "failed", 3, now=NOW + 2, error={"type": "Boom"})
    assert (run.head, run.status, run.steps, run.error) == ("main", "failed", 3, {"type": "Boom"})
    assert run == await store.get_run("run-0001")
    await store.switch_branch("run-0001", "retry", "paused", 1, now=NOW + 3)
    await store.acquire("run-0001", "w9", LEASE, now=NOW)
    async with unchanged(store):
        with pytest.raises(LeaseHeld):
            await store.switch_branch("run-0001", "main", "failed", 3, now=NOW)


async def test_a_branch_records_its_own_steps(store: Store) -> None:
    await start(store)
    await store.commit_step("run-0001", "w1", LEASE, step(1), [], None)
    await store.release("run-0001", "w1", status="paused")
    await store.create_branch("run-0001", BranchRow("b", "main", 1, NOW), now=NOW)
    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await store.commit_step("run-0001", "w1", LEASE, step(1, branch="b"), [], None)
    assert [(s.branch, s.step) for s in await store.steps("run-0001", "b")] == [("b", 1)]
    assert [s.step for s in await store.steps("run-0001", "main")] == [0, 1]


async def test_a_new_head_sets_pending_events_aside(store: Store) -> None:
    """Events sent to the old head's wait are never taken by the new head."""
    await start(store)
    await make_waiting(store, "run-0001", ["go"])
    await store.add_event("run-0001", "go", None, now=NOW)
    run = await store.create_branch("run-0001", BranchRow("b", "main", 1), now=NOW + 1)
    assert (run.status, run.waiting, run.wake_at) == ("paused", None, None)
    assert await store.pending_events("run-0001") == []
    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await make_waiting(store, "run-0001", ["go"])
    await store.add_event("run-0001", "go", None, now=NOW)
    await store.switch_branch("run-0001", "main", "paused", 0, now=NOW + 2)
    assert await store.pending_events("run-0001") == []


# -- events -----------------------------------------------------------------------------------------


async def test_events_go_only_to_a_run_waiting_for_them(store: Store) -> None:
    await start(store)
    async with unchanged(store):
        with pytest.raises(Conflict) as caught:
            await store.add_event("run-0001", "approve", None, now=NOW)
        assert str(caught.value) == "run run-0001 is running, not waiting for an event"
        with pytest.raises(RunNotFound):
            await store.add_event("nope", "approve", None, now=NOW)
    await make_waiting(store, "run-0001", ["approve", "reject"])
    async with unchanged(store):
        with pytest.raises(Conflict) as caught:
            await store.add_event("run-0001", "maybe", None, now=NOW)
    assert str(caught.value) == "run run-0001 is not waiting for 'maybe'; it waits for: approve, reject"

    first = await store.add_event("run-0001", "approve", {"by": "ada"}, now=NOW + 1)
    second = await store.add_event("run-0001", "reject", None, now=NOW + 2)
    assert await store.pending_events("run-0001") == [
        EventRow(first, "approve", {"by": "ada"}, NOW + 1), EventRow(second, "reject", None, NOW + 2)]

    await store.acquire("run-0001", "w1", LEASE, now=NOW)
    await store.end_run("run-0001", "w1", "succeeded", output="done")
    async with unchanged(store):
        with pytest.raises(Conflict) as caught:
            await store.add_event("run-0001", "approve", None, now=NOW)
    assert str(caught.value) == "run run-0001 has succeeded; it takes no more events"


async def test_an_event_after_the_timer_ran_out_is_refused(store: Store) -> None:
    """As in Step Functions: once the wait's timer has run out, the timeout transition wins."""
    await start(store)
    await make_waiting(store, "run-0001", ["go"], deadline=NOW + 60)
    taken = await store.add_event("run-0001", "go", 1, now=NOW + 59.5)
    async with unchanged(store):
        for late in (NOW + 60, NOW + 61):
            with pytest.raises(Conflict) as caught:
                await store.add_event("run-0001", "go", 2, now=late)
            assert str(caught.value).startswith("run run-0001 stopped waiting at ")
            assert str(caught.value).endswith(
                ": the timer of state 'ask' ran out, so it takes its timeout transition when it is resumed")
    assert [event.id for event in await store.pending_events("run-0001")] == [taken]


async def test_due_runs(store: Store) -> None:
    await start(store, "evt", created_at=1)
    await make_waiting(store, "evt", ["go"])
    await store.add_event("evt", "go", None, now=NOW)
    await start(store, "idle", created_at=2)
    await make_waiting(store, "idle", ["go"])
    await start(store, "timer", created_at=3)
    await make_waiting(store, "timer", ["go"], deadline=NOW - 1)
    await start(store, "later", created_at=4)
    await make_waiting(store, "later", ["go"], deadline=NOW + 100)
    await start(store, "stale", created_at=5)  # its event was for an earlier wait
    await make_waiting(store, "stale", ["go"])
    await store.add_event("stale", "go", None, now=NOW)
    await store.acquire("stale", "w1", LEASE, now=NOW)
    await make_waiting(store, "stale", ["other"])
    await start(store, "dead", created_at=6)
    await store.acquire("dead", "w1", NOW - 5, now=NOW - 10)
    await start(store, "alive", created_at=7)
    await start(store, "done", created_at=8)
    await store.end_run("done", "w1", "succeeded")
    await start(store, "dead2", created_at=0.5)
    await store.acquire("dead2", "w1", NOW - 5, now=NOW - 10)
    await start(store, "orphan", created_at=9, owner=None)  # running, and nobody holds it

    assert await store.due_runs(NOW, 10) == ["dead2", "evt", "timer", "dead", "orphan"]
    assert await store.due_runs(NOW, 2) == ["dead2", "evt"]
    assert await store.due_runs(NOW + 100, 10) == ["dead2", "evt", "timer", "later", "dead", "alive", "orphan"]


async def test_a_due_run_is_found_behind_any_number_of_runs_that_are_not(store: Store) -> None:
    """Older waiting runs holding events they no longer wait for are looked at and passed over, however many."""
    async def stale(number: int) -> None:
        run_id = f"stale-{number:02d}"
        await start(store, run_id, created_at=number)
        await make_waiting(store, run_id, ["go"])
        await store.add_event(run_id, "go", None, now=NOW)
        await store.acquire(run_id, "w1", LEASE, now=NOW)
        await make_waiting(store, run_id, ["other"])  # waits again, for something else: not due

    await asyncio.gather(*(stale(number) for number in range(60)))  # side by side: they share transactions
    await start(store, "timer", created_at=100)
    await make_waiting(store, "timer", ["go"], deadline=NOW - 1)
    await start(store, "evt", created_at=101)
    await make_waiting(store, "evt", ["go"])
    await store.add_event("evt", "go", None, now=NOW)
    assert await store.due_runs(NOW, 1) == ["timer"]
    assert await store.due_runs(NOW, 5) == ["timer", "evt"]


async def test_a_value_no_store_can_keep_is_refused_alone(store: Store) -> None:
    """Refused before it joins the transaction other runs' writes share: theirs commit, nothing of it is kept."""
    await start(store, "run-0001")
    await make_waiting(store, "run-0001", ["go"])
    await start(store, "run-0002")
    before = await everything(store)
    refused, taken = await asyncio.gather(store.add_event("run-0001", "go", {"when": {1, 2}}, now=NOW),
                                          store.cancel("run-0002", now=NOW), return_exceptions=True)
    assert isinstance(refused, Conflict) and "the event's data cannot be stored: it is not JSON" in str(refused)
    assert not isinstance(taken, BaseException) and taken.status == "cancelled"
    assert (await store.pending_events("run-0001")) == []
    assert before != await everything(store)  # only the cancel changed anything


# -- leases under a blocked event loop -------------------------------------------------------------


async def test_a_blocked_event_loop_does_not_stop_the_lease_heartbeat(shared_store: Store) -> None:
    """A state calling `time.sleep` must not let its lease run out: on a backend other processes share (where a run
    can be taken over), renewals come from a thread of their own, on a connection of their own."""
    import time

    from agentfsm.history.leases import keeper

    store = shared_store
    began = time.time()
    await start(store, owner="me", expires=began + 0.2)
    held = keeper(store, 0.2)
    lease = held.hold("run-0001", "me", time.time)
    try:
        time.sleep(0.6)  # the event loop stands still for three leases' length
        renewed = (await store.get_run("run-0001")).lease_expires
        assert renewed is not None and renewed > began + 0.5, (renewed, began)
    finally:
        held.drop(lease)
