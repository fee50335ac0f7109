"""`agentfsm ui` in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download).

One server (an `agentfsm ui` subprocess on a free port) and one browser serve the whole module; runs are
made in this process in the same SQLite store, as any other process would make them.
Set AGENTFSM_UPDATE_SCREENSHOTS=1 to write the screenshots into docs/images (docs/ui.md shows them).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentfsm import Runs
from tests.helpers import environment_without_proxies
from tests.services import require_binary

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
PWNED = "window.__pwned"
XSS = """\
agentfsm: 1
name: xss
description: 'Every name and value here is markup that must show as text: <b>bold</b>'
context: {note: "<script>window.__pwned = 'context'</script>"}
llms:
  w:
    provider: scripted
    replies: ["<img src=x onerror=\\"window.__pwned = 'llm'\\"><script>window.__pwned = 'llm'</script>"]
initial: '<img src=x onerror="window.__pwned = ''state''">'
states:
  '<img src=x onerror="window.__pwned = ''state''">':
    type: llm
    llm: w
    prompt: hello
    save: reply
    next: '<script>window.__pwned = "wait"</script>'
  '<script>window.__pwned = "wait"</script>':
    type: wait
    event: go
    save: payload
    transitions: [{event: go, to: done}]
  done: {type: final, output: "{{ payload }}"}
"""


@dataclass
class Served:
    url: str
    store: str
    root: Path

    def start(self, machine: str, inputs: dict[str, Any] | None = None) -> str:
        async def go() -> str:
            async with Runs(self.store) as runs:
                return (await runs.start(self.root / machine, inputs or {})).run_id

        with ThreadPoolExecutor(1) as thread:  # Playwright's sync API keeps an event loop running in this one
            return thread.submit(asyncio.run, go()).result()

    def agentfsm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agentfsm", *args, "--store", self.store], capture_output=True,
                              text=True, env=environment_without_proxies(), timeout=60, cwd=self.root)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("ui")
    (root / "machines").mkdir()
    (root / "machines" / "approval.yaml").write_text((ROOT / "machines/approval.yaml").read_text())
    (root / "xss.yaml").write_text(XSS)
    (root / "loop.yaml").write_text((ROOT / "benchmarks/loop.yaml").read_text())
    (root / "nested.yaml").write_text((ROOT / "tests/machines/nested_twice.yaml").read_text())
    store = f"sqlite:///{root / 'runs.db'}"
    Served("", store, root).start("machines/approval.yaml")  # the store exists before the server opens it
    server = subprocess.Popen([sys.executable, "-m", "agentfsm", "ui", "--port", "0", "--store", store],
                              stderr=subprocess.PIPE, text=True, env=environment_without_proxies(), cwd=root)
    assert server.stderr is not None
    lines = [server.stderr.readline(), server.stderr.readline()]
    found = re.search(r"open (http://127\.0\.0\.1:\d+/)", lines[1])
    assert found, lines
    try:
        yield Served(found.group(1), store, root)
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_binary("chromium", package="chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    # the XSS test turns the page's Content-Security-Policy off: what it checks is that no value is ever
    # inserted as markup, not that the policy would stop a script that got in
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  bypass_csp=request.node.get_closest_marker("without_csp") is not None)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def open_run(page: Any, served: Served, run_id: str) -> None:
    page.goto(f"{served.url}#/runs/{run_id}")
    page.wait_for_selector("#diagram svg g.node.current")


def status_of(page: Any) -> str:
    return page.get_attribute("#run-status .badge", "data-status")  # type: ignore[no-any-return]


def test_a_waiting_run_is_highlighted_and_approved_from_the_form_live(page: Any, served: Served) -> None:
    run_id = served.start("machines/approval.yaml", {"topic": "the browser"})
    open_run(page, served, run_id)
    current = page.locator("#diagram svg g.node.current")
    assert current.get_attribute("data-state") == "review" and current.count() == 1
    assert page.locator("#diagram svg g.node.visited").get_attribute("data-state") == "draft"
    assert sorted(page.eval_on_selector_all("#diagram svg g.node.unvisited", "ns => ns.map(n => n.dataset.state)")) \
        == ["escalate", "published", "revise"]
    assert status_of(page) == "waiting"
    page.select_option("#send-event", "approved")
    page.fill("#send-data", "{not json")
    page.click("#send")
    assert page.text_content("#send-problem").startswith("data is not JSON")
    page.fill("#send-data", '{"by": "ada"}')
    page.click("#send")
    page.wait_for_selector("#run-status [data-status=succeeded]", timeout=2000)  # no reload: the live stream
    assert page.locator("#diagram svg g.node.current").get_attribute("data-state") == "published"
    assert page.locator("#timeline tr[data-step]").count() == 3


def test_a_run_advanced_by_another_process_updates_the_open_page(page: Any, served: Served) -> None:
    run_id = served.start("machines/approval.yaml")
    open_run(page, served, run_id)
    edges = "#diagram svg .edgeLabel"
    assert "done (1x)" in page.locator(edges).all_text_contents()  # the arrow the run took, with its count
    assert served.agentfsm("send", run_id, "rejected", "--data", '{"comment": "shorter"}', "--no-resume").returncode == 0
    resumed = served.agentfsm("resume", run_id)
    assert resumed.returncode == 3, resumed.stderr  # waiting again, after a revision
    page.wait_for_selector('#timeline tr[data-step="3"]', timeout=2000)
    # the counts are drawn again as the run moves
    page.locator(edges).filter(has_text=re.compile(r"^rejected \(1x\)$")).first.wait_for(timeout=5000)
    assert page.locator("#diagram svg g.node.current").get_attribute("data-state") == "review"
    assert page.get_attribute('#diagram svg g.node[data-state="revise"]', "data-visits") == "1"
    page.click('#timeline tr[data-step="2"]')
    page.wait_for_selector('#step[data-step="2"] #context tr.diff-changed[data-key="revisions"]')
    assert page.text_content('#context tr.diff-added[data-key="review"]').count("shorter") == 1


def test_rolling_back_from_the_timeline_shows_the_new_branch(page: Any, served: Served) -> None:
    run_id = served.start("machines/approval.yaml")
    served.agentfsm("send", run_id, "approved")
    open_run(page, served, run_id)
    assert status_of(page) == "succeeded"
    page.click('#timeline tr[data-step="2"]')
    page.fill("#rollback-branch", "try-again")
    page.click("#rollback")
    page.wait_for_selector("#run-status [data-status=paused]", timeout=2000)
    assert page.input_value("#branch") == "try-again"
    assert page.locator("#branches a").all_text_contents() == ["main", "try-again"]
    assert page.locator("#diagram svg g.node.current").get_attribute("data-state") == "review"
    assert page.locator("#timeline tr[data-step]").count() == 1


def test_child_runs_fold_under_their_parent_at_every_level(page: Any, served: Served) -> None:
    run_id = served.start("nested.yaml")
    page.goto(f"{served.url}#/runs")
    parent = page.locator(f'#runs tr[data-run="{run_id}"]')
    parent.wait_for()
    rows = page.locator("#runs tr.child")
    outer, inner = rows.filter(has_text="outer "), rows.filter(has_text="inner ")
    assert (outer.is_visible(), inner.is_visible()) == (False, False)
    parent.locator("button.fold").click()
    assert (outer.is_visible(), inner.is_visible()) == (True, False)
    assert (outer.get_attribute("data-depth"), inner.get_attribute("data-depth")) == ("1", "2")
    outer.locator("button.fold").click()
    assert inner.is_visible()
    parent.locator("button.fold").click()  # closing a run hides its children's children too
    assert (outer.is_visible(), inner.is_visible()) == (False, False)
    parent.locator("button.fold").click()  # and opening it again shows them as they were
    assert (outer.is_visible(), inner.is_visible()) == (True, True)
    inner.locator("a").click()
    page.wait_for_selector("#diagram svg g.node.current")
    assert page.text_content("#run-id") == page.url.rpartition("/")[2]


def test_a_long_run_is_read_a_page_of_steps_at_a_time(page: Any, served: Served) -> None:
    run_id = served.start("loop.yaml", {"limit": 150})  # 301 steps
    open_run(page, served, run_id)
    assert page.eval_on_selector_all("#timeline tr[data-step]", "rows => rows.map(r => +r.dataset.step)") \
        == list(range(202, 302))
    page.fill("#goto-step", "41")  # an `inc` step: it changes n
    page.press("#goto-step", "Enter")
    page.wait_for_selector('#step[data-step="41"] #context tr.diff-changed[data-key="n"]')
    assert page.locator("#timeline tr[data-step]").first.get_attribute("data-step") == "41"


@pytest.mark.without_csp
def test_markup_in_names_values_replies_and_payloads_is_shown_as_text(page: Any, served: Served) -> None:
    page.add_init_script("window.__pwned = undefined")
    run_id = served.start("xss.yaml")
    open_run(page, served, run_id)
    page.fill("#send-data", '{"x": "<img src=x onerror=window.__pwned=\'event\'>"}')
    page.click("#send")
    page.wait_for_selector("#run-status [data-status=succeeded]", timeout=5000)
    labels = page.locator("#diagram svg g.node").all_text_contents()
    assert any('<img src=x onerror="window.__pwned = \'state\'">' in label for label in labels), labels
    for step in ("1", "2"):
        page.click(f'#timeline tr[data-step="{step}"]')
        page.wait_for_selector(f'#step[data-step="{step}"] #context')
    assert "<img src=x onerror=window.__pwned='event'>" in page.text_content("#step")
    page.click('#timeline tr[data-step="1"]')
    page.wait_for_selector('#step[data-step="1"] #context tr.diff-added[data-key="reply"]')
    assert "<script>window.__pwned = 'llm'</script>" in page.text_content('#context tr[data-key="reply"]')
    assert "<script>window.__pwned = 'context'</script>" in page.text_content('#context tr[data-key="note"]')
    assert "<script>window.__pwned = 'llm'</script>" in page.text_content("#step .exchange .reply")
    page.goto(f"{served.url}#/runs")
    page.wait_for_selector("#runs")
    page.goto(f"{served.url}#/machines/xss.yaml")
    page.wait_for_selector(".diagram svg")
    assert "<b>bold</b>" in page.text_content("main")
    assert page.locator("main img, main script:not([src])").count() == 0
    assert page.evaluate(PWNED) is None


def test_screenshots_of_the_runs_page_and_a_run_page(page: Any, served: Served, tmp_path: Path) -> None:
    where = ROOT / "docs/images" if os.environ.get("AGENTFSM_UPDATE_SCREENSHOTS") else tmp_path
    run_id = served.start("machines/approval.yaml", {"topic": "the web UI"})
    served.agentfsm("send", run_id, "rejected", "--data", '{"comment": "say it works offline"}')
    page.goto(f"{served.url}#/runs")
    page.wait_for_selector("#live.on")
    newest = served.start("machines/approval.yaml", {"topic": "screenshots"})  # appears without a reload
    page.wait_for_selector(f'#runs tr[data-run="{newest}"]', timeout=3000)
    page.screenshot(path=str(where / "ui-runs.png"))
    open_run(page, served, run_id)
    page.click('#timeline tr[data-step="3"]')
    page.wait_for_selector('#step[data-step="3"] #context')
    page.screenshot(path=str(where / "ui-run.png"))
    for name in ("ui-runs.png", "ui-run.png"):
        assert (where / name).read_bytes().startswith(b"\x89PNG")


def test_a_breakpoint_is_added_and_removed_from_the_run_page(page: Any, served: Served) -> None:
    run_id = served.start("machines/approval.yaml")
    open_run(page, served, run_id)
    page.fill("#breakpoint-input", "publish")
    page.click("#breakpoint-add")
    page.wait_for_selector("#breakpoint-problem:has-text(\"has no state 'publish'\")")
    page.fill("#breakpoint-input", "published")
    page.click("#breakpoint-add")
    page.wait_for_selector('#breakpoints li[data-breakpoint="published"]')
    assert page.text_content("#breakpoint-problem") == ""
    assert served.agentfsm("break", run_id, "--json").stdout.strip() == '["published"]'  # kept in the store
    page.click("#breakpoint-remove-0")
    page.wait_for_selector("#breakpoints li.muted")
    assert served.agentfsm("break", run_id, "--json").stdout.strip() == "[]"
