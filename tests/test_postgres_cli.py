"""The CLI on a real PostgreSQL server: what works on SQLite works the same, and bad URLs get one line, exit 2.

The store behaviour itself is the conformance suite's (tests/test_store_conformance.py runs on
PostgreSQL too); these tests drive the `agentfsm` command as a user does, in this process (tests/cli_inprocess.py)
where a process of its own adds nothing, in a subprocess where it does (a connection cut under a running command).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentfsm.store import StoreError, open_store
from agentfsm.store.base import RunFilter
from tests.cli_inprocess import Cli, Done, cli_fixture
from tests.helpers import environment_without_proxies
from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parent.parent
APPROVAL = ROOT / "machines" / "approval.yaml"
inprocess = cli_fixture


def cli(*args: object, store: str) -> subprocess.CompletedProcess[str]:
    env = {**environment_without_proxies(), "AGENTFSM_STORE": store}
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)


def test_the_approval_flow_with_rollback_diff_and_prune(postgres_server: Cluster, inprocess: Cli) -> None:
    url = postgres_server.fresh_url()
    outputs: list[Done] = []

    def step(*args: object, code: int = 0) -> Any:
        result = inprocess(*args, "--json", store=url)
        outputs.append(result)
        assert result.code == code, result
        return json.loads(result.out)

    started = step("run", APPROVAL, "-i", "topic=the store", "-q", code=3)
    run_id = started["run_id"]
    assert started["status"] == "waiting"
    assert step("send", run_id, "rejected", "--data", '{"comment": "shorter"}', "-q", code=3)["status"] == "waiting"
    assert [point["name"] for point in step("checkpoints", run_id)] == ["review", "review#2"]
    rolled = step("rollback", run_id, "--to", "review", "--resume", "-q", code=3)
    assert rolled["status"] == "waiting", rolled
    changed = step("diff", run_id, "main@2", "main@4")
    assert "revisions" in json.dumps(changed)
    done = step("send", run_id, "approved", "--data", '{"by": "ada"}', "-q")
    assert done["status"] == "succeeded" and done["output"]["revisions"] == 0, done
    history = step("history", run_id)
    assert [row["state"] for row in history] == ["draft", "review", "published"]
    [listed] = step("runs")
    assert (listed["run_id"], listed["status"]) == (run_id, "succeeded")
    pruned = step("prune", "--older-than", "0")
    assert [run["run_id"] for run in pruned["runs"]] == [run_id]
    assert step("runs") == []
    for result in outputs:  # the URL carries a password: no output shows it
        assert postgres_server.password not in result.out + result.err, result


def one_error_line(result: Done) -> str:
    assert "Traceback" not in result.err and result.code == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


def test_bad_servers_and_urls_get_one_line_and_exit_2(postgres_server: Cluster, inprocess: Cli) -> None:
    port = postgres_server.port
    wrong = one_error_line(inprocess("runs", store=postgres_server.url(password="wrong-secret")))
    assert "cannot log in to postgresql://agentfsm:***@127.0.0.1" in wrong and "password authentication failed" in wrong
    assert "wrong-secret" not in wrong
    missing = postgres_server.url().replace(f"{port}/agentfsm", f"{port}/nosuchdb")
    assert 'database "nosuchdb" does not exist' in one_error_line(inprocess("runs", store=missing))
    unreachable = postgres_server.url().replace(f":{port}/", ":1/")
    assert "cannot reach the PostgreSQL server" in one_error_line(inprocess("runs", store=unreachable))
    assert "unsupported store URL 'mysql://u:***@db/x'" in one_error_line(inprocess("runs", store="mysql://u:pw@db/x"))
    bad_schema = one_error_line(inprocess("runs", store=postgres_server.url("Bad-Name")))
    assert "schema must be lower-case letters, digits and _" in bad_schema
    # a reading command makes no store: the schema is still not there afterwards
    fresh = postgres_server.fresh_url()
    assert "no store at" in one_error_line(inprocess("history", "abcd", store=fresh))
    schema = fresh.rpartition("schema=")[2]
    assert postgres_server.psql(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'").strip() == "0"


def test_a_server_too_old_and_a_store_too_new_are_refused(postgres_server: Cluster,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfsm.store import postgres

    url = postgres_server.fresh_url()

    async def listing() -> None:
        store = open_store(url)
        try:
            await store.list_runs(RunFilter())
        finally:
            await store.close()

    asyncio.run(listing())  # made at the current version
    schema = url.rpartition("schema=")[2]
    postgres_server.psql(f"UPDATE {schema}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"was written by a newer agentfsm \(store schema 99"):
        asyncio.run(listing())
    # the server here is PostgreSQL 15: pretend the oldest supported one is newer than it
    monkeypatch.setattr(postgres, "OLDEST_SERVER", 990000)
    with pytest.raises(StoreError, match=r"PostgreSQL 15\.\S+ is too old; agentfsm needs PostgreSQL 13 or newer"):
        asyncio.run(listing())


def test_a_schema_of_the_longest_name_queues_runs_and_takes_events(postgres_server: Cluster) -> None:
    """Wake-up channels are named after the schema; a name as long as PostgreSQL allows still makes one."""
    url = postgres_server.url("s" * 63)

    async def scenario() -> None:
        from agentfsm import Runs

        async with Runs(url) as runs:
            assert (await runs.submit(ROOT / "tests" / "machines" / "counter.yaml", {"limit": 1})).status == "queued"
            waiting = await runs.start(APPROVAL)
            assert (await runs.send(waiting.run_id, "approved")).status == "succeeded"

    asyncio.run(scenario())


def test_a_connection_lost_mid_run_is_made_again_and_no_step_is_lost_or_doubled(postgres_server: Cluster) -> None:
    """The server drops a running `agentfsm run`'s connection (as a restart or a network cut does): the process
    says so, connects again, runs the step whose transaction never committed again, and finishes; its history is
    every step once."""
    url = postgres_server.fresh_url()
    env = {**environment_without_proxies(), "AGENTFSM_STORE": url}
    counter = ROOT / "tests" / "machines" / "counter.yaml"
    running = subprocess.Popen([sys.executable, "-m", "agentfsm", "run", counter, "-i", "limit=500", "-q",
                                "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    schema = url.rpartition("schema=")[2]
    cut = "0"
    for _ in range(400):  # once it has recorded a few steps, its connection goes
        try:
            steps = int(postgres_server.psql(f"SELECT coalesce(max(steps), 0) FROM {schema}.runs").strip() or 0)
        except RuntimeError:  # its store is not made yet
            steps = 0
        if steps > 20:
            cut = postgres_server.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       f"WHERE application_name = 'agentfsm-{running.pid}'").strip()
            break
        time.sleep(0.05)
    out, err = running.communicate(timeout=300)
    assert cut == "1", f"no connection to cut (the run ended first?): {out} {err}"
    assert "lost the connection to postgresql://agentfsm:***@" in err, err
    assert postgres_server.password not in out + err
    if running.returncode != 0:  # cut while committing: whether that step committed is unknown, so it stopped
        assert "connection lost while committing" in err, (out, err)
        run_id = postgres_server.psql(f"SELECT id FROM {schema}.runs").strip()
        out = cli("resume", run_id, "--json", "-q", store=url).stdout  # resumable, from its last recorded step
    else:
        assert "reconnected to" in err, err
    assert json.loads(out)["output"] == 500, (out, err)
    numbers = postgres_server.psql(f"SELECT step FROM {schema}.steps ORDER BY step").split()
    assert numbers == [str(step) for step in range(1002)]  # step 0 to the final's, each once
