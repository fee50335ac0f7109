"""What the always-on trace costs, and how fast a long run's trace and stats are read back.

Run it by hand, from the repository root:

    python benchmarks/bench_trace.py [--steps 10000] [--repeats 5] [--prompt-kb 50]

What it measures
----------------
1. The counting loop of benchmarks/loop.yaml, `--steps` steps (a `set` and a `choice` step per
   increment), each committed to a fresh SQLite store (synchronous=NORMAL) before the next:
   recorded with the trace (the default) and without it (`Runs(trace=False)`), alternating,
   median of `--repeats` runs after one warm-up each. Budget: tracing costs at most 15%.
2. An `llm` step whose prompt holds a `--prompt-kb` document, as a recorded run of 200 such steps,
   with and without the trace, timed per round (the `llm` step and the `set` step that counts it);
   once with the offline scripted model (no network: the floor of an LLM step) and once with the OpenAI provider against a real HTTP server on 127.0.0.1
   (tests/llm_server.py, answering at once). Budget: at most 20%. The round number leads the
   prompt, so every prompt is a new text: the trace keeps the first whole and each later one as
   what changed (a few bytes). A third, worst case changes the prompt throughout at every round
   (`replace` puts the round number in every word), so nothing is shared and all of it is stored
   every time: what tracing costs when a step's 50 KB are new.
3. Reading back a `--steps` run: `Runs.trace` (every entry) and `trace --json` and `stats --json`
   through the CLI, in a fresh process each (the figure includes starting Python). Target: under 1 s.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentfsm.service.runs import Runs  # noqa: E402

LOOP = ROOT / "benchmarks" / "loop.yaml"

PROMPT_YAML = """\
agentfsm: 1
name: long_prompt
inputs:
  rounds: {type: integer}
  document: {type: string}
context: {n: 0}
max_steps: 100000
llms:
  brain: BRAIN
initial: ask
states:
  ask:
    type: llm
    llm: brain
    prompt: PROMPT
    save: answer
    next: count
  count:
    type: set
    set: {n: "{{ n + 1 }}"}
    transitions:
      - {when: "n < rounds", to: ask}
      - {to: done}
  done:
    type: final
"""


SHARED = '"Round {{ n }}: summarise {{ document }}"'
NEW = '"Round {{ n }}: summarise {{ document | replace(\'lorem\', \'lorem\' ~ n) }}"'


async def timed_run(folder: Path, machine: Path, inputs: dict[str, object], trace: bool
                    ) -> tuple[float, float, str]:
    """Wall-clock and CPU seconds (this process's) of one recorded run, and its id."""
    async with Runs(f"sqlite:///{folder / 'runs.db'}", trace=trace) as runs:
        started, cpu = time.perf_counter(), time.process_time()
        result = await runs.start(machine, inputs)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert result.status == "succeeded", result.error
        return took, cpu, result.run_id


Timing = tuple[float, float, float, float]
"""Median wall-clock and CPU seconds, then the least of each (the run the machine disturbed least)."""


def compare(machine: Path, inputs: dict[str, object], repeats: int) -> tuple[Timing, Timing]:
    """A recorded run without and with the trace, runs alternating, each on a fresh store. CPU time is reported
    beside wall-clock time, and the least time beside the median: on a shared, loaded machine they are the
    steadier figures."""
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for index in range(repeats + 1):
        for trace in (False, True):
            with tempfile.TemporaryDirectory() as folder:
                took, cpu, _ = asyncio.run(timed_run(Path(folder), machine, inputs, trace))
            if index:  # the first round warms up
                times[trace].append((took, cpu))
    found = []
    for trace in (False, True):
        walls, cpus = [t for t, _ in times[trace]], [c for _, c in times[trace]]
        found.append((statistics.median(walls), statistics.median(cpus), min(walls), min(cpus)))
    return found[0], found[1]


def ratio(plain: Timing, traced: Timing) -> str:
    wall, cpu, least_wall, least_cpu = (f"{(t / p - 1) * 100:+.1f}%" for p, t in zip(plain, traced, strict=True))
    return f"median {wall} wall, {cpu} CPU; least {least_wall} wall, {least_cpu} CPU"


def cli(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "agentfsm", *args], env=env, capture_output=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"agentfsm {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-kb", type=int, default=50)
    options = parser.parse_args()
    print(f"uptime: {os.getloadavg()}")
    loop_inputs = {"limit": options.steps // 2}
    plain, traced = compare(LOOP, loop_inputs, options.repeats)
    steps = options.steps
    print(f"recorded loop, {steps} steps: untraced {plain[0]:.3f}s ({plain[0] / steps * 1e6:.1f} us/step, CPU "
          f"{plain[1] / steps * 1e6:.1f}), traced {traced[0]:.3f}s ({traced[0] / steps * 1e6:.1f} us/step, CPU "
          f"{traced[1] / steps * 1e6:.1f}): {ratio(plain, traced)} (budget 15%)")
    from tests.llm_server import Reply, serve

    document = "lorem ipsum dolor " * (options.prompt_kb * 1024 // 18)
    with tempfile.TemporaryDirectory() as folder, serve(lifetime=3600) as server:
        os.environ["BENCH_KEY"] = "sk-bench-key"
        answer = {"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                  "model": "gpt-bench", "usage": {"prompt_tokens": 12000, "completion_tokens": 1}}
        server.script(*[Reply(json=answer)] * 200 * (options.repeats + 1) * 2)
        brains = {"scripted model (offline)": '{provider: scripted, replies: [{reply: "ok"}]}',
                  "openai provider, HTTP on 127.0.0.1": "{provider: openai, model: gpt-bench, base_url: '"
                  + server.url + "/v1', api_key_env: BENCH_KEY, max_retries: 0}"}
        cases = [(name, brain, SHARED) for name, brain in brains.items()]
        cases.append(("scripted, every prompt new throughout (worst case)", brains["scripted model (offline)"], NEW))
        for name, brain, prompt in cases:
            machine = Path(folder) / "long_prompt.yaml"
            machine.write_text(PROMPT_YAML.replace("BRAIN", brain).replace("PROMPT", prompt), encoding="utf-8")
            plain, traced = compare(machine, {"rounds": 200, "document": document}, options.repeats)
            print(f"llm step with a {options.prompt_kb} KB prompt, {name}: untraced {plain[0] / 200 * 1e6:.0f} us "
                  f"(CPU {plain[1] / 200 * 1e6:.0f}), traced {traced[0] / 200 * 1e6:.0f} us (CPU "
                  f"{traced[1] / 200 * 1e6:.0f}) per llm step: {ratio(plain, traced)} (budget 20%)")
    with tempfile.TemporaryDirectory() as folder:
        _, _, run_id = asyncio.run(timed_run(Path(folder), LOOP, loop_inputs, True))
        env = {**os.environ, "AGENTFSM_STORE": f"sqlite:///{Path(folder) / 'runs.db'}"}

        async def read() -> float:
            async with Runs(env["AGENTFSM_STORE"]) as runs:
                started = time.perf_counter()
                entries = await runs.trace(run_id)
                took = time.perf_counter() - started
                print(f"Runs.trace of a {steps}-step run: {len(entries)} entries in {took:.3f}s")
                return took

        asyncio.run(read())
        print(f"agentfsm --version (the floor of any command): {cli('--version', env=env):.3f}s")
        print(f"agentfsm trace RUN --json of a {steps}-step run: {cli('trace', run_id, '--json', env=env):.3f}s "
              "(target 1 s)")
        try:
            print(f"agentfsm stats RUN --json of a {steps}-step run: {cli('stats', run_id, '--json', env=env):.3f}s "
                  "(target 1 s)")
        except SystemExit as exc:
            print(f"agentfsm stats: not available ({exc})")


if __name__ == "__main__":
    main()
