"""How fast a long run is read back from the command line: `trace` (--json, --jsonl, the timeline), `show`,
`branches` and `inspect` of a 10,000-step run.

Run it by hand, from the repository root:

    python benchmarks/bench_trace_read.py [--steps 10000] [--repeats 5]

The counting loop of benchmarks/loop.yaml runs `--steps` steps (a `set` and a `choice` step per increment,
30,000 trace entries for 10,000 steps) into a fresh SQLite store, once. Then each command runs `--repeats`
times in a fresh process, after one warm-up (the figure includes starting Python and importing agentfsm, with
its bytecode cached as in an install; `agentfsm --version` is that floor) and the median wall time and CPU time (user + system, less disturbed by other processes on a
busy machine) are printed. `Runs.trace` in this process is the reading alone. Target: `trace --json` under 1 s.
The machine's load average is printed first: on a shared machine, wall times are worth reading with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentfsm.service.runs import Runs  # noqa: E402

LOOP = ROOT / "benchmarks" / "loop.yaml"


def timed_cli(args: list[str], env: dict[str, str], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `agentfsm ARGS` in a fresh process, stdout thrown away."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "agentfsm", *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"agentfsm {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    return statistics.median(walls), statistics.median(cpus)


async def seeded(url: str, steps: int) -> tuple[str, int, float]:
    """A `steps`-step run with a rollback branch (so `branches` lists two): its id, entries, and reading time."""
    async with Runs(url) as runs:
        result = await runs.start(LOOP, {"limit": steps // 2})
        assert result.status == "succeeded", result.error
        await runs.rollback(result.run_id, steps // 2)
        started = time.perf_counter()
        entries = await runs.trace(result.run_id)
        return result.run_id, len(entries), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    print(f"load average: {os.getloadavg()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'runs.db'}"
        run_id, count, reading = asyncio.run(seeded(url, options.steps))
        print(f"Runs.trace of a {options.steps}-step run in this process: {count} entries in {reading:.3f}s")
        # as a user's install runs: with its modules' bytecode cached (a test environment may turn that off)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["AGENTFSM_STORE"] = url
        timed_cli(["trace", run_id, "--json"], env, 1)  # warm-up: caches the bytecode of what it imports
        commands = {
            "agentfsm --version (the floor)": ["--version"],
            "trace RUN --json": ["trace", run_id, "--json"],
            "trace RUN --jsonl": ["trace", run_id, "--jsonl"],
            "trace RUN (timeline)": ["trace", run_id],
            "show RUN 5000 --json": ["show", run_id, str(options.steps // 2), "--json"],
            "branches RUN --json": ["branches", run_id, "--json"],
            "inspect RUN": ["inspect", run_id],
        }
        floor = None
        for name, args in commands.items():
            try:
                wall, cpu = timed_cli(args, env, options.repeats)
            except SystemExit as exc:
                print(f"{name}: not available ({exc})")
                continue
            floor = wall if floor is None else floor
            print(f"{name:<32} wall {wall:.3f}s  cpu {cpu:.3f}s  (over the floor: {wall - floor:+.3f}s)"
                  + ("  target 1 s" if "--json" in args and args[0] == "trace" else ""))


if __name__ == "__main__":
    main()
