"""`agentfsm ui` over a big store, measured in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

    python benchmarks/bench_ui.py [--runs 10000] [--steps 5000] [--repeats 5]

Figures (milliseconds, from the browser's navigation start, best and median of --repeats loads, the first load
reported apart as cold):
- runs page: a store of --runs runs; the page is interactive when its table shows the newest page of runs
  (50) and the live stream is open. Yardstick: the same page over a store of 10 runs.
- run page: a run of loop.yaml with 2 x --steps + 1 steps (10,001 by default); interactive when its status and
  actions and the newest 100 steps are shown and the live stream is open; then again until the diagram (Mermaid,
  3.5 MB of JavaScript fetched in parallel) is drawn with the current state marked. Yardstick: a run of 21 steps.
- live: a step recorded by another writer (the approval run's `approved`, sent here) until the open page
  shows the run `succeeded`.
- server work per live update: `browse.run_change` (what the stream calls every 0.25 s) on the long run and on
  the short one, with one new step and with none: it reads one row plus the new steps, whatever the length.
No peer: Burr's UI and LangGraph Studio are not local pages over a store of ours; the yardsticks are our own
small stores in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentfsm import Runs  # noqa: E402
from agentfsm.service import browse  # noqa: E402
from agentfsm.store.base import RunRow, StepRow  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
STATUSES = ("succeeded", "failed", "waiting", "paused", "cancelled")


async def fill(store: str, count: int, steps: int) -> dict[str, str]:
    """`count` runs made straight in the store (rows as a recorded run has them), a long loop run, a short one,
    and an approval run waiting."""
    async with Runs(store) as runs:
        base = time.time() - count
        async def one(index: int) -> None:
            run = RunRow(f"bench{index:07d}", "bulk", None, None, STATUSES[index % len(STATUSES)],
                         created_at=base + index, updated_at=base + index + 1, steps=3)
            await runs.store.create_run(run, None, StepRow("main", 0, None, next_state="start"), [])
        for first in range(0, count, 1000):
            await asyncio.gather(*(one(index) for index in range(first, min(count, first + 1000))))
        long = await runs.start(ROOT / "benchmarks/loop.yaml", {"limit": steps})
        short = await runs.start(ROOT / "benchmarks/loop.yaml", {"limit": 10})
        waiting = await runs.start(ROOT / "machines/approval.yaml", {})
        return {"long": long.run_id, "short": short.run_id, "waiting": waiting.run_id}


def serve(store: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, "-m", "agentfsm", "ui", "--port", "0", "--store", store],
                              stderr=subprocess.PIPE, text=True, cwd=cwd)
    assert server.stderr is not None
    lines = [server.stderr.readline(), server.stderr.readline()]
    found = re.search(r"open (http://\S+/)", lines[1])
    if not found:
        raise SystemExit(f"the UI did not start: {lines}")
    return server, found.group(1)


def timed(browser: Any, url: str, ready: list[str], repeats: int) -> list[float]:
    """Milliseconds from navigation start until every selector in `ready` is there, for each load."""
    figures = []
    for _ in range(repeats):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(url)
        for selector in ready:
            page.wait_for_selector(selector, timeout=30000)
        figures.append(page.evaluate("performance.now()"))
        context.close()
    return figures


def show(label: str, figures: list[float]) -> None:
    warm = figures[1:] or figures
    print(f"{label:<44} cold {figures[0]:7.0f} ms   best {min(warm):7.0f} ms   median {statistics.median(warm):7.0f} ms")


async def change_cost(store: str, run_id: str, repeats: int = 200) -> tuple[float, float]:
    """Microseconds per `run_change` with nothing new, and with one new step."""
    async with Runs(store) as runs:
        run = await runs.get(run_id)
        started = time.perf_counter()
        for _ in range(repeats):
            await browse.run_change(runs, run_id, run)
        quiet = (time.perf_counter() - started) / repeats * 1e6
        behind = dataclasses.replace(run, steps=run.steps - 1, updated_at=-1.0)
        started = time.perf_counter()
        for _ in range(repeats):
            change = await browse.run_change(runs, run_id, behind)
            assert change is not None and len(change.steps) == 1
        moved = (time.perf_counter() - started) / repeats * 1e6
        return quiet, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=5000, help="loop increments: 2 steps each")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        big, small = f"sqlite:///{folder}/big.db", f"sqlite:///{folder}/small.db"
        made = time.perf_counter()
        ids = asyncio.run(fill(big, options.runs, options.steps))
        small_ids = asyncio.run(fill(small, 10, 10))
        print(f"stores filled in {time.perf_counter() - made:.1f} s: {options.runs} runs + a run of "
              f"{2 * options.steps + 1} steps; yardstick store of 10 runs")
        print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        servers = [serve(big, Path(folder)), serve(small, Path(folder))]
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                (_, big_url), (_, small_url) = servers
                runs_ready = ["#runs tr[data-run]", "#live.on"]
                run_ready = ["#timeline tr[data-step]", "#run-status .badge", "#live.on"]
                drawn = [*run_ready, "#diagram svg g.node.current"]
                show(f"runs page, {options.runs} runs", timed(browser, f"{big_url}#/runs", runs_ready, options.repeats))
                show("runs page, 10 runs (yardstick)", timed(browser, f"{small_url}#/runs", runs_ready, options.repeats))
                show(f"run page, {2 * options.steps + 1} steps",
                     timed(browser, f"{big_url}#/runs/{ids['long']}", run_ready, options.repeats))
                show("run page, 21 steps (yardstick)",
                     timed(browser, f"{small_url}#/runs/{small_ids['short']}", run_ready, options.repeats))
                show(f"run page, {2 * options.steps + 1} steps, diagram drawn",
                     timed(browser, f"{big_url}#/runs/{ids['long']}", drawn, options.repeats))
                show("run page, 21 steps, diagram drawn (yardstick)",
                     timed(browser, f"{small_url}#/runs/{small_ids['short']}", drawn, options.repeats))
                page = browser.new_page()
                page.goto(f"{big_url}#/runs/{ids['waiting']}")
                page.wait_for_selector("#live.on")
                time.sleep(0.5)
                sent = time.perf_counter()
                with ThreadPoolExecutor(1) as thread:  # Playwright's sync API runs a loop in this thread
                    thread.submit(asyncio.run, _send(big, ids["waiting"])).result()
                recorded = time.perf_counter()
                page.wait_for_selector("#run-status [data-status=succeeded]", timeout=10000)
                shown = time.perf_counter()
                print(f"live: a step recorded by another writer shows {1000 * (shown - recorded):.0f} ms after it "
                      f"was committed (the send itself took {1000 * (recorded - sent):.0f} ms)")
                browser.close()
        finally:
            for server, _ in servers:
                server.terminate()
                server.wait(timeout=20)
        for label, store, run_id in (("long run", big, ids["long"]), ("short run", small, small_ids["short"])):
            quiet, moved = asyncio.run(change_cost(store, run_id))
            print(f"server work per live poll, {label:<10}  nothing new {quiet:6.0f} us   one new step {moved:6.0f} us")


async def _send(store: str, run_id: str) -> None:
    async with Runs(store) as runs:
        await runs.send(run_id, "approved", {"by": "bench"})


if __name__ == "__main__":
    main()
