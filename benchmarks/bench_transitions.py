"""How fast agentfsm moves from state to state, next to other Python state-machine engines.

Run it by hand, from the repository root, in an environment that has the peers:

    python3 -m venv /root/bench-venv
    /root/bench-venv/bin/pip install -e '.[bench]'
    /root/bench-venv/bin/python benchmarks/bench_transitions.py [--repeats 5] [--min-time 1] [--cold-runs 10]

What it measures
----------------
Every engine runs the same loop: one step adds 1 to a counter `n` kept in the engine's
own context/state, the next step checks `n < limit` and goes back or ends. With
`limit=5000` that is 10,000 transitions per run. Each engine's machine is built once;
a run (creating its context, driving the loop to the end) is timed with
`time.perf_counter`, once to warm up and then `--repeats` times (more, until the timed
runs add up to `--min-time` seconds, so that the fast engines get enough tries on a busy
machine), and the best run is reported as microseconds per transition, with its ratio to (a):

  (a) agentfsm, a machine built in Python from `State` subclasses
  (b) agentfsm, the same loop compiled from `benchmarks/loop.yaml` (`set` + `choice` + a guard)
  (c) `transitions`' AsyncMachine: an async callback increments, a condition routes
  (d) `python-statemachine` on its async engine: the same, with `cond=`
  (e) LangGraph: nodes `inc` and `check`, a conditional edge out of `check`, one `ainvoke`

(c) and (d) are driven the way those libraries are used, one awaited event per
transition; (a), (b) and (e) run the whole loop inside one call.

It also times cold starts, as a user feels them: the median wall time of
`agentfsm validate machines/hello.yaml` and of `python -c "import langgraph.graph"`,
each in a fresh subprocess of this interpreter, with `python -c pass` as the floor.

A peer that is not installed is reported as such; it does not stop the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import importlib.util
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

HERE = Path(__file__).resolve().parent

REPO = HERE.parent
LOOP_YAML = HERE / "loop.yaml"
LIMIT = 5000
TRANSITIONS = 2 * LIMIT  # one `inc` and one `check` step per increment
NOT_INSTALLED = "not installed (pip install -e '.[bench]')"

RunOnce = Callable[[], Awaitable[int]]
"""Runs the whole loop once and returns the final counter (checked against LIMIT)."""


@dataclass(frozen=True)
class Case:
    """One row of the table: how to build the engine's loop, and what to print beside its number."""

    label: str
    distribution: str | None  # the package whose absence means "not installed"
    build: Callable[[], RunOnce]
    target_us: float | None = None
    previous_us: float | None = None


# -- (a) agentfsm, Python states -------------------------------------------------------------


def build_agentfsm_python() -> RunOnce:
    from agentfsm import State, StateContext, StateMachine

    class Inc(State):
        async def execute(self, context: StateContext) -> str:
            context.data["n"] += 1
            return "check"

    class Check(State):
        async def execute(self, context: StateContext) -> str:
            return "inc" if context.data["n"] < context.data["limit"] else "done"

    machine = StateMachine("loop", max_steps=10**7)
    machine.add_state(Inc("inc"), initial=True)
    machine.add_state(Check("check"))
    machine.add_state(State("done"), final=True)
    machine.add_transition("inc", "check")
    machine.add_transition("check", "inc")
    machine.add_transition("check", "done")

    async def run() -> int:
        result = await machine.run({"n": 0, "limit": LIMIT})
        return result.context.data["n"]

    return run


# -- (b) agentfsm, YAML ------------------------------------------------------------------------


def build_agentfsm_yaml() -> RunOnce:
    from agentfsm import load_machine

    machine = load_machine(LOOP_YAML)

    async def run() -> int:
        result = await machine.run({"limit": LIMIT})
        if not result.succeeded:
            raise RuntimeError(f"the YAML loop failed: {result.error}")
        return result.output

    return run


# -- (c) transitions ---------------------------------------------------------------------------


def build_transitions() -> RunOnce:
    from transitions.extensions.asyncio import AsyncMachine

    class Counter:
        state: str  # set by the machine

        def __init__(self) -> None:
            self.n = 0
            self.limit = LIMIT

        async def increment(self) -> None:
            self.n += 1

        def below_limit(self) -> bool:
            return self.n < self.limit

    model = Counter()
    machine = AsyncMachine(
        model,
        states=["inc", "check", "done"],
        transitions=[
            {"trigger": "advance", "source": "inc", "dest": "check", "before": "increment"},
            {"trigger": "advance", "source": "check", "dest": "inc", "conditions": "below_limit"},
            {"trigger": "advance", "source": "check", "dest": "done"},
        ],
        initial="inc",
        auto_transitions=False,
    )

    async def run() -> int:
        model.n = 0
        machine.set_state("inc", model)
        while model.state != "done":
            await model.advance()  # type: ignore[attr-defined]  # the machine adds the trigger
        return model.n

    return run


# -- (d) python-statemachine -------------------------------------------------------------------


def build_python_statemachine() -> RunOnce:
    from statemachine import State, StateMachine

    class Loop(StateMachine):
        inc = State(initial=True)
        check = State()
        done = State(final=True)

        advance = inc.to(check, before="increment") | check.to(inc, cond="below_limit") | check.to(done)

        def __init__(self) -> None:
            self.n = 0
            self.limit = LIMIT
            super().__init__()

        async def increment(self) -> None:  # an async callback selects the async engine
            self.n += 1

        def below_limit(self) -> bool:
            return self.n < self.limit

    async def run() -> int:
        machine = Loop()
        await machine.activate_initial_state()
        while machine.current_state_value != "done":  # works on python-statemachine 2.3 and 3.x
            await machine.send("advance")
        return machine.n

    return run


# -- (e) LangGraph -----------------------------------------------------------------------------


class LoopState(TypedDict):
    n: int
    limit: int


def build_langgraph() -> RunOnce:
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    async def inc(state: LoopState) -> dict[str, Any]:
        return {"n": state["n"] + 1}

    async def check(state: LoopState) -> dict[str, Any]:
        return {}

    def route(state: LoopState) -> str:
        return "inc" if state["n"] < state["limit"] else END

    graph = StateGraph(LoopState)
    graph.add_node("inc", inc)
    graph.add_node("check", check)
    graph.add_edge(START, "inc")
    graph.add_edge("inc", "check")
    graph.add_conditional_edges("check", route, ["inc", END])
    app = graph.compile()
    config = RunnableConfig(recursion_limit=TRANSITIONS + 10)  # one superstep per transition

    async def run() -> int:
        final = await app.ainvoke(LoopState(n=0, limit=LIMIT), config)
        return final["n"]

    return run


CASES = [
    Case("(a) agentfsm, Python State subclasses", None, build_agentfsm_python, target_us=10),
    Case("(b) agentfsm, YAML set + choice + guard", None, build_agentfsm_yaml, target_us=25),
    Case("(c) transitions AsyncMachine", "transitions", build_transitions, previous_us=43),
    Case("(d) python-statemachine (async)", "python-statemachine", build_python_statemachine, previous_us=110),
    Case("(e) LangGraph ainvoke", "langgraph", build_langgraph, previous_us=460),
]


# -- measuring ---------------------------------------------------------------------------------


async def best_time(run: RunOnce, repeats: int, min_time: float) -> float:
    """Seconds taken by the fastest run, after one warm-up run that also checks the loop's result.

    It times at least `repeats` runs, and goes on until they add up to `min_time` seconds, so a fast
    engine gets more tries at a quiet moment of a busy machine.
    """
    final = await run()
    if final != LIMIT:
        raise RuntimeError(f"the loop ended at n={final}, expected {LIMIT}")
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        gc.collect()
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(case: Case, repeats: int, min_time: float) -> float | None:
    """Microseconds per transition, or None when the engine is not installed."""
    if case.distribution is not None and version_of(case.distribution) is None:
        return None
    try:
        run = case.build()
    except ImportError:
        return None
    return asyncio.run(best_time(run, repeats, min_time)) / TRANSITIONS * 1e6


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class ColdStart:
    """A command whose start-up time is measured in fresh processes."""

    label: str
    command: list[str] | None  # None: what it needs is not installed
    target_ms: float | None = None
    previous_ms: float | None = None


def cold_starts() -> list[ColdStart]:
    python = sys.executable
    langgraph = importlib.util.find_spec("langgraph") is not None
    return [
        ColdStart("python -c pass (the floor)", [python, "-c", "pass"]),
        ColdStart(
            "agentfsm validate machines/hello.yaml",
            [*agentfsm_command(), "validate", "machines/hello.yaml"],
            target_ms=250,
        ),
        ColdStart(
            'python -c "import langgraph.graph"',
            [python, "-c", "import langgraph.graph"] if langgraph else None,
            previous_ms=775,
        ),
    ]


def agentfsm_command() -> list[str]:
    """The `agentfsm` console script next to this interpreter, else `python -m agentfsm`."""
    script = Path(sys.executable).with_name("agentfsm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentfsm"]


def cold_start_ms(command: list[str], runs: int) -> float:
    """Median wall time of `command` in a fresh process, after one untimed run (which also writes .pyc files)."""
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


# -- printing ----------------------------------------------------------------------------------

ROW = "{:<42}{:>14}{:>9}   {}"


def note(value: float, unit: str, target: float | None, previous: float | None) -> str:
    """`target <= 10 µs  ok`, `~43 µs measured before`, or nothing."""
    if target is not None:
        return f"target <= {target:g} {unit}  {'ok' if value <= target else 'MISSED'}"
    if previous is not None:
        return f"~{previous:g} {unit} measured before"
    return ""


def print_header(repeats: int, min_time: float) -> None:
    names = ("agentfsm", "transitions", "python-statemachine", "langgraph")
    versions = ", ".join(f"{name} {version_of(name) or '-'}" for name in names)
    print(f"Python {platform.python_version()} on {platform.machine()}; {versions}")
    runs = f"best of {repeats} runs (more until they add up to {min_time:g} s), after a warm-up"
    print(f"{TRANSITIONS:,} transitions per run (counter to {LIMIT:,}); {runs}\n")


def print_transitions(repeats: int, min_time: float) -> None:
    print(ROW.format("engine", "µs/transition", "vs (a)", "note"))
    baseline: float | None = None
    for case in CASES:
        value = measure(case, repeats, min_time)
        if value is None:
            print(f"{case.label:<42}{NOT_INSTALLED}")
            continue
        baseline = baseline or value  # (a) comes first
        ratio = f"{value / baseline:.1f}x"
        print(ROW.format(case.label, f"{value:.1f}", ratio, note(value, "µs", case.target_us, case.previous_us)))


def print_cold_starts(runs: int) -> None:
    print()
    print(ROW.format(f"cold start (median of {runs} runs)", "ms", "", "note"))
    for row in cold_starts():
        if row.command is None:
            print(f"{row.label:<42}{NOT_INSTALLED}")
            continue
        value = cold_start_ms(row.command, runs)
        print(ROW.format(row.label, f"{value:.0f}", "", note(value, "ms", row.target_ms, row.previous_ms)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="least timed runs per engine, after a warm-up (default 5)"
    )
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="least seconds of timed runs per engine (default 1)"
    )
    parser.add_argument("--cold-runs", type=int, default=10, help="fresh processes per cold start (default 10)")
    args = parser.parse_args(argv)
    print_header(args.repeats, args.min_time)
    print_transitions(args.repeats, args.min_time)
    print_cold_starts(args.cold_runs)


if __name__ == "__main__":
    main()
