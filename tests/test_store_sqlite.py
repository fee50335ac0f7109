"""The SQLite store against real files: round trips, leases, events, branches, damage, locks, migrations."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from agentfsm.store import (
    BranchRow,
    CheckpointRow,
    Conflict,
    EventRow,
    LeaseHeld,
    LeaseLost,
    RunFilter,
    RunNotFound,
    RunRow,
    StepRow,
    StoreError,
    open_store,
    store_path,
)
from agentfsm.store.sqlite import SQLiteStore
from agentfsm.store.sqlite_schema import SCHEMA_VERSION

NOW = 1_000.0
LEASE = NOW + 30.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(path) as opened:
        yield opened


def dump(path: Path) -> str:
    """Everything in the file, as SQL text."""
    with closing(sqlite3.connect(path)) as db:
        return "\n".join(db.iterdump())


@contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """The block (a failing call) must leave the file exactly as it was."""
    before = dump(path)
    yield
    assert dump(path) == before


def start(store: SQLiteStore, run_id: str = "run-0001", *, owner: str | None = "w1", created_at: float = NOW,
          digest: str | None = "d1", source: str | None = "name: m\n", machine: str = "m",
          checkpoints: list[CheckpointRow] | None = None) -> RunRow:
    """A run leased to `owner`, with its step 0 (a snapshot of the first context)."""
    run = RunRow(id=run_id, machine=machine, digest=digest, path="m.yaml", status="running", created_at=created_at,
                 updated_at=created_at, inputs={"topic": "x"}, lease_owner=owner,
                 lease_expires=LEASE if owner else None)
    first = StepRow(branch="main", step=0, state=None, started_at=created_at, context_kind="snapshot",
                    context='{"topic":"x"}')
    store.create_run(run, source, first, checkpoints or [])
    return run


def step(number: int, *, branch: str = "main", kind: str | None = "patch", context: str | None = "[]") -> StepRow:
    return StepRow(branch=branch, step=number, state=f"s{number}", next_state=f"s{number + 1}",
                   started_at=NOW + number, duration=0.5, context_kind=kind, context=context if kind else None)


def make_waiting(store: SQLiteStore, run_id: str, events: list[str], *, deadline: float | None = None) -> None:
    """Suspend a run leased to w1 at a waiting state."""
    store.end_run(run_id, "w1", "waiting", waiting={"state": "ask", "events": events, "deadline": deadline})


# -- opening, schema, URLs --------------------------------------------------------------------------


def test_a_fresh_store_is_created_with_its_folders_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "runs.db"
    with SQLiteStore(path) as store:
        assert store.url == f"sqlite:///{path}"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert SCHEMA_VERSION == 1


def test_reopening_a_store_keeps_its_runs(path: Path) -> None:
    with SQLiteStore(path) as store:
        start(store)
    with SQLiteStore(path) as store:
        assert store.get_run("run-0001").machine == "m"


def test_a_newer_schema_is_refused(path: Path) -> None:
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with unchanged(path), pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert str(caught.value) == (
        f"{path} was written by a newer agentfsm (store schema 99, this version reads up to 1); upgrade agentfsm"
    )


def test_a_file_of_garbage_is_not_a_store(path: Path) -> None:
    path.write_bytes(b"\x13\x37 not sqlite at all " * 400)
    with pytest.raises(StoreError, match="not a database") as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert path.read_bytes() == b"\x13\x37 not sqlite at all " * 400


def test_a_truncated_store_is_damaged(path: Path) -> None:
    with SQLiteStore(path) as store:
        for number in range(50):
            start(store, f"run-{number:04d}", source="x" * 2000, digest=f"d{number}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_foreign_sqlite_file_is_refused_and_left_alone(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    with unchanged(path), pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert str(caught.value) == f"{path} is not an agentfsm store (it has other tables: users)"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_an_empty_file_is_no_store_to_read(path: Path) -> None:
    """A store truncated to nothing is not quietly turned into a new, empty one by a command that only reads."""
    path.write_bytes(b"")
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path, create=False)
    assert str(caught.value) == f"{path} is not an agentfsm store (the file is empty)"
    assert path.read_bytes() == b"" and sorted(p.name for p in path.parent.iterdir()) == ["runs.db"]


def test_a_folder_or_a_path_through_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        SQLiteStore(tmp_path)
    assert str(caught.value) == f"{tmp_path} is a folder, not a store file"
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(StoreError, match=r"cannot create a store at .*plain.txt/sub/runs.db"):
        SQLiteStore(tmp_path / "plain.txt" / "sub" / "runs.db")


def test_a_value_that_is_not_json_is_reported_as_damage(path: Path) -> None:
    with SQLiteStore(path) as store:
        start(store)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE runs SET output = '{broken' WHERE id = 'run-0001'")
    with SQLiteStore(path) as store, pytest.raises(StoreError) as caught:
        store.get_run("run-0001")
    assert str(caught.value).startswith(f"{path} is damaged (a stored value is not JSON")
    assert "\n" not in str(caught.value)


def test_a_locked_store_waits_then_says_so(path: Path) -> None:
    with SQLiteStore(path, busy_timeout=0.2) as store:
        start(store)
        before = dump(path)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            began = time.monotonic()
            with pytest.raises(StoreError) as caught:
                store.cancel("run-0001", now=NOW)
            waited = time.monotonic() - began
            other.execute("ROLLBACK")
        assert str(caught.value) == f"the store {path} is locked by another process (waited 0.2s)"
        assert waited >= 0.19
        assert dump(path) == before
        assert store.cancel("run-0001", now=NOW).status == "cancelled"  # usable once the lock is gone


def test_options_are_checked(path: Path) -> None:
    with pytest.raises(StoreError, match="synchronous"):
        SQLiteStore(path, synchronous="OFF")
    with pytest.raises(StoreError, match="no store at"):
        SQLiteStore(path, create=False)
    assert not path.exists()
    SQLiteStore(path, synchronous="full").close()
    SQLiteStore(path, create=False).close()


def test_store_urls() -> None:
    assert store_path("sqlite:///runs.db") == Path("runs.db")
    assert store_path("sqlite:///sub/runs.db") == Path("sub/runs.db")
    assert store_path("sqlite:////tmp/runs.db") == Path("/tmp/runs.db")
    assert store_path("some/dir/runs.db") == Path("some/dir/runs.db")
    for url in ("postgresql://user@host/db", "sqlite://host/runs.db", "sqlite:///"):
        with pytest.raises(StoreError) as caught:
            store_path(url)
        assert str(caught.value) == f"unsupported store URL '{url}': use sqlite:///PATH"


def test_open_store_defaults_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTFSM_STORE", raising=False)
    store = open_store()
    assert store.url == f"sqlite:///{tmp_path / '.agentfsm' / 'runs.db'}"
    store.close()
    monkeypatch.setenv("AGENTFSM_STORE", "sqlite:///elsewhere/x.db")
    store = open_store(synchronous="FULL")
    assert store.url == f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}"
    store.close()
    store = open_store(str(tmp_path / "bare.db"))
    assert store.url == f"sqlite:///{tmp_path / 'bare.db'}"
    store.close()


def test_a_store_url_sets_synchronous_and_the_lock_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}?synchronous=FULL&timeout=0.5")
    try:
        assert store.url == f"sqlite:///{tmp_path / 'x.db'}"  # options are not part of where the store is
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.busy_timeout == 0.5
    finally:
        store.close()
    for query, message in (("bogus=1", "unknown option 'bogus'"), ("timeout=soon", "timeout must be a number"),
                           ("synchronous=SLOW", "synchronous must be one of")):
        with pytest.raises(StoreError, match=message):
            open_store(f"sqlite:///{tmp_path / 'y.db'}?{query}")


# -- runs -------------------------------------------------------------------------------------------


def test_a_run_round_trips(store: SQLiteStore) -> None:
    checkpoint = CheckpointRow(name="start", branch="main", point=1, created_at=NOW)
    run = RunRow(id="run-0001", machine="m", digest="d1", path="/abs/m.yaml", status="running", created_at=NOW,
                 updated_at=NOW, inputs={"topic": "ünïcode", "n": [1, 2.5, None]}, llms={"writer": "openai:gpt-4o"},
                 usage={"tokens": 3}, lease_owner="w1", lease_expires=LEASE)
    first = StepRow(branch="main", step=0, state=None, started_at=NOW, context_kind="snapshot", context='{"a":1}')
    store.create_run(run, "name: m\n", first, [checkpoint])
    assert store.get_run("run-0001") == run
    assert store.source("d1") == "name: m\n"
    assert store.source("unknown") is None
    assert store.steps("run-0001", "main") == [first]
    assert store.branches("run-0001") == [BranchRow(name="main", parent=None, fork=0, created_at=NOW)]
    assert store.checkpoints("run-0001") == [checkpoint]


def test_a_duplicate_run_id_is_a_conflict(store: SQLiteStore, path: Path) -> None:
    start(store)
    with unchanged(path), pytest.raises(Conflict, match="run run-0001 already exists"):
        start(store, digest="d2", source="other")


def test_a_run_is_found_by_a_unique_prefix(store: SQLiteStore) -> None:
    for run_id in ("abcd1111", "abcd2222", "abce0000", "ab"):
        start(store, run_id)
    assert store.get_run("abcd1").id == "abcd1111"
    assert store.get_run("abce").id == "abce0000"
    assert store.get_run("ab").id == "ab"  # an exact id of any length
    with pytest.raises(RunNotFound) as caught:
        store.get_run("abcd")
    assert str(caught.value) == "'abcd' matches several runs: abcd1111, abcd2222"
    with pytest.raises(RunNotFound) as caught:
        store.get_run("zzzz")
    assert str(caught.value) == f"no run 'zzzz' in {store.url}"
    with pytest.raises(RunNotFound):
        store.get_run("abc")  # too short to be a prefix


def test_list_runs_filters_newest_first(store: SQLiteStore) -> None:
    start(store, "run-a", created_at=1.0)
    start(store, "run-b", created_at=2.0, machine="other")
    start(store, "run-c", created_at=3.0)
    store.end_run("run-c", "w1", "succeeded", output={"ok": True})
    assert [r.id for r in store.list_runs(RunFilter())] == ["run-c", "run-b", "run-a"]
    assert [r.id for r in store.list_runs(RunFilter(statuses=("running",)))] == ["run-b", "run-a"]
    assert [r.id for r in store.list_runs(RunFilter(machine="m"))] == ["run-c", "run-a"]
    assert [r.id for r in store.list_runs(RunFilter(limit=1))] == ["run-c"]
    assert [r.id for r in store.list_runs(RunFilter(updated_before=2.5))] == ["run-b", "run-a"]


def test_delete_runs_removes_what_they_own_and_unused_sources(store: SQLiteStore, path: Path) -> None:
    start(store, "run-a", digest="shared", source="a")
    start(store, "run-b", digest="shared", source="a")
    start(store, "run-c", digest="own", source="c", checkpoints=[CheckpointRow("cp", "main", 1, NOW)])
    make_waiting(store, "run-c", ["go"])
    store.add_event("run-c", "go", None, now=NOW)
    assert store.delete_runs(["run-c", "run-a", "nope"], now=LEASE + 1) == ["run-c", "run-a"]
    assert store.source("own") is None
    assert store.source("shared") == "a"
    with closing(sqlite3.connect(path)) as db:
        for table in ("steps", "branches", "checkpoints", "events"):
            assert db.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall() in ([("run-b",)], [])
    assert [r.id for r in store.list_runs(RunFilter())] == ["run-b"]
    assert store.delete_runs([], now=NOW) == []


def test_delete_runs_keeps_runs_that_changed_since_they_were_chosen(store: SQLiteStore, path: Path) -> None:
    """prune lists, then deletes: a run leased, revived or touched in between is kept, in the same transaction."""
    start(store, "run-live")  # leased to w1 until LEASE
    start(store, "run-old")
    store.end_run("run-old", "w1", "succeeded")
    start(store, "run-revived")
    store.end_run("run-revived", "w1", "failed")
    store.create_branch("run-revived", BranchRow("rollback-1", "main", 1), now=NOW)  # paused again
    old = store.get_run("run-old").updated_at
    with unchanged(path):
        chosen = RunFilter(("succeeded", "failed"), updated_before=old)  # run-old was updated at `old`: too new
        assert store.delete_runs(["run-live", "run-old", "run-revived"], chosen, now=NOW) == []
        assert store.delete_runs(["run-live"], now=NOW) == []
    chosen = RunFilter(("succeeded", "failed"), updated_before=old + 1)
    assert store.delete_runs(["run-live", "run-old", "run-revived"], chosen, now=NOW) == ["run-old"]
    assert sorted(r.id for r in store.list_runs(RunFilter())) == ["run-live", "run-revived"]


# -- leases -----------------------------------------------------------------------------------------


def test_a_live_lease_is_held_against_others(store: SQLiteStore, path: Path) -> None:
    start(store)
    with unchanged(path), pytest.raises(LeaseHeld) as caught:
        store.acquire("run-0001", "w2", NOW + 60, now=NOW)
    assert str(caught.value) == "run run-0001 is being advanced by w1 (lease expires in 30s)"
    with pytest.raises(RunNotFound):
        store.acquire("nope", "w2", NOW + 60, now=NOW)


def test_a_lease_is_reacquired_by_its_owner_taken_over_or_taken_when_expired(store: SQLiteStore) -> None:
    start(store)
    run = store.acquire("run-0001", "w1", NOW + 60, now=NOW, status="running")
    assert (run.lease_owner, run.lease_expires) == ("w1", NOW + 60)
    run = store.acquire("run-0001", "w2", NOW + 90, now=NOW, takeover={"w1"})
    assert run.lease_owner == "w2"
    run = store.acquire("run-0001", "w3", NOW + 200, now=NOW + 91)  # w2's lease expired
    assert run == store.get_run("run-0001")
    assert (run.lease_owner, run.lease_expires) == ("w3", NOW + 200)


def test_acquire_refuses_a_finished_run_and_one_that_changed_since_it_was_read(store: SQLiteStore,
                                                                               path: Path) -> None:
    start(store, owner=None)
    seen = store.get_run("run-0001")
    store.acquire("run-0001", "w1", NOW + 60, now=NOW, expect=seen)  # unchanged: taken
    store.commit_step("run-0001", "w1", NOW + 60, step(1), [], None)
    store.release("run-0001", "w1")
    with unchanged(path), pytest.raises(Conflict, match="changed while it was being resumed"):
        store.acquire("run-0001", "w2", NOW + 60, now=NOW, expect=seen)  # a step was recorded since
    store.cancel("run-0001", now=NOW)
    with unchanged(path), pytest.raises(Conflict, match="has been cancelled; nothing to resume"):
        store.acquire("run-0001", "w2", NOW + 60, now=NOW)


def test_renew_and_release_are_fenced(store: SQLiteStore, path: Path) -> None:
    start(store)
    store.renew("run-0001", "w1", NOW + 100)
    assert store.get_run("run-0001").lease_expires == NOW + 100
    with unchanged(path):
        with pytest.raises(LeaseLost) as caught:
            store.renew("run-0001", "w2", NOW + 100)
        with pytest.raises(LeaseLost):
            store.release("run-0001", "w2")
    assert str(caught.value) == (
        "run run-0001: this process no longer holds its lease (the run was cancelled or taken over)"
    )
    store.release("run-0001", "w1", status="paused")
    run = store.get_run("run-0001")
    assert (run.status, run.lease_owner, run.lease_expires) == ("paused", None, None)
    with pytest.raises(LeaseLost):
        store.release("run-0001", "w1")


# -- advancing a run --------------------------------------------------------------------------------


def test_commit_step_records_everything_in_one_go(store: SQLiteStore) -> None:
    start(store)
    make_waiting(store, "run-0001", ["approve"])
    event_id = store.add_event("run-0001", "approve", {"by": "ada"}, now=NOW + 1)
    store.acquire("run-0001", "w1", LEASE, now=NOW + 2)
    recorded = StepRow(branch="main", step=1, state="ask", event="approve", event_data={"by": "ada"},
                       next_state="done", started_at=NOW + 2, duration=0.25, retries=2,
                       error={"type": "Timeout", "message": "slow"}, result={"answer": [1, "two"]},
                       calls=[{"tool": "search", "args": {"q": "x"}}], context_kind="patch",
                       context='[{"op":"add","path":"/b","value":2}]')
    checkpoint = CheckpointRow(name="asked", branch="main", point=2, created_at=NOW + 2)
    store.commit_step("run-0001", "w1", NOW + 99, recorded, [checkpoint], event_id)
    assert store.steps("run-0001", "main", 1) == [recorded]
    assert store.checkpoints("run-0001") == [checkpoint]
    assert store.pending_events("run-0001") == []
    run = store.get_run("run-0001")
    assert (run.steps, run.status, run.lease_owner, run.lease_expires) == (1, "running", "w1", NOW + 99)
    assert run.updated_at > NOW


def test_a_checkpoint_name_taken_meanwhile_gets_the_next_free_number(store: SQLiteStore) -> None:
    """A person names `loop#2` while the run goes on; the run's own second `loop` must not overwrite it."""
    start(store)
    names = store.commit_step("run-0001", "w1", LEASE, step(1), [CheckpointRow("loop", "main", 2, NOW, "loop")], None)
    assert names == ["loop"]
    store.add_checkpoint("run-0001", CheckpointRow("loop#2", "main", 2, NOW))
    reached = [CheckpointRow("loop#2", "main", 3, NOW + 1, "loop")]
    assert store.commit_step("run-0001", "w1", LEASE, step(2), reached, None) == ["loop#3"]
    assert [(c.name, c.point) for c in store.checkpoints("run-0001")] == [("loop", 2), ("loop#2", 2), ("loop#3", 3)]


def test_a_run_released_as_waiting_after_its_wait_ended_is_paused(store: SQLiteStore) -> None:
    """A step committed (the wait is over) just before the process was interrupted: nothing is waited for now."""
    start(store)
    make_waiting(store, "run-0001", ["go"], deadline=NOW + 60)
    store.acquire("run-0001", "w2", LEASE, now=NOW, status="running")
    store.release("run-0001", "w2", status="waiting")  # interrupted before any step: it still waits
    assert store.get_run("run-0001").status == "waiting"
    store.acquire("run-0001", "w2", LEASE, now=NOW, status="running")
    store.commit_step("run-0001", "w2", LEASE, step(1), [], None)
    store.release("run-0001", "w2", status="waiting")
    run = store.get_run("run-0001")
    assert (run.status, run.waiting, run.wake_at) == ("paused", None, None)


def test_commit_step_by_a_process_without_the_lease_writes_nothing(store: SQLiteStore, path: Path) -> None:
    start(store)
    with unchanged(path), pytest.raises(LeaseLost):
        store.commit_step("run-0001", "w2", LEASE, step(1), [CheckpointRow("cp", "main", 2, NOW)], None)
    store.cancel("run-0001", now=NOW)
    with unchanged(path), pytest.raises(LeaseLost):
        store.commit_step("run-0001", "w1", LEASE, step(1), [], None)


def test_commit_step_refuses_an_event_already_taken(store: SQLiteStore, path: Path) -> None:
    start(store)
    make_waiting(store, "run-0001", ["go"])
    event_id = store.add_event("run-0001", "go", None, now=NOW)
    store.acquire("run-0001", "w1", LEASE, now=NOW)
    store.commit_step("run-0001", "w1", LEASE, step(1), [], event_id)
    with unchanged(path), pytest.raises(Conflict):
        store.commit_step("run-0001", "w1", LEASE, step(2), [], event_id)


def test_set_machine_points_the_run_at_another_text(store: SQLiteStore, path: Path) -> None:
    start(store)
    store.set_machine("run-0001", "w1", "d2", "name: m2\n", "/abs/m2.yaml")
    run = store.get_run("run-0001")
    assert (run.digest, run.path) == ("d2", "/abs/m2.yaml")
    assert store.source("d2") == "name: m2\n"
    with unchanged(path), pytest.raises(LeaseLost):
        store.set_machine("run-0001", "w2", "d3", "name: m3\n", None)


def test_end_run_sets_the_outcome_and_releases(store: SQLiteStore, path: Path) -> None:
    start(store)
    store.end_run("run-0001", "w1", "waiting", usage={"tokens": 5},
                  waiting={"state": "ask", "events": ["go"], "deadline": NOW + 60})
    run = store.get_run("run-0001")
    assert (run.status, run.wake_at, run.lease_owner, run.usage) == ("waiting", NOW + 60, None, {"tokens": 5})
    assert run.waiting == {"state": "ask", "events": ["go"], "deadline": NOW + 60}
    with unchanged(path), pytest.raises(LeaseLost):
        store.end_run("run-0001", "w1", "succeeded")
    store.acquire("run-0001", "w1", LEASE, now=NOW)
    store.end_run("run-0001", "w1", "failed", error={"type": "Boom", "message": "no"})
    run = store.get_run("run-0001")
    assert (run.status, run.error, run.waiting, run.wake_at, run.usage) == (
        "failed", {"type": "Boom", "message": "no"}, None, None, {"tokens": 5})


def test_cancel(store: SQLiteStore, path: Path) -> None:
    start(store)
    run = store.cancel("run-0001", now=NOW + 5)
    assert run == store.get_run("run-0001")
    assert (run.status, run.lease_owner, run.updated_at) == ("cancelled", None, NOW + 5)
    with unchanged(path), pytest.raises(Conflict, match="run run-0001 has already been cancelled"):
        store.cancel("run-0001", now=NOW)
    with pytest.raises(RunNotFound):
        store.cancel("nope", now=NOW)


# -- history ----------------------------------------------------------------------------------------


def test_context_rows_stop_at_the_latest_snapshot(store: SQLiteStore) -> None:
    start(store)  # step 0 is a snapshot
    kinds = {1: "patch", 2: None, 3: "patch", 4: "snapshot", 5: "patch", 6: "patch"}
    for number, kind in kinds.items():
        store.commit_step("run-0001", "w1", LEASE, step(number, kind=kind), [], None)
    assert [r.step for r in store.context_rows("run-0001", "main", 0, 6)] == [6, 5, 4]
    assert [r.step for r in store.context_rows("run-0001", "main", 0, 3)] == [3, 1, 0]
    assert [r.step for r in store.context_rows("run-0001", "main", 1, 3)] == [3, 1]
    assert store.context_rows("run-0001", "main", 0, 6)[2].context == "[]"
    assert [r.step for r in store.steps("run-0001", "main", 2, 4)] == [2, 3, 4]


def test_add_checkpoint(store: SQLiteStore, path: Path) -> None:
    start(store)
    store.add_checkpoint("run-0001", CheckpointRow("mine", "main", 1, NOW))
    with unchanged(path):
        with pytest.raises(Conflict, match="already has a checkpoint 'mine'"):
            store.add_checkpoint("run-0001", CheckpointRow("mine", "main", 1, NOW))
        with pytest.raises(RunNotFound):
            store.add_checkpoint("run-0001", CheckpointRow("other", "nope", 1, NOW))


# -- branches ---------------------------------------------------------------------------------------


def test_create_and_switch_branches(store: SQLiteStore, path: Path) -> None:
    start(store)
    for number in (1, 2, 3):
        store.commit_step("run-0001", "w1", LEASE, step(number), [], None)
    with unchanged(path), pytest.raises(LeaseHeld):
        store.create_branch("run-0001", BranchRow("retry", "main", 2), now=NOW)
    store.end_run("run-0001", "w1", "failed", error={"type": "Boom"})

    run = store.create_branch("run-0001", BranchRow("retry", "main", 2, NOW + 1), now=NOW + 1)
    assert run == store.get_run("run-0001")
    assert (run.head, run.status, run.steps, run.error, run.output) == ("retry", "paused", 1, None, None)
    assert store.branches("run-0001") == [BranchRow("main", None, 0, NOW), BranchRow("retry", "main", 2, NOW + 1)]
    with unchanged(path):
        with pytest.raises(Conflict) as caught:
            store.create_branch("run-0001", BranchRow("retry", "main", 1), now=NOW)
        assert str(caught.value) == "run run-0001 already has a branch 'retry'"
        with pytest.raises(RunNotFound):
            store.switch_branch("run-0001", "nope", "paused", 0, now=NOW)

    run = store.switch_branch("run-0001", "main", "failed", 3, now=NOW + 2)
    assert (run.head, run.status, run.steps) == ("main", "failed", 3)
    assert run == store.get_run("run-0001")
    store.switch_branch("run-0001", "retry", "paused", 1, now=NOW + 3)
    store.acquire("run-0001", "w9", LEASE, now=NOW)
    with unchanged(path), pytest.raises(LeaseHeld):
        store.switch_branch("run-0001", "main", "failed", 3, now=NOW)


def test_a_branch_records_its_own_steps(store: SQLiteStore) -> None:
    start(store)
    store.commit_step("run-0001", "w1", LEASE, step(1), [], None)
    store.release("run-0001", "w1", status="paused")
    store.create_branch("run-0001", BranchRow("b", "main", 1, NOW), now=NOW)
    store.acquire("run-0001", "w1", LEASE, now=NOW)
    store.commit_step("run-0001", "w1", LEASE, step(1, branch="b"), [], None)
    assert [s.branch for s in store.steps("run-0001", "b")] == ["b"]
    assert [s.step for s in store.steps("run-0001", "main")] == [0, 1]


# -- events -----------------------------------------------------------------------------------------


def test_events_go_only_to_a_run_waiting_for_them(store: SQLiteStore, path: Path) -> None:
    start(store)
    with unchanged(path):
        with pytest.raises(Conflict) as caught:
            store.add_event("run-0001", "approve", None, now=NOW)
        assert str(caught.value) == "run run-0001 is running, not waiting for an event"
        with pytest.raises(RunNotFound):
            store.add_event("nope", "approve", None, now=NOW)
    make_waiting(store, "run-0001", ["approve", "reject"])
    with unchanged(path), pytest.raises(Conflict) as caught:
        store.add_event("run-0001", "maybe", None, now=NOW)
    assert str(caught.value) == "run run-0001 is not waiting for 'maybe'; it waits for: approve, reject"

    first = store.add_event("run-0001", "approve", {"by": "ada"}, now=NOW + 1)
    second = store.add_event("run-0001", "reject", None, now=NOW + 2)
    assert store.pending_events("run-0001") == [
        EventRow(first, "approve", {"by": "ada"}, NOW + 1), EventRow(second, "reject", None, NOW + 2)]

    store.acquire("run-0001", "w1", LEASE, now=NOW)
    store.end_run("run-0001", "w1", "succeeded", output="done")
    with unchanged(path), pytest.raises(Conflict) as caught:
        store.add_event("run-0001", "approve", None, now=NOW)
    assert str(caught.value) == "run run-0001 has succeeded; it takes no more events"


def test_due_runs(store: SQLiteStore) -> None:
    start(store, "evt", created_at=1)
    make_waiting(store, "evt", ["go"])
    store.add_event("evt", "go", None, now=NOW)
    start(store, "idle", created_at=2)
    make_waiting(store, "idle", ["go"])
    start(store, "timer", created_at=3)
    make_waiting(store, "timer", ["go"], deadline=NOW - 1)
    start(store, "later", created_at=4)
    make_waiting(store, "later", ["go"], deadline=NOW + 100)
    start(store, "stale", created_at=5)  # its event was for an earlier wait
    make_waiting(store, "stale", ["go"])
    store.add_event("stale", "go", None, now=NOW)
    store.acquire("stale", "w1", LEASE, now=NOW)
    make_waiting(store, "stale", ["other"])
    start(store, "dead", created_at=6)
    store.acquire("dead", "w1", NOW - 5, now=NOW - 10)
    start(store, "alive", created_at=7)
    start(store, "done", created_at=8)
    store.end_run("done", "w1", "succeeded")
    start(store, "dead2", created_at=0.5)
    store.acquire("dead2", "w1", NOW - 5, now=NOW - 10)

    assert store.due_runs(NOW, 10) == ["dead2", "evt", "timer", "dead"]
    assert store.due_runs(NOW, 2) == ["dead2", "evt"]
