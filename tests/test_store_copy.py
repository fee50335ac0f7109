"""`agentfsm store copy SRC DST`: every run, with everything it owns, from SQLite to PostgreSQL and back.

A team run brings its bus and shared memory along, a run with child runs its children; the copy is
compared with the original row for row (`dump_run`), and no table keyed by run is left behind.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from agentfsm import Runs
from agentfsm.store import open_store
from agentfsm.store.base import RunFilter
from agentfsm.store.copy import CARRIED, OWNED, dump_run
from tests.cli_inprocess import Cli, cli_fixture
from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parent.parent
cli = cli_fixture
APPROVAL = ROOT / "machines" / "approval.yaml"
GROUP_CHAT = ROOT / "machines" / "teams" / "group_chat.yaml"
NESTED = ROOT / "tests" / "machines" / "nested_twice.yaml"
COUNTER = ROOT / "tests" / "machines" / "counter.yaml"


def test_every_table_keyed_by_run_is_carried_by_the_copy(tmp_path: Path, postgres_server: Cluster) -> None:
    """A table a backend adds with a `run_id` column must be named in `OWNED` (one line) or carried by hand."""
    sqlite_url, postgres_url = f"sqlite:///{tmp_path / 'runs.db'}", postgres_server.fresh_url()

    async def make(url: str) -> None:
        async with Runs(url) as runs:
            await runs.submit(COUNTER, {"limit": 1})  # the store is made with its tables

    for url in (sqlite_url, postgres_url):
        asyncio.run(make(url))
    db = sqlite3.connect(tmp_path / "runs.db")
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    keyed = {table for table in tables if "run_id" in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}}
    db.close()
    schema = postgres_url.rpartition("schema=")[2]
    on_server = set(postgres_server.psql("SELECT DISTINCT table_name FROM information_schema.columns "
                                         f"WHERE table_schema = '{schema}' AND column_name = 'run_id'").split())
    copied = CARRIED | {owned.table for owned in OWNED}
    assert {"team_messages", "team_memory", "team_writes"} <= keyed == on_server
    assert keyed - copied == set(), "tables keyed by run that `store copy` leaves behind"


async def _dumps(url: str) -> dict[str, dict[str, Any]]:
    store = open_store(url)
    try:
        return {run.id: await dump_run(store, run.id) for run in await store.list_runs(RunFilter())}
    finally:
        await store.close()


def test_store_copy_moves_runs_teams_and_children_to_postgresql_and_back(postgres_server: Cluster, tmp_path: Path,
                                                                        cli: Cli) -> None:
    first, back = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'back.db'}"
    server = postgres_server.fresh_url()

    async def seed() -> dict[str, str]:
        async with Runs(first) as runs:
            flow = (await runs.start(APPROVAL, {"topic": "copies"})).run_id
            await runs.send(flow, "rejected", {"comment": "shorter"})  # an event taken by step 2
            await runs.rollback(flow, "review")  # a second branch, the head now
            chat = (await runs.start(GROUP_CHAT)).run_id  # messages on the bus, writes to the shared memory
            nested = (await runs.start(NESTED)).run_id  # a child run with a child run of its own
            queued = (await runs.submit(COUNTER, {"limit": 2})).id
            return {"flow": flow, "chat": chat, "nested": nested, "queued": queued}

    ids = asyncio.run(seed())
    original = asyncio.run(_dumps(first))
    chat = original[ids["chat"]]
    messages = chat["team_messages"]
    assert len(messages) == 3 and [bool(m["taken_by"]) for m in messages].count(True) >= 2, messages
    assert chat["team_memory"] and len(chat["team_writes"]) >= 5, chat
    children = [dump["run"] for dump in original.values() if dump["run"]["parent_run"]]
    assert len(children) == 4 and len(original) == 8  # writer, critic; the nested machine and its own child

    there = cli("store", "copy", first, server, "--json")
    assert there.code == 0, there
    printed = json.loads(there.out)
    assert (printed["runs"], printed["verified"]) == (8, True), printed
    home = cli("store", "copy", server, back)
    assert home.code == 0 and home.err.startswith("copied 8 run(s), "), home
    assert "from postgresql://agentfsm:***@" in home.err
    assert original == asyncio.run(_dumps(server)) == asyncio.run(_dumps(back))
    again = cli("store", "copy", first, server)
    assert again.code == 2 and "already has 8 of the 8 runs to copy" in again.err and "nothing copied" in again.err
    assert postgres_server.password not in there.err + home.err + again.err

    async def resume_the_copy() -> None:  # the copy is a store like any other: the rolled-back run goes on
        async with Runs(back) as runs:
            assert (await runs.resume(ids["flow"])).status == "waiting"
            done = await runs.send(ids["flow"], "approved", {"by": "ada"})
            assert done.status == "succeeded"

    asyncio.run(resume_the_copy())
