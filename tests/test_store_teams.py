"""What every store backend must do for teams: the message bus and the shared memory, each write safe to repeat.

Each test runs once per backend of the conformance suite (tests/store_backends.py: SQLite, memory, PostgreSQL).
"""

from __future__ import annotations

import pytest

from agentfsm.store import Store
from agentfsm.store import teams
from agentfsm.store.base import MemoryRow, Refused
from tests.store_backends import NOW, place, start, store

__all__ = ["place", "store"]  # the fixtures, imported for pytest

pytestmark = pytest.mark.asyncio


async def test_messages_are_taken_oldest_first_by_their_recipient_once(store: Store) -> None:
    await start(store, "run-t")
    await teams.send(store, "run-t", "team-1", "a", ["b"], "plan", {"n": 1}, "run-a:main:1", NOW)
    await teams.send(store, "run-t", "team-1", "a", ["b", "c"], None, "ünï", "run-a:main:2", NOW + 1)
    # the same step sending again (after a crash) posts nothing more
    assert await teams.send(store, "run-t", "team-1", "a", ["b"], None, "again", "run-a:main:2", NOW + 2) == [2, 3]
    first = await teams.take(store, "team-1", "b", lambda m: True, "run-b:main:1")
    assert first is not None and (first.content, first.topic, first.sender) == ({"n": 1}, "plan", "a")
    # the step that took it, taken again, gets the same message
    again = await teams.take(store, "team-1", "b", lambda m: True, "run-b:main:1")
    assert again is not None and again.id == first.id
    none_left = await teams.take(store, "team-1", "b", lambda m: m.topic == "plan", "run-b:main:2")
    assert none_left is None
    second = await teams.take(store, "team-1", "b", lambda m: True, "run-b:main:3")
    assert second is not None and second.content == "ünï"
    assert [m.recipient for m in await teams.messages(store, "team-1")] == ["b", "b", "c"]
    assert await teams.messages(store, "team-2") == []


async def test_memory_writes_are_versioned_logged_and_repeatable(store: Store) -> None:
    await start(store, "run-t")
    await teams.seed_memory(store, "run-t", "team-1", {"count": 0, "notes": []}, NOW)
    await teams.seed_memory(store, "run-t", "team-1", {"count": 99}, NOW)  # a resumed team keeps its memory
    kept = {row.key: (row.value, row.version) for row in await teams.memory(store, "team-1")}
    assert kept == {"count": (0, 1), "notes": ([], 1)}

    def bump(current: MemoryRow | None) -> MemoryRow:
        assert current is not None
        return MemoryRow(current.key, current.value + 1, current.version + 1)

    row = await teams.write_memory(store, "run-t", "team-1", "count", writer="run-a:main:3", agent="a", op="set",
                                   decide=bump, now=NOW + 1)
    assert (row.value, row.version) == (1, 2)
    row = await teams.write_memory(store, "run-t", "team-1", "count", writer="run-a:main:3", agent="a", op="set",
                                   decide=bump, now=NOW + 2)
    assert (row.value, row.version) == (1, 2)  # the same step again: nothing written twice

    def refuse(current: MemoryRow | None) -> MemoryRow:
        raise Refused(ValueError("locked by b"))

    with pytest.raises(Refused):
        await teams.write_memory(store, "run-t", "team-1", "count", writer="run-a:main:4", agent="a", op="set",
                                 decide=refuse, now=NOW + 3)
    assert [(w.writer, w.op, w.value, w.version, w.agent) for w in await teams.writes(store, "team-1")] == [
        ("run-a:main:3", "set", 1, 2, "a")]


async def test_deleting_a_run_deletes_its_teams(store: Store) -> None:
    await start(store, "run-t", owner=None, status="succeeded")
    await teams.send(store, "run-t", "team-1", "a", ["b"], None, "x", "w:1", NOW)
    await teams.seed_memory(store, "run-t", "team-1", {"k": 1}, NOW)
    assert await store.delete_runs(["run-t"], now=NOW + 100) == ["run-t"]
    assert await teams.messages(store, "team-1") == [] and await teams.memory(store, "team-1") == []
