"""The web UI's runs table shows what each run's LLM calls cost: the API's `cost`/`unpriced` (priced as
`agentfsm stats` prices them), and the column in a real headless Chromium."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfsm import Runs
from agentfsm.web.app import create_app
from tests.helpers import environment_without_proxies
from tests.test_stats import BUSY
from tests.test_web_browser import browser, page  # noqa: F401 - fixtures: one Chromium for this module too

ROOT = Path(__file__).resolve().parent.parent
PRICE = (0.15, 0.6)  # gpt-4o-mini, USD per million tokens in and out


def make_runs(store: str, folder: Path) -> tuple[str, str, float]:
    """A priced run and an unpriced one (a scripted model without a price): their ids and the priced one's cost."""
    priced = folder / "busy.yaml"
    priced.write_text(BUSY, encoding="utf-8")

    async def go() -> tuple[str, str, float]:
        async with Runs(store) as runs:
            first = await runs.start(priced)
            second = await runs.start(ROOT / "machines/react_agent.yaml", {"task": "What is 17 * 23?"})
        usage = first.usage["brain"]
        return (first.run_id, second.run_id,
                (usage["prompt_tokens"] * PRICE[0] + usage["completion_tokens"] * PRICE[1]) / 1e6)

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API may keep an event loop running in this one
        return thread.submit(asyncio.run, go()).result()


def test_the_runs_page_api_has_each_run_s_cost(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    priced, unpriced, cost = make_runs(store, tmp_path)

    async def go() -> dict[str, Any]:
        async with Runs(store) as runs:
            app = create_app(runs, root=tmp_path, token=None, loopback_only=True)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8321") as client:
                listed = (await client.get("/api/runs")).json()
                one = (await client.get(f"/api/runs/{priced}")).json()
            await app.app.state.ui.driver.close()
            return {"page": one, **{run["run_id"]: run for run in listed["runs"]}}
    runs = asyncio.run(go())
    assert runs["page"]["cost"]["cost"] == pytest.approx(cost)  # a run's page: its path's cost, per binding
    assert runs["page"]["cost"]["bindings"]["brain"]["model"] == "gpt-4o-mini"
    assert runs[priced]["cost"] == pytest.approx(cost) and runs[priced]["unpriced"] == []
    assert runs[unpriced]["cost"] is None and runs[unpriced]["unpriced"] == ["brain"]
    assert runs[unpriced]["tokens"] > 0  # tokens shown without a cost, never a guessed one


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, float]]:
    root = tmp_path_factory.mktemp("ui-costs")
    store = f"sqlite:///{root / 'runs.db'}"
    priced, unpriced, cost = make_runs(store, root)
    server = subprocess.Popen([sys.executable, "-m", "agentfsm", "ui", "--port", "0", "--store", store],
                              stderr=subprocess.PIPE, text=True, env=environment_without_proxies(), cwd=root)
    assert server.stderr is not None
    lines = [server.stderr.readline(), server.stderr.readline()]
    found = re.search(r"open (http://127\.0\.0\.1:\d+/)", lines[1])
    assert found, lines
    try:
        yield found.group(1), priced, unpriced, cost
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_runs_table_shows_a_cost_column(page: Any, ui: tuple[str, str, str, float]) -> None:  # noqa: F811
    url, priced, unpriced, cost = ui
    page.goto(f"{url}#/runs")
    page.wait_for_selector(f'#runs tr[data-run="{priced}"]')
    headers = page.locator("#runs thead th").all_inner_texts()
    assert headers[-2:] == ["tokens", "cost"]
    shown = page.locator(f'#runs tr[data-run="{priced}"] td').last.inner_text()
    assert shown == "$" + f"{float(f'{cost:.2g}'):.12f}".rstrip("0")  # two significant digits of a small amount
    unknown = page.locator(f'#runs tr[data-run="{unpriced}"] td').last
    assert unknown.inner_text() == "?" and unknown.get_attribute("title") == "no price for: brain"
    page.goto(f"{url}#/runs/{priced}")
    page.wait_for_selector("#run-status")
    assert page.locator("h1").inner_text().endswith(f" tokens · {shown}")  # the run's page says it too
    page.goto(f"{url}#/runs/{unpriced}")
    page.wait_for_selector("#run-status")
    assert page.locator("h1").inner_text().endswith(" tokens · no price")


def test_a_page_read_again_prices_only_the_runs_that_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfsm.service import browse

    priced_runs: list[str] = []
    usage = browse.run_usage

    async def counted(store: Any, run: Any) -> Any:
        priced_runs.append(run.id)
        return await usage(store, run)

    monkeypatch.setattr(browse, "run_usage", counted)
    machine = Path(__file__).resolve().parent.parent / "machines/approval.yaml"

    async def go() -> tuple[list[str], list[str], list[str], str]:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            await runs.start(Path(__file__).resolve().parent.parent / "machines/hello.yaml")
            waiting = (await runs.start(machine, {"topic": "costs"})).run_id
            priced: browse.PricedRuns = {}
            await browse.runs_page(runs, priced=priced)
            first = list(priced_runs)
            priced_runs.clear()
            await browse.runs_page(runs, priced=priced)  # nothing moved: nothing priced
            unmoved = list(priced_runs)
            await runs.send(waiting, "approved")
            await browse.runs_page(runs, priced=priced)
            return first, unmoved, priced_runs, waiting

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API may keep an event loop running in this one
        first, unmoved, moved, waiting = thread.submit(asyncio.run, go()).result()
    assert len(first) == 2 and unmoved == []
    assert moved == [waiting]  # the run that took its event, not the one that ended before
