"""`agentfsm ui`'s JSON API (docs/ui.md), in process over a real SQLite store: what the page and scripts read and do.

The page itself, its live updates and its safety against markup in data are tested in a real browser
(tests/test_web_browser.py); this file checks the API's answers, refusals and the server's guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfsm import Runs
from agentfsm.store.base import RunRow
from agentfsm.web.app import create_app
from tests.helpers import environment_without_proxies
from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parent.parent
ACT = {"X-Agentfsm-Token": ""}

Client = httpx.AsyncClient


@asynccontextmanager
async def served(db: Path, *, token: str | None = None, root: Path = ROOT, loopback: bool = True
                 ) -> AsyncIterator[tuple[Client, Runs]]:
    async with Runs(f"sqlite:///{db}") as runs:
        app = create_app(runs, root=root, token=token, loopback_only=loopback)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8321") as client:
            yield client, runs
        await app.app.state.ui.driver.close()


def check(test: Callable[[Client, Runs], Awaitable[None]], db: Path, **options: Any) -> None:
    async def go() -> None:
        async with served(db, **options) as (client, runs):
            await test(client, runs)

    asyncio.run(go())


async def until(runs: Runs, run_id: str, status: str) -> RunRow:
    """The run once it has `status` (a run the API continued goes on in the background)."""
    for _ in range(200):
        run = await runs.get(run_id)
        if run.status == status:
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} is {run.status}, not {status}")


async def waiting_run(runs: Runs, topic: str = "the API") -> str:
    result = await runs.start(ROOT / "machines/approval.yaml", {"topic": topic})
    assert result.status == "waiting"
    return result.run_id


def test_runs_are_listed_newest_first_by_page_with_filters(db: Path) -> None:
    async def test(client: Client, runs: Runs) -> None:
        made = [(await runs.start(ROOT / "machines/hello.yaml", {"name": f"n{i}"})).run_id for i in range(5)]
        waiting = await waiting_run(runs)
        page = (await client.get("/api/runs", params={"limit": 4})).json()
        assert [run["run_id"] for run in page["runs"]] == [waiting, *made[::-1][:3]]
        assert page["runs"][0]["status"] == "waiting" and page["runs"][0]["waiting"]["events"] == ["approved",
                                                                                                 "rejected"]
        rest = (await client.get("/api/runs", params={"limit": 4, "cursor": page["cursor"]})).json()
        assert [run["run_id"] for run in rest["runs"]] == made[1::-1] and rest["cursor"] is None
        only = (await client.get("/api/runs", params={"status": "waiting"})).json()["runs"]
        assert [run["run_id"] for run in only] == [waiting]
        hello = (await client.get("/api/runs", params={"machine": "hello"})).json()["runs"]
        assert len(hello) == 5 and hello[0]["steps"] == 2 and hello[0]["duration"] >= 0
        refused = await client.get("/api/runs", params={"status": "done"})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("status: 'done' is not a status (queued, running, waiting")

    check(test, db)


def test_child_runs_are_folded_under_their_parent(db: Path) -> None:
    async def test(client: Client, runs: Runs) -> None:
        parent = (await runs.start(ROOT / "machines/hello.yaml", {"name": "p"})).run_id
        from agentfsm.history.advance import Parent

        kid = (await runs.start(ROOT / "machines/hello.yaml", {"name": "k"},
                                parent=Parent(parent, 1, "greeter"))).run_id
        page = (await client.get("/api/runs")).json()["runs"]
        assert [run["run_id"] for run in page] == [parent]
        assert [(child["run_id"], child["child_name"]) for child in page[0]["children"]] == [(kid, "greeter")]
        opened = (await client.get(f"/api/runs/{parent}")).json()
        assert [child["run_id"] for child in opened["children"]] == [kid]
        assert (await client.get(f"/api/runs/{kid}")).json()["run"]["parent_run"] == parent
        # a child run's own children are folded under it, at every level
        nested = (await runs.start(ROOT / "tests/machines/nested_twice.yaml")).run_id
        [top, _] = (await client.get("/api/runs")).json()["runs"]
        [outer] = top["children"]
        [inner] = outer["children"]
        assert (top["run_id"], outer["child_name"], inner["child_name"], inner["children"]) == (
            nested, "outer", "inner", [])

    check(test, db)


def test_a_run_its_steps_and_one_step_with_the_change_it_made(db: Path) -> None:
    async def test(client: Client, runs: Runs) -> None:
        run_id = await waiting_run(runs)
        await runs.send(run_id, "rejected", {"comment": "shorter"})
        view = (await client.get(f"/api/runs/{run_id}")).json()
        assert view["run"]["status"] == "waiting" and view["current"] == "review"
        assert view["visits"] == {"draft": 1, "review": 1, "revise": 1}
        assert view["diagram"].startswith("stateDiagram-v2")
        assert view["node_ids"]["review"] == "s_review" and f"as {view['node_ids']['review']}" in view["diagram"]
        assert [c["name"] for c in view["checkpoints"]] == ["review", "review#2"]
        steps = (await client.get(f"/api/runs/{run_id}/steps")).json()
        assert [(s["step"], s["state"], s["event"], s["next_state"]) for s in steps["steps"]] == [
            (1, "draft", "done", "review"), (2, "review", "rejected", "revise"), (3, "revise", "done", "review")]
        window = (await client.get(f"/api/runs/{run_id}/steps", params={"first": 2, "limit": 1})).json()
        assert [s["step"] for s in window["steps"]] == [2] and window["last_step"] == 3
        step = (await client.get(f"/api/runs/{run_id}/steps/2")).json()
        assert step["event_data"] == {"comment": "shorter"}
        assert step["added"] == {"review": {"comment": "shorter"}}
        assert step["changed"] == {"revisions": {"old": 0, "new": 1}} and step["removed"] == {}
        assert step["context"]["text"].startswith("Announcing the API")
        llm = (await client.get(f"/api/runs/{run_id}/steps/3")).json()
        assert [call["binding"] for call in llm["llm_calls"]] == ["writer"] and llm["tool_calls"] == []
        assert llm["changed"]["text"]["new"] == "Announcing it, revised: shorter."
        [exchange] = llm["llm_exchanges"]  # the trace's whole request and reply, as the model saw them
        assert exchange["request"]["messages"][0]["content"].startswith("Revise this announcement: Announcing the API")
        assert exchange["reply"]["text"] == "Announcing it, revised: shorter." and exchange["prompt_tokens"] > 0
        missing = await client.get(f"/api/runs/{run_id}/steps/9")
        assert missing.status_code == 400 and "has no step 9 on branch 'main' (its steps are 1 to 3)" in missing.text
        gone = await client.get("/api/runs/nosuchrun")
        assert gone.status_code == 404 and gone.json()["error"].startswith("no run 'nosuchrun'")

    check(test, db)


def test_acting_on_a_run_goes_through_the_service_with_its_refusals(db: Path) -> None:
    async def test(client: Client, runs: Runs) -> None:
        run_id = await waiting_run(runs)
        wrong = await client.post(f"/api/runs/{run_id}/send", json={"event": "shipped"}, headers=ACT)
        assert wrong.status_code == 400
        cli = subprocess.run([sys.executable, "-m", "agentfsm", "send", run_id, "shipped", "--store", f"sqlite:///{db}"],
                             capture_output=True, text=True, env=environment_without_proxies(), timeout=60)
        assert wrong.json()["error"] in cli.stderr  # the same one line the CLI prints
        sent = await client.post(f"/api/runs/{run_id}/send", json={"event": "approved", "data": {"by": "ada"}},
                                 headers=ACT)
        assert sent.status_code == 200, sent.text
        done = await until(runs, run_id, "succeeded")
        assert done.output == {"text": "Announcing the API: faster, simpler, ready today.", "revisions": 0}
        again = await client.post(f"/api/runs/{run_id}/resume", headers=ACT)
        assert again.status_code == 400 and "has succeeded" in again.json()["error"]
        back = await client.post(f"/api/runs/{run_id}/rollback", json={"to": "review"}, headers=ACT)
        assert back.json()["branch"] == "rollback-1" and back.json()["state"] == "review"
        assert back.json()["run"]["status"] == "paused" and back.json()["run"]["branch"] == "rollback-1"
        resumed = await client.post(f"/api/runs/{run_id}/resume", headers=ACT)
        assert resumed.status_code == 200
        await until(runs, run_id, "waiting")
        rerun = await client.post(f"/api/runs/{run_id}/rollback", json={"to": "1", "branch": "again", "resume": True},
                                  headers=ACT)
        assert rerun.json()["branch"] == "again"
        await until(runs, run_id, "waiting")
        cancelled = await client.post(f"/api/runs/{run_id}/cancel", headers=ACT)
        assert cancelled.json()["run"]["status"] == "cancelled"
        branches = (await client.get(f"/api/runs/{run_id}")).json()["branches"]
        assert [b["name"] for b in branches] == ["main", "rollback-1", "again"]
        old = (await client.get(f"/api/runs/{run_id}", params={"branch": "main"})).json()
        assert old["branch"] == "main" and old["current"] == "published"
        bad = await client.post(f"/api/runs/{run_id}/rollback", content=b"{not json", headers=ACT)
        assert bad.status_code == 400 and bad.json()["error"].startswith("the request's body is not JSON")

    check(test, db)


def test_machines_from_the_folder_problems_diagram_and_starting_a_run(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    (folder / "machines").mkdir(parents=True)
    (folder / "machines" / "approval.yaml").write_text((ROOT / "machines/approval.yaml").read_text())
    (folder / "broken.yaml").write_text("agentfsm: 1\nname: broken\ninitial: nowhere\nstates:\n  a: {type: final}\n")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.yaml").write_text("a: 1\n")
    (tmp_path / "outside.yaml").write_text("agentfsm: 1\n")

    async def test(client: Client, runs: Runs) -> None:
        assert (await client.get("/api/machines")).json()["files"] == ["broken.yaml", "machines/approval.yaml"]
        broken = (await client.get("/api/machines/broken.yaml")).json()
        assert not broken["valid"] and broken["diagram"] is None
        assert re.match(r"broken\.yaml:3:\d+: error \S+ .*nowhere", broken["problems"][0]["text"])
        machine = (await client.get("/api/machines/machines/approval.yaml")).json()
        assert machine["valid"] and machine["diagram"].startswith("stateDiagram-v2")
        assert machine["inputs"]["topic"]["default"] == "our new release"
        outside = await client.get("/api/machines/../outside.yaml")
        assert outside.status_code in (400, 404)
        escaped = await client.get("/api/machines/%2E%2E/outside.yaml")
        assert escaped.status_code == 400 and "not a machine file in" in escaped.json()["error"]
        refused = await client.post("/api/machines/machines/approval.yaml/start", json={"inputs": {"topik": "x"}},
                                    headers=ACT)
        assert refused.status_code == 400 and refused.json()["error"].startswith("unknown input 'topik'")
        started = await client.post("/api/machines/machines/approval.yaml/start", json={"inputs": {"topic": "UI"}},
                                    headers=ACT)
        run_id = started.json()["run"]["run_id"]
        assert (await until(runs, run_id, "waiting")).machine == "approval"

    check(test, db, root=folder)


def test_the_guard_token_header_and_host(db: Path) -> None:
    async def with_token(client: Client, runs: Runs) -> None:
        run_id = await waiting_run(runs)
        assert (await client.get("/api/runs")).status_code == 401
        assert (await client.get("/api/runs", params={"token": "nope"})).status_code == 401
        opened = await client.get("/", params={"token": "s3cret"})
        assert opened.status_code == 200 and "agentfsm_token=s3cret" in opened.headers["set-cookie"]
        assert "script-src 'self'" in opened.headers["content-security-policy"]
        assert (await client.get("/api/runs")).status_code == 200  # the cookie the page was given
        only_cookie = await client.post(f"/api/runs/{run_id}/cancel")
        assert only_cookie.status_code == 403 and "x-agentfsm-token header" in only_cookie.text
        wrong = await client.post(f"/api/runs/{run_id}/cancel", headers={"X-Agentfsm-Token": "s3cre"})
        assert wrong.status_code == 401
        client.cookies.clear()
        bearer = await client.post(f"/api/runs/{run_id}/cancel", headers={"Authorization": "Bearer s3cret"})
        assert bearer.json()["run"]["status"] == "cancelled"

    check(with_token, db, token="s3cret")

    async def on_loopback(client: Client, runs: Runs) -> None:
        rebound = await client.get("/api/runs", headers={"Host": "evil.example:8321"})
        assert rebound.status_code == 421
        assert (await client.get("/api/runs", headers={"Host": "localhost:8321"})).status_code == 200
        no_header = await client.post("/api/runs/whatever/cancel")
        assert no_header.status_code == 403

    check(on_loopback, db)


def test_the_vendored_mermaid_is_the_one_tests_js_pins() -> None:
    vendor = ROOT / "agentfsm/web/static/vendor"
    pinned = json.loads((ROOT / "tests/js/package.json").read_text())["dependencies"]["mermaid"]
    assert (vendor / "MERMAID_VERSION").read_text().strip() == pinned
    installed = ROOT / "tests/js/node_modules/mermaid/dist/mermaid.min.js"
    if installed.exists():  # after `npm ci --prefix tests/js`
        assert (vendor / "mermaid.min.js").read_bytes() == installed.read_bytes()


def test_the_command_serves_off_loopback_only_with_a_token_and_streams_steps_live(db: Path, tmp_path: Path) -> None:
    """`agentfsm ui --host 0.0.0.0` makes a token and prints it once; a step another process records reaches an
    open stream within a second."""
    env = environment_without_proxies()
    store = f"sqlite:///{db}"
    subprocess.run([sys.executable, "-m", "agentfsm", "run", str(ROOT / "machines/approval.yaml"), "-q",
                    "--store", store], env=env, capture_output=True, timeout=60, check=False)
    server = subprocess.Popen([sys.executable, "-m", "agentfsm", "ui", "--host", "0.0.0.0", "--port", "0",
                               "--store", store], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert server.stderr is not None
        lines = [server.stderr.readline(), server.stderr.readline()]
        found = re.search(r"open http://0\.0\.0\.0:(\d+)/\?token=(\S+)", lines[1])
        assert found, lines
        port, token = found.groups()
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/runs", timeout=10).status_code == 401
        taken = subprocess.run([sys.executable, "-m", "agentfsm", "ui", "--host", "0.0.0.0", "--port", port, "--store",
                                store], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert taken.returncode == 2 and taken.stderr.startswith(f"error: cannot serve on 0.0.0.0:{port}: "), \
            taken.stderr
        headers = {"X-Agentfsm-Token": token}
        run = httpx.get(f"{base}/api/runs", headers=headers, timeout=10).json()["runs"][0]
        with httpx.stream("GET", f"{base}/api/live/runs/{run['run_id']}", params={"steps": run["steps"]},
                          headers=headers, timeout=10) as stream:
            lines_in = stream.iter_lines()
            first = _event(lines_in)
            assert first["run"]["status"] == "waiting" and first["steps"] == []
            subprocess.run([sys.executable, "-m", "agentfsm", "send", run["run_id"], "approved", "-q", "--store",
                            store], env=env, capture_output=True, timeout=60, check=True)
            change = _event(lines_in)
            while change["run"]["status"] != "succeeded":
                change = _event(lines_in)
            assert change["run"]["steps"] == 3 and change["reset"] is False
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert server.returncode == 0


BROWSER = """\
#!{python}
# A browser for `agentfsm ui --open`: it notes the address it was given, then stays open until the test ends
import pathlib, sys, time
pathlib.Path({opened!r}).write_text(sys.argv[1])
for _ in range(600):
    if pathlib.Path({closed!r}).exists():
        break
    time.sleep(0.1)
"""


def test_on_postgresql_open_opens_the_page_and_a_step_of_another_process_is_streamed_as_notified(
        postgres_server: Cluster, tmp_path: Path) -> None:
    """`--open` hands the address to the user's browser ($BROWSER) without waiting for it; the server listens
    for changed runs (LISTEN/NOTIFY) and streams a step recorded by another process at once: it reads the store
    only once a minute otherwise (AGENTFSM_UI_POLL), so nothing but the notification can bring it in time."""
    url = postgres_server.fresh_url()
    schema = url.rpartition("schema=")[2]
    opened, closed, browser = tmp_path / "opened", tmp_path / "closed", tmp_path / "browser"
    browser.write_text(BROWSER.format(python=sys.executable, opened=str(opened), closed=str(closed)))
    browser.chmod(0o755)

    async def waiting() -> str:
        async with Runs(url) as runs:
            return (await runs.start(ROOT / "machines/approval.yaml")).run_id

    run_id = asyncio.run(waiting())
    env = {**environment_without_proxies(), "BROWSER": str(browser), "AGENTFSM_UI_POLL": "60"}
    server = subprocess.Popen([sys.executable, "-m", "agentfsm", "ui", "--port", "0", "--open", "--store", url],
                              env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert server.stderr is not None
        lines = [server.stderr.readline(), server.stderr.readline()]
        found = re.search(r"open (http://127\.0\.0\.1:\d+/) ", lines[1])
        assert found, lines
        base = found.group(1)
        for _ in range(200):  # the browser is started half a second after the server
            if opened.exists() and opened.read_text():
                break
            time.sleep(0.05)
        assert opened.read_text() == base
        with httpx.stream("GET", f"{base}api/live/runs/{run_id}", params={"steps": 2}, timeout=30) as stream:
            lines_in = stream.iter_lines()  # the browser is still open: the server serves all the same
            assert _event(lines_in)["run"]["status"] == "waiting"
            watching = f"SELECT query FROM pg_stat_activity WHERE application_name = 'agentfsm-watch-{schema}'"
            for _ in range(200):
                if postgres_server.psql(watching).strip() == f"LISTEN agentfsm_runs_{schema}":
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the server does not listen for changed runs")
            asyncio.run(approve(url, run_id))  # this process is the other one: it records the steps
            change = _event(lines_in)
            while change["run"]["status"] != "succeeded":
                change = _event(lines_in)
            assert [step["state"] for step in change["steps"]][-1] == "published"
    finally:
        closed.touch()
        server.terminate()
        server.wait(timeout=20)
    assert server.returncode == 0
    assert postgres_server.password not in "".join(lines)


async def approve(url: str, run_id: str) -> None:
    async with Runs(url) as runs:
        assert (await runs.send(run_id, "approved")).status == "succeeded"


def _event(lines: Any) -> dict[str, Any]:
    for line in lines:
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


pytestmark = pytest.mark.skipif(os.name == "nt", reason="the UI's server tests use POSIX signals")


def test_breakpoints_are_set_and_removed_through_the_same_service_call_as_the_cli(db: Path) -> None:
    async def test(client: Client, runs: Runs) -> None:
        run_id = await waiting_run(runs)
        made = await client.post(f"/api/runs/{run_id}/breakpoints", json={"breakpoint": "published"}, headers=ACT)
        assert made.status_code == 200 and made.json() == {"kept": ["published"], "all": ["published"]}
        assert (await client.get(f"/api/runs/{run_id}")).json()["breakpoints"] == ["published"]
        listed = subprocess.run([sys.executable, "-m", "agentfsm", "break", run_id, "--json", "--store",
                                 f"sqlite:///{db}"], capture_output=True, text=True, timeout=60,
                                env=environment_without_proxies())
        assert json.loads(listed.stdout) == ["published"]
        wrong = await client.post(f"/api/runs/{run_id}/breakpoints", json={"breakpoint": "publish"}, headers=ACT)
        assert wrong.status_code == 400
        assert wrong.json()["error"] == ("break 'publish': machine 'approval' has no state 'publish' (did you mean "
                                         "'published'?); its states: draft, escalate, published, review, revise")
        empty = await client.post(f"/api/runs/{run_id}/breakpoints", json={}, headers=ACT)
        assert empty.status_code == 400 and empty.json()["error"].startswith("breakpoint: give a state")
        await client.post(f"/api/runs/{run_id}/send", json={"event": "approved"}, headers=ACT)
        stopped = await until(runs, run_id, "paused")  # before `published`, as the breakpoint says
        assert stopped.steps == 2
        gone = await client.post(f"/api/runs/{run_id}/breakpoints", json={"breakpoint": "published", "remove": True},
                                 headers=ACT)
        assert gone.json() == {"kept": [], "all": []}
        await client.post(f"/api/runs/{run_id}/resume", headers=ACT)
        assert (await until(runs, run_id, "succeeded")).steps == 3

    check(test, db)
