"""What the debugging hooks cost a recorded run: the breakpoint observer every stored run carries, and watches.

Run it by hand, from the repository root:

    python benchmarks/bench_debugging.py [--steps 10000] [--repeats 5]

Every recorded run (`agentfsm run`, `Runs.start/resume`, the worker) carries a `Breakpoints` observer,
breakpoints or not: it is how `agentfsm break RUN STATE` from another process stops a run going on (it
reads the run's breakpoints again at most once a second). This times the counting loop of
benchmarks/loop.yaml, `--steps` steps committed to a fresh SQLite store each, in four ways, alternating,
median of `--repeats` after a warm-up:

- without the observer (the hook taken out: what a run cost before breakpoints existed),
- with it (the default), no breakpoint set,
- with it and a guarded breakpoint on the loop's state whose guard never holds (`inc:n < 0`): the guard
  is evaluated at every visit,
- with two watches (`n`, `n * 2`), which report a change at every other step.

Figures are CPU seconds of this process (steadier than wall-clock on a shared machine) and the ratio to the
run without the observer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentfsm.service import debugging  # noqa: E402
from agentfsm.service.machines import load_machine  # noqa: E402
from agentfsm.service.runs import Runs  # noqa: E402

LOOP = ROOT / "benchmarks" / "loop.yaml"


class _Nothing:
    """Stands in for the breakpoint observer: listens to nothing."""


async def one(folder: Path, *, breakpoints: list[str], observers: Callable[[], list[object]]) -> float:
    machine = load_machine(LOOP)
    async with Runs(f"sqlite:///{folder / 'runs.db'}") as runs:
        started = time.process_time()
        result = await runs.start(machine, {"limit": STEPS // 2}, breakpoints=breakpoints, observers=observers())
        spent = time.process_time() - started
    assert result.status == "succeeded", result.error
    return spent


def main() -> None:
    global STEPS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    STEPS = options.steps
    original = debugging.observer
    cases: dict[str, dict[str, Any]] = {
        "without the breakpoint observer": {"breakpoints": [], "observers": list, "hook": False},
        "with it, no breakpoint": {"breakpoints": [], "observers": list, "hook": True},
        "a guarded breakpoint never holding": {"breakpoints": ["inc:n < 0"], "observers": list, "hook": True},
        "two watches": {"breakpoints": [], "observers": lambda: [debugging.watching(["n", "n * 2"])], "hook": True},
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_number in range(options.repeats + 1):
        for name, case in cases.items():
            debugging.observer = original if case["hook"] else (lambda *args, **kwargs: _Nothing())
            with tempfile.TemporaryDirectory() as folder:
                spent = asyncio.run(one(Path(folder), breakpoints=case["breakpoints"], observers=case["observers"]))
            if round_number:  # the first round warms up
                times[name].append(spent)
    debugging.observer = original
    base = statistics.median(times["without the breakpoint observer"])
    print(f"{STEPS} recorded steps (SQLite), CPU seconds, median of {options.repeats}")
    for name, spent in times.items():
        median = statistics.median(spent)
        print(f"  {name:<36} {median:7.3f} s  {median / STEPS * 1e6:6.1f} us/step  x{median / base:.3f}")


STEPS = 10_000

if __name__ == "__main__":
    main()
