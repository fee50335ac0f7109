"""How fast `agentfsm stats` reads a long run, and `stats --machine` a machine's many runs.

Run it by hand, from the repository root:

    python benchmarks/bench_stats.py [--steps 10000] [--runs 10000] [--repeats 3] [--postgres]

What it measures
----------------
1. `stats RUN` of a recorded `--steps`-step run of benchmarks/loop.yaml (a `set` and a `choice` step per
   increment), in process (`run_stats` + `stats_json`) and through the CLI in a fresh process (the figure
   includes starting Python); beside it, `history RUN --json` of the same run through the CLI, which reads
   the same number of rows. Target: under 1 s.
2. `stats --machine NAME` over `--runs` stored runs of one machine (an LLM call each, a priced model), in
   process and through the CLI; beside it, `runs --machine NAME --limit N --json`, which lists the same
   runs. Target: under 2 s. SQLite always; PostgreSQL with `--postgres` (a server started for the run,
   tests/postgres.py).

Each figure is the median of `--repeats` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentfsm.service.runs import Runs  # noqa: E402
from agentfsm.service.stats import machine_stats, run_stats  # noqa: E402
from agentfsm.service.views import machine_stats_json, stats_json  # noqa: E402

LOOP = ROOT / "benchmarks" / "loop.yaml"
ASK = """\
agentfsm: 1
name: asker
llms:
  brain: {provider: scripted, model: gpt-4o-mini, replies: ["an answer of a few words"]}
initial: ask
states:
  ask: {type: llm, llm: brain, prompt: "a question", save: answer, next: done}
  done: {type: final, output: "{{ answer }}"}
"""


def median_seconds(action: Callable[[], Any], repeats: int) -> float:
    action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli(store: str, *args: str) -> None:
    completed = subprocess.run([sys.executable, "-m", "agentfsm", *args, "--store", store], capture_output=True,
                               text=True, cwd=ROOT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if completed.returncode != 0:
        raise SystemExit(f"agentfsm {' '.join(args)} failed: {completed.stderr}")


def long_run(store: str, steps: int) -> str:
    async def go() -> str:
        async with Runs(store) as runs:
            return (await runs.start(LOOP, {"limit": steps // 2})).run_id
    return asyncio.run(go())


def many_runs(store: str, count: int, folder: Path) -> None:
    machine = folder / "asker.yaml"
    machine.write_text(ASK, encoding="utf-8")

    async def go() -> None:
        async with Runs(store) as runs:
            from agentfsm.service.machines import load_machine

            compiled = load_machine(machine)
            for first in range(0, count, 200):  # started together: their steps commit in shared transactions
                await asyncio.gather(*(runs.start(compiled) for _ in range(min(200, count - first))))
    asyncio.run(go())


def in_process(store: str, work: Callable[[Runs], Any]) -> Callable[[], Any]:
    def action() -> Any:
        async def go() -> Any:
            async with Runs(store) as runs:
                return await work(runs)
        return asyncio.run(go())
    return action


def measure(store: str, label: str, steps: int, count: int, repeats: int, folder: Path) -> None:
    print(f"\n== {label} ==")
    started = time.perf_counter()
    run_id = long_run(store, steps)
    print(f"made a {steps}-step run in {time.perf_counter() - started:.1f} s")
    floor = median_seconds(lambda: cli(store, "runs", "--limit", "1", "--json"), repeats)
    print(f"the CLI's floor (runs --limit 1: starting Python, reading one row): {floor:.3f} s")
    own = median_seconds(in_process(store, lambda runs: stats_json_of(runs, run_id)), repeats)
    via_cli = median_seconds(lambda: cli(store, "stats", run_id, "--json"), repeats)
    history = median_seconds(lambda: cli(store, "history", run_id, "--json"), repeats)
    print(f"stats RUN ({steps} steps): in process {own:.3f} s; CLI {via_cli:.3f} s "
          f"(history --json: {history:.3f} s, ratio {via_cli / history:.2f})  target < 1 s")
    started = time.perf_counter()
    many_runs(store, count, folder)
    print(f"made {count} runs in {time.perf_counter() - started:.1f} s")
    own = median_seconds(in_process(store, lambda runs: machine_json_of(runs)), repeats)
    via_cli = median_seconds(lambda: cli(store, "stats", "--machine", "asker", "--json"), repeats)
    listing = median_seconds(lambda: cli(store, "runs", "--machine", "asker", "--limit", str(count), "--json"),
                             repeats)
    shown = in_process(store, machine_json_of)()
    print(f"stats --machine ({shown['runs']} runs, cost ${shown['cost']:.6f}): in process {own:.3f} s; "
          f"CLI {via_cli:.3f} s (runs --json of them: {listing:.3f} s, ratio {via_cli / listing:.2f})  "
          "target < 2 s")


async def stats_json_of(runs: Runs, run_id: str) -> dict[str, Any]:
    return stats_json(await run_stats(runs.store, run_id))


async def machine_json_of(runs: Runs) -> dict[str, Any]:
    return machine_stats_json(await machine_stats(runs.store, "asker"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--only-postgres", action="store_true", help="skip SQLite")
    options = parser.parse_args()
    print(f"load average: {os.getloadavg()}; cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as folder:
        if not options.only_postgres:
            measure(f"sqlite:///{Path(folder) / 'runs.db'}", "SQLite", options.steps, options.runs, options.repeats,
                    Path(folder))
        if options.postgres or options.only_postgres:
            from tests.postgres import Cluster, find_bin_dir

            bin_dir = find_bin_dir()
            if bin_dir is None:
                sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
            cluster = Cluster(bin_dir, fsync=True).start()
            try:
                measure(cluster.fresh_url(), "PostgreSQL", options.steps, options.runs, options.repeats, Path(folder))
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
