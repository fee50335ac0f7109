"""Teams: a 100-agent parallel team against the bare asyncio floor and LangGraph's `Send` fan-out, and the
overhead of a 2-agent sequential team against running its two machines by hand.

    /root/bench-venv/bin/python benchmarks/bench_teams.py [--agents 100] [--repeats 3]

What it measures
----------------
fan-out     `--agents` agents at once, each taking five steps that each await `asyncio.sleep(0.01)` (a 10 ms
            LLM or tool call), gathered into one result:
              bare asyncio floor   `--agents` tasks each awaiting five sleeps, one `asyncio.gather`
              agentfsm in memory   a YAML `type: team` with `strategy: parallel` whose agents are one inline
                                   machine of five `python` tool states (`agentfsm.run(path)`)
              agentfsm SQLite      the same team recorded: the team run and every agent's child run with each
                                   step committed before the next (`store=sqlite:///...`, a fresh file)
              LangGraph Send       a `StateGraph` whose router returns `--agents` `Send("agent", ...)`, the
                                   agent node awaiting five sleeps, results gathered by a reducer
            Wall time of one fan-out (median of `--repeats`, in this process), ratio to the floor, and the
            memory allocated per agent in flight (tracemalloc's peak over the fan-out / agents).
overhead    a 2-agent sequential team of trivial agents (set -> final) against the two machines run one
            after the other by hand (`machine.run` twice), in memory, 200 times each: time per team, ratio.

Figures move with the machine's load: compare them only within one run of the script.
"""



import argparse
import asyncio
import operator
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SLEEP = 0.01


class State(TypedDict):
    """LangGraph's state: the agents' results, gathered by the reducer."""

    results: Annotated[list[int], operator.add]


class Item(TypedDict):
    i: int
TOOLS = '''
import asyncio

async def pause(step: int) -> int:
    await asyncio.sleep(0.01)
    return step
'''


def team_yaml(agents: int) -> str:
    states = "\n".join(
        f"          s{i}: {{type: tool, tool: pause, args: {{step: {i}}}, next: {'s' + str(i + 1) if i < 5 else 'end'}}}"
        for i in range(1, 6))
    lines = ["agentfsm: 1", "name: fan-out", "tools:", "  pause: {python: 'bench_team_tools:pause'}",
             "initial: team", "states:", "  team:", "    type: team", "    strategy: parallel", "    agents:"]
    lines.append("      a0: &agent")
    lines.append("        initial: s1")
    lines.append("        states:")
    lines.append(states)
    lines.append("          end: {type: final, output: done}")
    lines += [f"      a{i}: *agent" for i in range(1, agents)]
    lines += ["    save: results", "    next: done", "  done: {type: final, output: \"{{ results | length }}\"}"]
    return "\n".join(lines) + "\n"


SEQUENTIAL = '''agentfsm: 1
name: pair
initial: team
states:
  team:
    type: team
    strategy: sequential
    agents:
      first: {machine: trivial.yaml}
      second: {machine: trivial.yaml}
    save: out
    next: done
  done: {type: final, output: "{{ out }}"}
'''
TRIVIAL = '''agentfsm: 1
name: trivial
initial: a
states:
  a: {type: set, set: {x: 1}, next: b}
  b: {type: final, output: "{{ x }}"}
'''


async def floor(agents: int) -> None:
    async def agent() -> None:
        for _ in range(5):
            await asyncio.sleep(SLEEP)

    await asyncio.gather(*(agent() for _ in range(agents)))


def langgraph_fanout(agents: int) -> Callable[[], Awaitable[Any]] | None:
    try:
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    except ImportError:
        return None

    async def agent(item: Item) -> dict[str, list[int]]:
        for _ in range(5):
            await asyncio.sleep(SLEEP)
        return {"results": [item["i"]]}

    def fan(state: State) -> list[Send]:
        return [Send("agent", {"i": i}) for i in range(agents)]

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_conditional_edges(START, fan, ["agent"])
    graph.add_edge("agent", END)
    compiled = graph.compile()

    async def run() -> Any:
        out = await compiled.ainvoke({"results": []})
        assert len(out["results"]) == agents
        return out

    return run


def measure(label: str, make: Callable[[], Awaitable[Any]], repeats: int, agents: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        asyncio.run(make())
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    asyncio.run(make())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / agents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    import agentfsm

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "bench_team_tools.py").write_text(TOOLS)
        team = work / "fan_out.yaml"
        team.write_text(team_yaml(options.agents))
        (work / "pair.yaml").write_text(SEQUENTIAL)
        (work / "trivial.yaml").write_text(TRIVIAL)
        machine = agentfsm.load_machine(team)
        stores = iter(range(1000))

        async def in_memory() -> Any:
            result = await machine.run()
            assert result.output == options.agents, result.error

        async def recorded() -> Any:
            result = await agentfsm.run(team, store=f"sqlite:///{work / f'runs{next(stores)}.db'}")
            assert result.output == options.agents, result.error

        cases: list[tuple[str, Callable[[], Awaitable[Any]] | None]] = [
            ("bare asyncio floor", lambda: floor(options.agents)), ("agentfsm in memory", in_memory),
            ("agentfsm SQLite", recorded), ("LangGraph Send", langgraph_fanout(options.agents))]
        print(f"fan-out: {options.agents} agents x 5 steps x 10 ms (median of {options.repeats})")
        base = None
        for label, make in cases:
            if make is None:
                print(f"  {label:<20} not installed")
                continue
            wall, per_agent = measure(label, make, options.repeats, options.agents)
            base = base or wall
            print(f"  {label:<20} {wall * 1000:8.1f} ms  {wall / base:5.2f}x floor  {per_agent / 1024:7.1f} KiB/agent")

        pair = agentfsm.load_machine(work / "pair.yaml")
        first, second = agentfsm.load_machine(work / "trivial.yaml"), agentfsm.load_machine(work / "trivial.yaml")

        async def teams(n: int) -> None:
            for _ in range(n):
                assert (await pair.run()).output == {"first": 1, "second": 1}

        async def by_hand(n: int) -> None:
            for _ in range(n):
                out = {"first": (await first.run()).output, "second": (await second.run()).output}
                assert out == {"first": 1, "second": 1}

        n = 200
        timed = {}
        for label, work_fn in (("2 machines by hand", by_hand), ("2-agent sequential team", teams)):
            samples = []
            for _ in range(options.repeats):
                started = time.perf_counter()
                asyncio.run(work_fn(n))
                samples.append((time.perf_counter() - started) / n)
            timed[label] = statistics.median(samples)
        print(f"overhead: 2-agent sequential team of trivial agents, in memory ({n} runs, median of "
              f"{options.repeats})")
        hand = timed["2 machines by hand"]
        for label, value in timed.items():
            print(f"  {label:<24} {value * 1e6:8.1f} us  {value / hand:5.2f}x by hand")


if __name__ == "__main__":
    main()
