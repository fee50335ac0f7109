"""What a recorded step costs as the context grows: a transcript gaining one message per step, and a big value at rest.

Run it by hand, from the repository root (no peers needed):

    python benchmarks/bench_transcript.py [--steps 5000] [--repeats 3] [--window 21] [--blob-kb 1024]

To measure another checkout's code with the same script (the "before" figures of a change),
put that checkout first on the import path:

    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_transcript.py --repeats 1

What it measures
----------------
Every case is a machine built in Python: one `State` that loops on itself (event `more`)
until the run has taken `--steps` steps, then ends (event `enough`). The state takes
`time.perf_counter_ns()` as it starts; the cost of step k is the time from the start of
step k to the start of step k+1: routing, the hooks and, in a recorded run, the store's
commit of step k with its context change. The starting context is the machine's own
(`initial_data`), not run inputs. Each case runs in memory (`machine.run()`) and recorded
(`agentfsm.Runs("sqlite:///...").start(machine)`, a fresh store file in a fresh temporary
directory, the store's default synchronous=NORMAL).

The cases:

  empty          the context stays {} (the state counts with `context.step`)
  transcript     the context starts as {"messages": []}; every step appends one message
                 (a dict, about 200 bytes of JSON) with `messages.append(...)`
  reassigned     the same transcript grown by reassignment, `messages = messages + [message]`,
                 which is what a YAML `set: {messages: "{{ messages + [m] }}"}` does
  value at rest  the context holds a list of dicts of `--blob-kb` KB (1 MB by default, as
                 JSON) that no step changes; nothing else changes either

The figure for "step k" is the median cost of the `--window` steps centred on k (steps 10,
1,000 and 5,000 of a transcript; all steps after the 20th for the flat cases), and the
median of that over `--repeats` runs. The mean cost of every step of a recorded run is
printed too: it includes garbage collection, the occasional full snapshot and the store's
periodic WAL checkpoints (an fsync each), so it is noisier and mostly the disk's.

After the recorded transcript run the store is read back: every step's stored change must be
one RFC 6902 `add` at the end of `messages` (snapshots, taken now and then, are counted apart).

Targets (history/deltas.py's): a recorded transcript step at step 5,000 costs at most 2x a
recorded step with an empty context, and a 1 MB value at rest adds at most 20%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agentfsm
from agentfsm import Event, RunResult, State, StateContext, StateMachine
from agentfsm.store import StepRow

TRANSCRIPT_TARGET = 2.0
AT_REST_TARGET = 1.2


def message(step: int) -> dict[str, Any]:
    """A chat message of about 200 bytes of JSON."""
    role = "user" if step % 2 else "assistant"
    return {"role": role, "content": f"message {step}: " + "lorem ipsum dolor sit amet " * 6}


def blob(kilobytes: int) -> list[dict[str, Any]]:
    """A list of dicts about `kilobytes` KB long as JSON."""
    items: list[dict[str, Any]] = []
    size = 0
    while size < kilobytes * 1024:
        item = {"id": len(items), "title": f"document {len(items)}", "tags": ["a", "b"], "body": "x" * 120}
        size += len(json.dumps(item)) + 1
        items.append(item)
    return items


Work = Callable[[StateContext], None]


def append_message(context: StateContext) -> None:
    context.data["messages"].append(message(context.step))


def reassign_messages(context: StateContext) -> None:
    context.data["messages"] = context.data["messages"] + [message(context.step)]


def nothing(context: StateContext) -> None:
    return None


class Loop(State):
    """Does `work`, then loops until the run has taken `steps` steps; notes when each step starts."""

    def __init__(self, steps: int, work: Work, stamps: list[int]) -> None:
        super().__init__("loop")
        self.steps = steps
        self.work = work
        self.stamps = stamps

    async def execute(self, context: StateContext) -> Event:
        self.stamps.append(time.perf_counter_ns())
        self.work(context)
        return Event("more" if context.step < self.steps else "enough")


def machine(steps: int, work: Work, stamps: list[int], context: dict[str, Any]) -> StateMachine:
    built = StateMachine("bench_transcript", max_steps=steps + 10)
    # the machine's own starting context, not run inputs: the store rewrites a run's inputs with every step,
    # a cost of its own that this benchmark does not measure
    built.initial_data = context
    built.add_state(Loop(steps, work, stamps), initial=True)
    built.add_state(State("end"), final=True)
    built.add_transition("loop", "loop", "more")
    built.add_transition("loop", "end", "enough")
    return built


@dataclass
class Case:
    label: str
    work: Work
    context: Callable[[], dict[str, Any]]
    points: tuple[int, ...] = ()
    """Steps to report; empty: one figure over every step after the 20th."""


@dataclass
class Timing:
    """One run: the cost of each step (ns, index k-1 for step k) and, if recorded, its store and run id."""

    step_ns: list[int]
    run_id: str | None = None
    store: Path | None = None


def run_once(case: Case, steps: int, directory: Path | None) -> Timing:
    """Run `case` once, in memory (`directory` None) or recorded in a fresh store in `directory`."""
    stamps: list[int] = []
    built = machine(steps, case.work, stamps, case.context())
    store = None if directory is None else directory / "runs.db"

    async def recorded(store: Path) -> RunResult:
        async with agentfsm.Runs(f"sqlite:///{store}") as runs:
            return await runs.start(built)

    gc.collect()
    result = asyncio.run(built.run() if store is None else recorded(store))
    run_id = None if store is None else result.run_id
    if not result.succeeded or result.steps != steps + 1:
        raise RuntimeError(f"{case.label}: the run ended {result.status} after {result.steps} steps: {result.error}")
    costs = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    return Timing(costs, run_id, store)


def at(timing: Timing, point: int | None, window: int) -> float:
    """Median cost (ns) of the `window` steps centred on `point`, or of every step after the 20th."""
    costs = timing.step_ns
    if point is None:
        chosen = costs[20:] or costs
    else:
        first = max(1, point - window // 2)
        chosen = costs[first - 1:first - 1 + window]
    return statistics.median(chosen)


def stored_changes(store: Path, run_id: str) -> dict[str, int]:
    """How the recorded transcript's steps were stored: one `add` at the end of `messages`, a snapshot, or else."""
    counts = {"one add appending to messages": 0, "snapshot": 0, "other": 0, "unchanged": 0}

    async def history() -> list[StepRow]:
        async with agentfsm.Runs(f"sqlite:///{store}") as runs:
            return await runs.history(run_id)

    for row in asyncio.run(history()):
        if row.context_kind is None:
            counts["unchanged"] += 1
        elif row.context_kind == "snapshot":
            counts["snapshot"] += 1
        else:
            operations = json.loads(row.context or "[]")
            single = len(operations) == 1 and operations[0].get("op") == "add"
            tail = operations[0]["path"].removeprefix("/messages/") if single else ""
            appends = single and tail != operations[0]["path"] and (tail == "-" or tail.isdigit())
            counts["one add appending to messages" if appends else "other"] += 1
    return counts


@dataclass
class Result:
    label: str
    points: tuple[int | None, ...]
    memory_ns: list[float]
    recorded_ns: list[float]
    recorded_mean_ns: float
    steps: int
    patches: dict[str, int]


def measure(case: Case, args: argparse.Namespace, root: Path) -> Result:
    steps = max(args.steps, *case.points) if case.points else args.flat_steps
    points: tuple[int | None, ...] = case.points or (None,)
    memory: list[Timing] = []
    recorded: list[Timing] = []
    for attempt in range(args.repeats):
        memory.append(run_once(case, steps, None))
        recorded.append(run_once(case, steps, Path(tempfile.mkdtemp(prefix=f"r{attempt}-", dir=root))))
        print(f"  {case.label}: run {attempt + 1} of {args.repeats} done", file=sys.stderr, flush=True)

    def figure(timings: list[Timing], point: int | None) -> float:
        return statistics.median(at(timing, point, args.window) for timing in timings)

    last = recorded[-1]
    patches: dict[str, int] = {}
    if case.work is append_message and last.store is not None and last.run_id is not None:
        patches = stored_changes(last.store, last.run_id)
    return Result(
        case.label, points, [figure(memory, p) for p in points], [figure(recorded, p) for p in points],
        statistics.median(statistics.fmean(t.step_ns) for t in recorded), steps, patches,
    )


ROW = "{:<30}{:>12}{:>12}{:>12}{:>18}"


def us(ns: float) -> str:
    return f"{ns / 1e3:,.1f}"


def print_results(results: list[Result], args: argparse.Namespace) -> None:
    print(ROW.format("case", "in memory", "recorded", "recorded", "recorded, mean"))
    print(ROW.format("", "µs/step", "µs/step", "vs empty", "of every step"))
    empty = next(r for r in results if r.label == "empty").recorded_ns[0]
    for result in results:
        for index, point in enumerate(result.points):
            label = result.label if point is None else f"{result.label}, step {point:,}"
            total = us(result.recorded_mean_ns) if index == len(result.points) - 1 else ""
            print(ROW.format(label, us(result.memory_ns[index]), us(result.recorded_ns[index]),
                             f"{result.recorded_ns[index] / empty:.2f}x", total))
    print(f"  step k: median of the {args.window} steps centred on k; flat cases: every step after the 20th;"
          f" median of {args.repeats} run(s)\n")
    by_label = {result.label: result for result in results}
    print("Targets")
    transcript = by_label.get("transcript")
    if transcript is not None:
        grown = transcript.recorded_ns[-1] / empty
        print(f"  transcript step {transcript.points[-1]:,} vs an empty context: {grown:.2f}x "
              f"(target <= {TRANSCRIPT_TARGET:g}x)  {'ok' if grown <= TRANSCRIPT_TARGET else 'MISSED'}")
    rest = by_label.get("value at rest")
    if rest is not None:
        idle = rest.recorded_ns[0] / empty
        print(f"  {args.blob_kb} KB value at rest vs an empty context: {idle:.2f}x "
              f"(target <= {AT_REST_TARGET:g}x)  {'ok' if idle <= AT_REST_TARGET else 'MISSED'}")
    if transcript is not None:
        counts = ", ".join(f"{name}: {count:,}" for name, count in transcript.patches.items())
        print(f"  how the recorded transcript's {transcript.steps:,} steps were stored: {counts}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="transcript length reached (default 5000)")
    parser.add_argument("--flat-steps", type=int, default=1000, help="steps of the flat cases (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--window", type=int, default=21, help="steps around each point (default 21)")
    parser.add_argument("--blob-kb", type=int, default=1024, help="size of the value at rest, KB (default 1024)")
    parser.add_argument("--only", default="", help="run only the cases whose label contains this text")
    args = parser.parse_args(argv)
    points = tuple(sorted({p for p in (10, 1000, 5000) if p < args.steps} | {args.steps}))
    cases = [
        Case("empty", nothing, dict),
        Case("value at rest", nothing, lambda: {"blob": blob(args.blob_kb)}),
        Case("transcript", append_message, lambda: {"messages": []}, points),
        Case("reassigned", reassign_messages, lambda: {"messages": []}, points),
    ]
    where = Path(agentfsm.__file__).resolve().parent.parent
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; agentfsm from {where}")
    cases = [case for case in cases if case.label == "empty" or args.only in case.label]
    with tempfile.TemporaryDirectory(prefix="bench_transcript-") as tmp:
        results = [measure(case, args, Path(tmp)) for case in cases]
    print_results(results, args)


if __name__ == "__main__":
    main()
