"""What every store backend must do with traces: rows written with a step or alone, read back in order, payloads
kept once per run and digest, everything gone with the run. Runs once per backend in tests/store_backends."""

from __future__ import annotations

import pytest

from agentfsm.store import BranchRow, Conflict, LeaseLost, RunNotFound, Store, TraceRow, TraceWrite
from tests.store_backends import LEASE, NOW, place, start, step, store, unchanged

__all__ = ["place", "store"]

pytestmark = pytest.mark.asyncio


def row(seq: int, last: int | None = None, *, branch: str = "main", step_no: int = 1) -> TraceRow:
    last = seq if last is None else last
    entries = ",".join(f'{{"seq":{n},"kind":"k"}}' for n in range(seq, last + 1))
    return TraceRow(seq, last, branch, step_no, f"[{entries}]")


async def test_trace_rows_commit_with_their_step_and_read_back_in_order(store: Store) -> None:
    await start(store)
    await store.commit_step("run-0001", "w1", LEASE, step(1), [], None,
                            trace=TraceWrite([row(1, 3)], {"sha256:a": '"big"'}))
    await store.commit_step("run-0001", "w1", LEASE, step(2), [], None, trace=TraceWrite([row(4, 5, step_no=2)]))
    await store.end_run("run-0001", "w1", "succeeded", trace=TraceWrite([row(6, step_no=2)]))
    assert await store.trace("run-0001") == [row(1, 3), row(4, 5, step_no=2), row(6, step_no=2)]
    # rows holding an entry past `after`: a reader that saw entry 4 gets the row of 4..5 again, then 6
    assert [r.seq for r in await store.trace("run-0001", after=4)] == [4, 6]
    assert [r.seq for r in await store.trace("run-0001", after=1, limit=1)] == [1]
    assert await store.trace_end("run-0001") == 6
    assert await store.trace_end("no-such-run") == 0
    assert await store.payloads("run-0001", ["sha256:a", "sha256:unknown"]) == {"sha256:a": '"big"'}


async def test_one_steps_trace_is_read_alone(store: Store) -> None:
    """What the UI reads to show one step: its rows only, those written with it and apart, in order."""
    await start(store)
    await store.commit_step("run-0001", "w1", LEASE, step(1), [], None, trace=TraceWrite([row(1, 3)]))
    await store.commit_step("run-0001", "w1", LEASE, step(2), [], None, trace=TraceWrite([row(4, 5, step_no=2)]))
    await store.end_run("run-0001", "w1", "succeeded", trace=TraceWrite([row(6, step_no=2)]))
    assert await store.step_trace("run-0001", "main", 2) == [row(4, 5, step_no=2), row(6, step_no=2)]
    assert await store.step_trace("run-0001", "main", 1) == [row(1, 3)]
    assert await store.step_trace("run-0001", "other", 1) == []
    assert await store.step_trace("run-0001", "main", 3) == []


async def test_a_refused_step_writes_no_trace(store: Store) -> None:
    await start(store)
    async with unchanged(store):
        with pytest.raises(LeaseLost):
            await store.commit_step("run-0001", "intruder", LEASE, step(1), [], None,
                                    trace=TraceWrite([row(1)], {"sha256:a": '"x"'}))
    assert await store.payloads("run-0001", ["sha256:a"]) == {}


async def test_a_payload_is_kept_once_per_run_and_digest(store: Store) -> None:
    await start(store)
    await start(store, "run-0002")
    await store.append_trace("run-0001", TraceWrite([row(1)], {"sha256:a": '"first"'}))
    await store.append_trace("run-0001", TraceWrite([row(2)], {"sha256:a": '"first"', "sha256:b": '"b"'}))
    await store.append_trace("run-0002", TraceWrite([row(1)], {"sha256:a": '"first"'}))
    assert await store.payloads("run-0001", ["sha256:a", "sha256:b"]) == {"sha256:a": '"first"', "sha256:b": '"b"'}
    assert await store.payloads("run-0002", ["sha256:b"]) == {}
    assert await store.delete_runs(["run-0001"], now=NOW, takeover={"w1"}) == ["run-0001"]
    assert await store.payloads("run-0001", ["sha256:a"]) == {}
    assert await store.trace("run-0001") == []
    assert await store.payloads("run-0002", ["sha256:a"]) == {"sha256:a": '"first"'}


async def test_a_taken_entry_number_or_an_unknown_run_changes_nothing(store: Store) -> None:
    await start(store)
    await store.append_trace("run-0001", TraceWrite([row(1)]))
    async with unchanged(store):
        with pytest.raises(Conflict):
            await store.append_trace("run-0001", TraceWrite([row(1)], {"sha256:z": '"z"'}))
        with pytest.raises(RunNotFound):
            await store.append_trace("run-0404", TraceWrite([row(1)]))
    assert await store.payloads("run-0001", ["sha256:z"]) == {}


async def test_a_rollback_writes_its_entry_with_the_branch(store: Store) -> None:
    await start(store, owner=None)
    made = await store.create_branch("run-0001", BranchRow("rollback-1", "main", 1, NOW), now=NOW, trace=TraceWrite([row(1, branch="rollback-1", step_no=0)]))
    assert made.head == "rollback-1"
    assert await store.trace("run-0001") == [row(1, branch="rollback-1", step_no=0)]
