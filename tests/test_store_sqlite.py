"""The SQLite backend against real files: opening, damage, locks, options and URLs, sharing, migration.

What every backend must do is in tests/test_store_conformance.py; this file is what only SQLite has.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from agentfsm.store import (
    BranchRow,
    CheckpointRow,
    RunFilter,
    RunRow,
    StepRow,
    Store,
    StoreError,
    open_store,
    store_path,
)
from agentfsm.store.sqlite import SQLiteBackend, SQLiteStore
from agentfsm.store.sqlite_schema import SCHEMA_VERSION
from tests.store_backends import LEASE, NOW, start, step

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "runs-v1.db"
"""A store written by the released version (schema 1); tests open copies of it, never the file itself."""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def dump(path: Path) -> str:
    """Everything in the file, as SQL text."""
    with closing(sqlite3.connect(path)) as db:
        return "\n".join(db.iterdump())


@contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """The block (a refused open or a failing call) must leave the file exactly as it was."""
    before = dump(path)
    yield
    assert dump(path) == before


def pragma(store: Store, name: str) -> Any:
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    return backend.db.execute(f"PRAGMA {name}").fetchone()[0]


async def made(path: Path) -> None:
    """A store file with one run in it."""
    store = SQLiteStore(path)
    await start(store)
    await store.close()


# -- opening and the file ---------------------------------------------------------------------------


async def test_a_fresh_store_is_created_with_its_folders_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "runs.db"
    store = SQLiteStore(path)
    assert store.url == f"sqlite:///{path}"
    await store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert SCHEMA_VERSION == 6


OPEN_WHEN_TOLD = """\
import os, sys
from agentfsm.store.sqlite import SQLiteBackend
print("ready", flush=True)
os.read(0, 1)
SQLiteBackend(sys.argv[1], create=True).db.close()  # as a command ends: the last one out folds the WAL back
"""


async def test_processes_creating_one_store_at_once_all_open_it(tmp_path: Path) -> None:
    """Ten `agentfsm run`s started together in a fresh folder all create `.agentfsm/runs.db`: none may be told
    the store is locked (SQLite refuses the WAL switch at once to all but one: they must try again)."""
    for attempt in range(10):
        path = tmp_path / str(attempt) / "runs.db"
        gate, opened = os.pipe()  # one pipe for all: a single write wakes them together
        openers = [subprocess.Popen([sys.executable, "-c", OPEN_WHEN_TOLD, str(path)], stdin=gate,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                   for _ in range(10)]
        os.close(gate)
        for opener in openers:  # every one has started and waits at the gate
            assert opener.stdout is not None and opener.stdout.readline() == "ready\n"
        os.write(opened, b"g" * len(openers))
        os.close(opened)
        for opener in openers:
            _, errors = opener.communicate(timeout=60)
            assert opener.returncode == 0, errors
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
                str(SCHEMA_VERSION),)


async def test_the_wal_is_checkpointed_often_and_kept_small(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        assert (pragma(store, "journal_mode"), pragma(store, "synchronous")) == ("wal", 1)  # NORMAL
        assert pragma(store, "wal_autocheckpoint") == 256
        assert pragma(store, "journal_size_limit") == 1_048_576
    finally:
        await store.close()
    store = SQLiteStore(path, synchronous="full")
    try:
        assert pragma(store, "synchronous") == 2  # FULL
    finally:
        await store.close()


async def test_reopening_a_store_keeps_its_runs(path: Path) -> None:
    await made(path)
    store = SQLiteStore(path, create=False)
    try:
        assert (await store.get_run("run-0001")).machine == "m"
        assert await store.inputs("run-0001") == {"topic": "x"}
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(path: Path) -> None:
    await made(path)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with unchanged(path), pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert str(caught.value) == (
        f"{path} was written by a newer agentfsm (store schema 99, this version reads up to {SCHEMA_VERSION}); upgrade agentfsm"
    )


async def test_a_file_of_garbage_is_not_a_store(path: Path) -> None:
    path.write_bytes(b"\x13\x37 not sqlite at all " * 400)
    with pytest.raises(StoreError, match="not a database") as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert path.read_bytes() == b"\x13\x37 not sqlite at all " * 400


async def test_a_truncated_store_is_damaged(path: Path) -> None:
    store = SQLiteStore(path)
    for number in range(50):
        await start(store, f"run-{number:04d}", source="x" * 2000, digest=f"d{number}")
    await store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


async def test_a_foreign_sqlite_file_is_refused_and_left_alone(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    with unchanged(path), pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert str(caught.value) == f"{path} is not an agentfsm store (it has other tables: users)"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


async def test_an_empty_file_is_no_store_to_read(path: Path) -> None:
    """A store truncated to nothing is not quietly turned into a new, empty one by a command that only reads."""
    path.write_bytes(b"")
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path, create=False)
    assert str(caught.value) == f"{path} is not an agentfsm store (the file is empty)"
    assert path.read_bytes() == b"" and sorted(p.name for p in path.parent.iterdir()) == ["runs.db"]


async def test_a_folder_or_a_path_through_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        SQLiteStore(tmp_path)
    assert str(caught.value) == f"{tmp_path} is a folder, not a store file"
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(StoreError, match=r"cannot create a store at .*plain.txt/sub/runs.db"):
        SQLiteStore(tmp_path / "plain.txt" / "sub" / "runs.db")


async def test_a_value_that_is_not_json_is_reported_as_damage(path: Path) -> None:
    await made(path)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE runs SET output = '{broken' WHERE id = 'run-0001'")
    store = SQLiteStore(path)
    try:
        with pytest.raises(StoreError) as caught:
            await store.get_run("run-0001")
        assert str(caught.value).startswith(f"{path} is damaged (a stored value is not JSON")
        assert "\n" not in str(caught.value)
    finally:
        await store.close()


async def test_a_write_that_meets_a_damaged_value_says_so_and_fails_alone(path: Path) -> None:
    """The damaged run's write is refused with the one-line message; a step of another run in the same
    transaction still commits."""
    store = SQLiteStore(path)
    try:
        await start(store, "run-0001")
        await start(store, "run-0002")
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE runs SET waiting = 'nope{' WHERE id = 'run-0001'")
        before = table(path, "runs")[0]
        cancelled, committed = await asyncio.gather(store.cancel("run-0001", now=NOW),
                                                    store.commit_step("run-0002", "w1", LEASE, step(1), [], None),
                                                    return_exceptions=True)
        assert isinstance(cancelled, StoreError)
        assert str(cancelled).startswith(f"{path} is damaged (a stored value is not JSON")
        assert "\n" not in str(cancelled)
        assert committed == []
        assert table(path, "runs")[0] == before
        assert (await store.get_run("run-0002")).steps == 1
    finally:
        await store.close()


# -- locks ------------------------------------------------------------------------------------------


async def test_a_locked_store_waits_then_says_so(path: Path) -> None:
    await made(path)
    store = SQLiteStore(path, busy_timeout=0.2)
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            with unchanged_while_locked(path, other), pytest.raises(StoreError) as caught:
                await store.cancel("run-0001", now=NOW)
            other.execute("ROLLBACK")
        assert str(caught.value) == f"the store {path} is locked by another process (waited 0.2s)"
        assert (await store.cancel("run-0001", now=NOW)).status == "cancelled"  # usable once the lock is gone
    finally:
        await store.close()


@contextmanager
def unchanged_while_locked(path: Path, holder: sqlite3.Connection) -> Iterator[None]:
    """`unchanged`, read through the connection that holds the lock."""
    before = "\n".join(holder.iterdump())
    yield
    assert "\n".join(holder.iterdump()) == before
    assert path.exists()


async def test_a_store_waits_for_a_lock_that_is_let_go(path: Path) -> None:
    """Another process holding the write lock for a moment delays a write; it does not fail it."""
    await made(path)
    store = SQLiteStore(path, busy_timeout=60)
    try:
        with closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other:
            other.execute("BEGIN EXCLUSIVE")
            letting_go = threading.Timer(0.3, other.execute, ("ROLLBACK",))
            letting_go.start()
            try:
                run = await store.cancel("run-0001", now=NOW)  # asked while the lock is held
            finally:
                letting_go.join()
        assert run.status == "cancelled"
        assert (await store.get_run("run-0001")).status == "cancelled"
    finally:
        await store.close()


# -- options and URLs ---------------------------------------------------------------------------------


async def test_options_are_checked(path: Path) -> None:
    with pytest.raises(StoreError, match="synchronous must be one of NORMAL, FULL, not 'OFF'"):
        SQLiteStore(path, synchronous="OFF")
    with pytest.raises(StoreError, match="busy_timeout must be zero or more seconds"):
        SQLiteStore(path, busy_timeout=-1)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path, create=False)
    assert str(caught.value) == f"no store at {path}"
    assert not path.exists()
    await SQLiteStore(path, synchronous="full").close()
    await SQLiteStore(path, create=False).close()


async def test_store_urls() -> None:
    assert store_path("sqlite:///runs.db") == Path("runs.db")
    assert store_path("sqlite:///sub/runs.db") == Path("sub/runs.db")
    assert store_path("sqlite:////tmp/runs.db") == Path("/tmp/runs.db")
    assert store_path("SQLite:////tmp/runs.db?timeout=1") == Path("/tmp/runs.db")
    assert store_path("some/dir/runs.db") == Path("some/dir/runs.db")
    for url in ("postgresql://user@host/db", "sqlite://host/runs.db", "sqlite:///", "memory://x"):
        with pytest.raises(StoreError) as caught:
            store_path(url)
        assert str(caught.value) == (f"unsupported store URL '{url}': use sqlite:///PATH or "
                                     "postgresql://USER@HOST:PORT/DATABASE")
    with pytest.raises(StoreError, match="the store URL is empty"):
        store_path("")


async def test_open_store_defaults_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTFSM_STORE", raising=False)
    store = open_store()
    assert store.url == f"sqlite:///{tmp_path / '.agentfsm' / 'runs.db'}"
    await store.close()
    monkeypatch.setenv("AGENTFSM_STORE", "sqlite:///elsewhere/x.db")
    store = open_store(synchronous="FULL")
    assert store.url == f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}"
    assert pragma(store, "synchronous") == 2
    await store.close()
    store = open_store(str(tmp_path / "bare.db"))
    assert store.url == f"sqlite:///{tmp_path / 'bare.db'}"
    await store.close()


async def test_a_store_url_sets_synchronous_and_the_lock_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}?synchronous=FULL&timeout=0.5")
    try:
        assert store.url == f"sqlite:///{tmp_path / 'x.db'}"  # options are not part of where the store is
        assert pragma(store, "synchronous") == 2  # FULL
        assert isinstance(store.backend, SQLiteBackend) and store.backend.busy_timeout == 0.5
    finally:
        await store.close()
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}?synchronous=FULL", synchronous="NORMAL")
    try:
        assert pragma(store, "synchronous") == 1  # the argument wins over the URL
    finally:
        await store.close()
    for query, message in (("bogus=1", "unknown option 'bogus' \\(options: synchronous, timeout\\)"),
                           ("timeout=soon", "timeout must be a number of seconds"),
                           ("synchronous=SLOW", "synchronous must be one of")):
        with pytest.raises(StoreError, match=message):
            open_store(f"sqlite:///{tmp_path / 'y.db'}?{query}")
    assert not (tmp_path / "y.db").exists()


async def test_opening_one_store_twice_in_a_process_shares_it_until_the_last_opener_closes(path: Path) -> None:
    first = open_store(f"sqlite:///{path}")
    second = open_store(str(path))  # the same file, spelled another way
    assert second is first
    await start(first)
    await first.close()
    assert (await second.get_run("run-0001")).status == "running"  # still open for the other opener
    third = open_store(f"sqlite:///{path}")
    assert third is first
    await second.close()
    await third.close()
    reopened = open_store(f"sqlite:///{path}")  # the last opener closed it: a new store, on the same rows
    try:
        assert reopened is not first
        assert (await reopened.get_run("run-0001")).status == "running"
    finally:
        await reopened.close()


async def test_opening_one_memory_store_twice_shares_it_and_its_rows_outlive_it() -> None:
    first = open_store("memory://test-store-sqlite-sharing")
    assert open_store("memory://test-store-sqlite-sharing") is first
    await start(first)
    await first.close()
    await first.close()
    again = open_store("memory://test-store-sqlite-sharing")
    try:
        assert again is not first and again.url == "memory://test-store-sqlite-sharing"
        assert [run.id for run in await again.list_runs(RunFilter())] == ["run-0001"]  # kept for the process
    finally:
        await again.close()


# -- migration from the released version (schema 1) ------------------------------------------------

JSON_RUN_COLUMNS = ("llms", "output", "error", "usage", "waiting")
JSON_STEP_COLUMNS = ("event_data", "error", "result", "calls")
CHILD_COLUMNS = ("parent_run", "parent_step", "child_name")


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """A copy of the store the released version wrote (the fixture itself is never opened)."""
    copy = tmp_path / "runs.db"
    shutil.copyfile(FIXTURE, copy)
    return copy


def table(path: Path, name: str, json_columns: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every row of a table in rowid order, as column -> value (JSON columns read as values)."""
    with closing(sqlite3.connect(path)) as db:
        cursor = db.execute(f"SELECT * FROM {name} ORDER BY rowid")
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor]
    for row in rows:
        row.update({c: json.loads(row[c]) for c in json_columns if row[c] is not None})
    return rows


def tables(path: Path) -> dict[str, list[dict[str, Any]]]:
    """What a store file holds, table by table."""
    found = {name: table(path, name) for name in ("meta", "sources", "branches", "checkpoints", "events")}
    return found | {"runs": table(path, "runs", JSON_RUN_COLUMNS), "steps": table(path, "steps", JSON_STEP_COLUMNS)}


def without(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


async def test_a_store_of_the_released_version_is_upgraded_in_place(v1: Path) -> None:
    before = tables(v1)
    assert before["meta"] == [{"key": "schema_version", "value": "1"}]
    await SQLiteStore(v1, create=False).close()
    after = tables(v1)
    assert after["meta"] == [{"key": "schema_version", "value": str(SCHEMA_VERSION)}]
    assert table(v1, "workers") == []  # schema 3: workers register themselves
    # runs of the released version have no trace (it did not keep one): the tables are there, empty
    assert table(v1, "trace") == [] and table(v1, "payloads") == []
    # the inputs moved to run_inputs: the row every step rewrites no longer carries them
    assert table(v1, "run_inputs") == [{"run_id": run["id"], "inputs": run["inputs"]} for run in before["runs"]]
    assert [run["inputs"] for run in after["runs"]] == [None, None]
    assert without(after["runs"], "inputs", "breakpoints", *CHILD_COLUMNS) == without(before["runs"], "inputs")
    assert {run[column] for run in after["runs"] for column in (*CHILD_COLUMNS, "breakpoints")} == {None}
    assert without(after["steps"], "tally", "trace_seq", "trace_last", "trace") == before["steps"]
    assert {row[column] for row in after["steps"] for column in ("tally", "trace_seq", "trace_last", "trace")} == {None}
    for name in ("sources", "branches", "checkpoints", "events"):
        assert after[name] == before[name], name
    with unchanged(v1):  # upgraded once: opening it again changes nothing
        await SQLiteStore(v1, create=False).close()


async def test_an_upgraded_store_reads_back_what_the_released_version_wrote(v1: Path) -> None:
    before = tables(v1)
    store = SQLiteStore(v1, create=False)
    try:
        assert [run.id for run in await store.list_runs(RunFilter())] == ["v1approval000001", "v1react0000000001"]
        for row in before["runs"]:
            run_id = row["id"]
            assert await store.get_run(run_id) == RunRow(**without([row], "inputs")[0])
            assert await store.inputs(run_id) == json.loads(row["inputs"])
            assert await store.source(row["digest"]) == _of(before["sources"], digest=row["digest"])[0]["text"]
            branches = await store.branches(run_id)
            assert branches == [BranchRow(**b) for b in without(_of(before["branches"], run_id=run_id), "run_id")]
            for branch in branches:
                steps = without(_of(before["steps"], run_id=run_id, branch=branch.name), "run_id")
                assert await store.steps(run_id, branch.name) == [StepRow(**(s | {"calls": s["calls"] or []}))
                                                                  for s in steps]
            checkpoints = without(_of(before["checkpoints"], run_id=run_id), "run_id")
            assert await store.checkpoints(run_id) == [CheckpointRow(**c) for c in checkpoints]
        react = await store.get_run("v1react0000000001")
        assert (react.status, react.output, react.steps) == ("succeeded", "391", 7)
        approval = await store.get_run("v1approval000001")
        assert (approval.status, approval.head, approval.steps) == ("waiting", "rollback-1", 1)
        assert [c.name for c in await store.checkpoints("v1approval000001")] == ["review", "review#2", "by-hand"]
        pending = await store.pending_events("v1approval000001")
        assert [(e.id, e.name, e.data) for e in pending] == [(2, "approved", {"by": "ada"})]
    finally:
        await store.close()


def _of(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [row for row in rows if all(row[k] == v for k, v in match.items())]


async def test_an_upgraded_store_goes_on_where_the_released_version_stopped(v1: Path) -> None:
    store = SQLiteStore(v1, create=False)
    try:
        approval = await store.get_run("v1approval000001")
        now = approval.updated_at + 1  # before its timer runs out: the pending 'approved' makes it due
        assert await store.due_runs(now, 10) == ["v1approval000001"]
        await store.acquire(approval.id, "w1", now + 30, now=now, status="running")
        [event] = await store.pending_events(approval.id)
        took = StepRow(branch="rollback-1", step=2, state="review", event="approved", event_data=event.data,
                       next_state="publish", started_at=now, tally={"visits": {"review": 2}})
        await store.commit_step(approval.id, "w1", now + 30, took, [], event.id)
        assert await store.steps(approval.id, "rollback-1", 2) == [took]
        assert await store.tally_row(approval.id, "rollback-1", 0, 2) == took
        await start(store, "child-of-v1", parent_run=approval.id, parent_step=2, child_name="review")
        assert [r.id for r in await store.list_runs(RunFilter(parent_run=approval.id))] == ["child-of-v1"]
        assert {r.id for r in await store.list_runs(RunFilter(top_level=True))} == {approval.id, "v1react0000000001"}
    finally:
        await store.close()


async def test_a_store_that_cannot_be_upgraded_now_is_left_as_it_was(v1: Path) -> None:
    """Another process holds the write lock: the upgrade waits, gives up with the one-line message, and
    leaves the file at schema 1; the next open upgrades it."""
    with closing(sqlite3.connect(v1, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with unchanged_while_locked(v1, other), pytest.raises(StoreError) as caught:
            SQLiteStore(v1, create=False, busy_timeout=0.1)
        other.execute("ROLLBACK")
    assert str(caught.value) == f"the store {v1} is locked by another process (waited 0.1s)"
    assert tables(v1)["meta"] == [{"key": "schema_version", "value": "1"}]
    await SQLiteStore(v1, create=False).close()
    assert tables(v1)["meta"] == [{"key": "schema_version", "value": str(SCHEMA_VERSION)}]


async def test_a_store_written_by_a_newer_schema_is_refused(v1: Path) -> None:
    with closing(sqlite3.connect(v1)) as db, db:
        db.execute(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with unchanged(v1), pytest.raises(StoreError) as caught:
        SQLiteStore(v1, create=False)
    assert str(caught.value) == (
        f"{v1} was written by a newer agentfsm (store schema {SCHEMA_VERSION + 1}, this version reads up to "
        f"{SCHEMA_VERSION}); upgrade agentfsm"
    )
