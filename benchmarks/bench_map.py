"""Fan-out: a `map` over 1,000 items of a 3-state inner machine, against LangGraph's `Send` fan-out of the same work.

Run it by hand, from the repository root, in the environment that has the peers:

    /root/bench-venv/bin/python benchmarks/bench_map.py [--items 1000] [--repeats 3] [--no-memory]

What it measures
----------------
The work per item is the same everywhere: three states, `a` -> `b` -> `c`. `a` sets
`text` from the item, `b` waits 10 ms (a tool or LLM call that takes that long; in agentfsm
a pure timer `wait`, slept in process), `c` ends with `text` upper-cased and the item's index.
The outputs are checked, in item order, for every case.

  agentfsm map, in memory      `type: map` with the inner machine inline, `max_concurrency: 0`
                               (every item at once) and the default 10; each item is a child run
  agentfsm map, recorded       the same machine run with `store=sqlite:///DIR/runs.db`: the parent
                               and each of the 1,000 child runs are durable runs of their own
                               (every step committed before the next state starts)
  LangGraph Send               a `StateGraph` whose first node's conditional edge returns one
                               `Send("work", {...})` per item; `work` is a compiled 3-node subgraph;
                               the results are gathered by an `operator.add` reducer (in memory)
  bare asyncio floor           1,000 tasks each awaiting `asyncio.sleep(0.01)` once: the sleeps alone

Each repeat of a case runs in a fresh child process (`--child CASE`) after a warm-up of 20 items;
only the run is timed (`time.perf_counter`); the figure is the median of `--repeats`, with the
ratio to LangGraph's median from the same run.

Memory per item in flight (unless `--no-memory`): in one more child per case, the peak of
`tracemalloc`'s traced memory during the run (all items at once, each asleep in `b` together),
minus what was traced before it, divided by the items.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
MACHINE = """\
agentfsm: 1
name: fanout
inputs:
  items: {{type: array, required: true}}
initial: each
max_steps: 10
states:
  each:
    type: map
    items: "{{{{ items }}}}"
    max_concurrency: {limit}
    initial: a
    states:
      a: {{type: set, set: {{text: "{{{{ item }}}}"}}, next: b}}
      b: {{type: wait, timeout: 10ms, next: c}}
      c: {{type: final, output: "{{{{ text | upper }}}}-{{{{ index }}}}"}}
    save: results
    next: done
  done: {{type: final, output: "{{{{ results }}}}"}}
"""
CASES = ["floor", "agentfsm in memory (all at once)", "agentfsm in memory (10 at once)",
         "agentfsm recorded (all at once)", "LangGraph Send"]


def expected(count: int) -> list[str]:
    return [f"ITEM{i}-{i}" for i in range(count)]


def agentfsm_case(limit: int, recorded: bool) -> Any:
    import agentfsm

    folder = Path(tempfile.mkdtemp())
    path = folder / "fanout.yaml"
    path.write_text(MACHINE.format(limit=limit), encoding="utf-8")
    machine = agentfsm.load_machine(path)

    async def run(count: int) -> list[str]:
        items = [f"item{i}" for i in range(count)]
        if recorded:
            store = f"sqlite:///{folder / f'runs-{time.monotonic_ns()}.db'}"
            result = await agentfsm.run(machine, {"items": items}, store=store)
        else:
            result = await machine.run({"items": items})
        assert result.status == "succeeded", result.error
        return result.output

    return run


class Item(TypedDict, total=False):
    """LangGraph's state of one item's subgraph."""

    item: str
    index: int
    text: str
    results: list[tuple[int, str]]


class Parent(TypedDict, total=False):
    """LangGraph's state of the fan-out graph: the results gathered by a reducer."""

    items: list[str]
    results: Annotated[list[tuple[int, str]], operator.add]


def langgraph_case() -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    async def a(state: Item) -> dict[str, Any]:
        return {"text": state["item"]}

    async def b(state: Item) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {}

    async def c(state: Item) -> dict[str, Any]:
        return {"results": [(state["index"], f"{state['text'].upper()}-{state['index']}")]}

    inner = StateGraph(Item)
    for name, node in (("a", a), ("b", b), ("c", c)):
        inner.add_node(name, node)
    inner.add_edge(START, "a")
    inner.add_edge("a", "b")
    inner.add_edge("b", "c")
    inner.add_edge("c", END)
    work = inner.compile()

    def fan(state: Parent) -> list[Any]:
        return [Send("work", {"item": item, "index": index}) for index, item in enumerate(state["items"])]

    outer = StateGraph(Parent)
    outer.add_node("start", lambda state: {})
    outer.add_node("work", work)
    outer.add_edge(START, "start")
    outer.add_conditional_edges("start", fan, ["work"])
    outer.add_edge("work", END)
    graph = outer.compile()

    async def run(count: int) -> list[str]:
        final = await graph.ainvoke({"items": [f"item{i}" for i in range(count)], "results": []})
        return [text for _, text in sorted(final["results"])]

    return run


def floor_case() -> Any:
    async def run(count: int) -> list[str]:
        async def one(index: int) -> str:
            await asyncio.sleep(0.01)
            return f"ITEM{index}-{index}"

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    return run


def make(case: str) -> Any:
    if case == "floor":
        return floor_case()
    if case == "LangGraph Send":
        return langgraph_case()
    return agentfsm_case(0 if "all at once" in case else 10, "recorded" in case)


def child(case: str, count: int, memory: bool) -> dict[str, float]:
    run = make(case)
    assert asyncio.run(run(20)) == expected(20)  # warm-up: imports, caches
    if memory:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        output = asyncio.run(run(count))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert output == expected(count)
        return {"per_item_kb": (peak - before) / count / 1024}
    started = time.perf_counter()
    output = asyncio.run(run(count))
    elapsed = time.perf_counter() - started
    assert output == expected(count), output[:3]
    return {"seconds": elapsed}


def in_child(case: str, count: int, memory: bool) -> dict[str, float] | str:
    command = [sys.executable, __file__, "--child", case, "--items", str(count)] + (["--memory"] if memory else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return "not installed" if "ModuleNotFoundError" in last else f"failed: {last[:100]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--memory", action="store_true")
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(options.child, options.items, options.memory)))
        return
    times: dict[str, list[float]] = {case: [] for case in CASES}
    problems: dict[str, str] = {}
    for _ in range(options.repeats):
        for case in CASES:
            if case in problems:
                continue
            found = in_child(case, options.items, False)
            if isinstance(found, str):
                problems[case] = found
            else:
                times[case].append(found["seconds"])
    memory = {case: in_child(case, options.items, True) for case in CASES if case not in problems} \
        if not options.no_memory else {}
    peer = statistics.median(times["LangGraph Send"]) if times["LangGraph Send"] else None
    print(f"map over {options.items} items of a 3-state machine (b sleeps 10 ms); median of {options.repeats}")
    print(f"{'case':36} {'wall s':>8} {'range':>15} {'vs LangGraph':>13} {'KB/item in flight':>18}")
    for case in CASES:
        if case in problems:
            print(f"{case:36} {problems[case]}")
            continue
        median = statistics.median(times[case])
        ratio = f"{median / peer:.2f}x" if peer else "-"
        kb = memory.get(case)
        kb_text = f"{kb['per_item_kb']:.1f}" if isinstance(kb, dict) else (kb or "-")
        span = f"{min(times[case]):.3f}-{max(times[case]):.3f}"
        print(f"{case:36} {median:8.3f} {span:>15} {ratio:>13} {kb_text:>18}")


if __name__ == "__main__":
    main()
