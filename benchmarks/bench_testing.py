"""Testing agents, timed: `agentfsm test` over many cases of the shipped examples, and `replay` of a long run.

Run it by hand, from the repository root (no peers needed):

    python benchmarks/bench_testing.py [--cases 200] [--steps 1000] [--repeats 5]

1. `agentfsm test`: the shipped `machines/*.test.yaml` cases, repeated until there are `--cases` of them (each
   file copied beside the machines with its cases renamed), run by the `agentfsm` command as a user runs it
   (a fresh process, wall clock from start to exit, median of `--repeats`). Target (issue 14): 200 cases under
   10 s on 2 cores. For scale, the same command on one test file of one case (the process's fixed cost).
2. `agentfsm replay`: a run of `--steps` steps (an `llm` state, a `tool` state and a `choice` per round, so one
   LLM and one tool call every three steps) recorded in a fresh SQLite store, then replayed: reading the
   recording (history and trace) and running the machine again with every call served from it, through
   `agentfsm.service.replays.replay` (median of `--repeats`). Target (issue 14): 1,000 steps under 2 s. For
   scale: the recorded run itself, and the same machine run in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOOP = """\
agentfsm: 1
name: replay-bench
inputs: {limit: {type: integer, default: 333}}
context: {n: 0}
max_steps: 1000000
llms:
  brain: {provider: scripted, replies: [{reply: "add one"}]}
tools:
  calc: {builtin: calculator}
initial: think
states:
  think: {type: llm, llm: brain, prompt: "Round {{ n }}: what next?", save: thought, next: act}
  act: {type: tool, tool: calc, args: {expression: "{{ n }} + 1"}, save: n, next: check}
  check:
    type: choice
    transitions:
      - {when: "n < limit", to: think}
      - {to: done}
  done: {type: final, output: "{{ n }}"}
"""


def median_time(command: list[str], cwd: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return statistics.median(times)


def bench_test(cases: int, repeats: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-test-"))
    shutil.copytree(ROOT / "machines", folder / "machines", ignore=shutil.ignore_patterns("*.test.yaml"))
    sources = sorted((ROOT / "machines").glob("*.test.yaml"))
    per_round = sum(len(re.findall(r"^  - name: ", p.read_text(), re.MULTILINE)) for p in sources)
    rounds = -(-cases // per_round)
    for round_ in range(rounds):
        for source in sources:
            text = source.read_text().replace("  - name: ", f"  - name: r{round_} ")
            (folder / "machines" / f"{source.stem.removesuffix('.test')}-{round_}.test.yaml").write_text(text)
    total = rounds * per_round
    agentfsm = [sys.executable, "-m", "agentfsm"]
    one = folder / "one"
    one.mkdir()
    shutil.copy(ROOT / "machines" / "hello.yaml", one / "hello.yaml")
    (one / "hello.test.yaml").write_text("agentfsm_test: 1\nmachine: hello.yaml\ncases: [{name: a}]\n")
    median_time([*agentfsm, "test", "machines"], folder, 1)  # untimed: compiles .pyc files
    whole = median_time([*agentfsm, "test", "machines"], folder, repeats)
    fixed = median_time([*agentfsm, "test", "."], one, repeats)
    print(f"agentfsm test, {total} cases of the shipped examples ({len(sources) * rounds} files): "
          f"{whole:.2f} s (target < 10 s); one case: {fixed:.2f} s; "
          f"per case beyond the start: {(whole - fixed) / total * 1000:.1f} ms")
    shutil.rmtree(folder, ignore_errors=True)


async def bench_replay(steps: int, repeats: int) -> None:
    from agentfsm import Runs
    from agentfsm.service.machines import load_machine
    from agentfsm.service.replays import replay

    folder = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    (folder / "loop.yaml").write_text(LOOP)
    rounds = max(1, (steps - 1) // 3)
    url = f"sqlite:///{folder / 'runs.db'}"
    machine = load_machine(folder / "loop.yaml")
    started = time.perf_counter()
    async with Runs(url) as runs:
        result = await runs.start(machine, {"limit": rounds})
    recorded = time.perf_counter() - started
    started = time.perf_counter()
    await machine.run({"limit": rounds})
    in_memory = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        replayed = await replay(url, result.run_id)
        times.append(time.perf_counter() - started)
        assert replayed.identical, replayed.divergence
    print(f"agentfsm replay of a {result.steps}-step recorded run ({replayed.served['llm']} LLM and "
          f"{replayed.served['tool']} tool calls served): {statistics.median(times):.3f} s (target < 2 s); "
          f"recording it took {recorded:.3f} s; the same run in memory {in_memory:.3f} s")
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    bench_test(options.cases, options.repeats)
    asyncio.run(bench_replay(options.steps, options.repeats))


if __name__ == "__main__":
    main()
