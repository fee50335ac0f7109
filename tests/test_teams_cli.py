"""Teams on the command line and in Python: `runs --tree`, `history PARENT`, the agents as they work, and the
mission's coordinator vocabulary."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import agentfsm
from agentfsm.observability.progress import progress_display
from agentfsm.seed import (
    AgentMessage,
    CoordinatedAgent,
    CoordinationStrategy,
    MessageBus,
    MultiAgentCoordinator,
    SharedMemory,
    State,
    StateContext,
    StateMachine,
)

ROOT = Path(__file__).resolve().parent.parent
PARALLEL_MATH = ROOT / "machines" / "teams" / "parallel_math.yaml"
HIERARCHICAL = ROOT / "machines" / "teams" / "hierarchical_research.yaml"


def agentfsm_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})


def test_runs_tree_shows_children_under_their_parent_and_history_names_them(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    ran = agentfsm_cli("run", HIERARCHICAL, "--store", store, "--json")
    assert ran.returncode == 0, ran.stderr
    # one line per agent step in a pipe, named by agent
    agent_lines = [line for line in ran.stderr.splitlines() if "[" in line and "-->" in line]
    assert {line.split("[")[1].split("]")[0] for line in agent_lines} == {
        "supervisor", "searcher", "analyst", "supervisor.synthesize"}
    run_id = json.loads(ran.stdout)["run_id"]
    tree = agentfsm_cli("runs", "--tree", "--store", store)
    assert tree.returncode == 0, tree.stderr
    rows = [line for line in tree.stdout.splitlines()[1:] if line.strip()]
    assert "research-team" in rows[0]
    names = [row.split()[1] for row in rows[1:]]
    assert names == ["supervisor", "searcher", "analyst", "supervisor.synthesize"]
    assert all("  supervisor" in row or "  searcher" in row or "  analyst" in row for row in rows[1:])
    as_json = json.loads(agentfsm_cli("runs", "--tree", "--json", "--store", store).stdout)
    assert [run["run_id"] for run in as_json] == [run_id]
    children = as_json[0]["children"]
    assert [child["child_name"] for child in children] == names
    assert all(child["parent_run"] == run_id and child["status"] == "succeeded" for child in children)
    history = agentfsm_cli("history", run_id, "--store", store)
    first = next(line for line in history.stdout.splitlines() if line.lstrip().startswith("1 "))
    for child in children:
        assert child["run_id"] in first
    steps = json.loads(agentfsm_cli("history", run_id, "--json", "--store", store).stdout)
    assert [c["run_id"] for c in steps[0]["children"]] == [c["run_id"] for c in children]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_a_live_table_of_agents(monkeypatch: Any) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    frames: list[str] = []
    observers = progress_display(terminal, stream_replies=False)
    live = next(o for o in observers if type(o).__name__ == "LiveLine")

    class Peek:
        def on_child_ended(self, *, event: Any) -> None:
            frames.append(live.text())

    result = asyncio.run(agentfsm.run(PARALLEL_MATH, observers=[*observers, Peek()]))
    assert result.status == "succeeded"
    table = frames[-1].splitlines()
    assert table[1].split() == ["agent", "state", "steps", "status"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows["sum"] == ["done", "3", "succeeded"] and set(rows) == {"sum", "product", "max"}
    assert terminal.getvalue().endswith("\x1b[?25h")  # the table is cleared at the end, the cursor back


class Echo(State):
    """Answers its task, after telling the agent named in `tell` about it."""

    async def execute(self, context: StateContext) -> None:
        context.set("answer", f"{context.get('task')}!")


def echo(name: str) -> StateMachine:
    machine = StateMachine(name)
    machine.add_state(Echo("answer"), initial=True)
    machine.add_state(State("done"), final=True)
    machine.add_transition("answer", "done")
    return machine


def test_the_coordinator_runs_agents_as_child_runs_under_each_strategy() -> None:
    for strategy, expected in [
        (CoordinationStrategy.SEQUENTIAL, {"a": "x!", "b": "y!"}),
        (CoordinationStrategy.PARALLEL, {"a": "x!", "b": "y!"}),
        (CoordinationStrategy.HIERARCHICAL, {"a": "task!", "b": "y!"}),
    ]:
        coordinator = MultiAgentCoordinator(strategy=strategy)
        coordinator.add_agent(CoordinatedAgent("a", echo("a"), output="answer"))
        coordinator.add_agent(CoordinatedAgent("b", echo("b"), output="answer"))
        allocation = {"b": "y"} if strategy is CoordinationStrategy.HIERARCHICAL else {"a": "x", "b": "y"}
        assert asyncio.run(coordinator.execute_task("task", allocation)) == expected, strategy
        status = coordinator.get_status()
        assert status["agents"]["a"]["status"] == "succeeded" and status["agents"]["a"]["steps"] == 2
        assert status["running"] is False
    coordinator = MultiAgentCoordinator(strategy=CoordinationStrategy.COMPETITIVE)
    coordinator.add_agent(CoordinatedAgent("fast", echo("fast"), output="answer"))
    assert asyncio.run(coordinator.execute_task("go")) == {"fast": "go!"}
    # a YAML machine is an agent too
    coordinator = MultiAgentCoordinator(strategy=CoordinationStrategy.PARALLEL)
    calculator = ROOT / "machines" / "teams" / "agents" / "calculator_agent.yaml"
    coordinator.add_agent(CoordinatedAgent("sum", calculator))
    coordinator.add_agent(CoordinatedAgent("max", calculator))
    out = asyncio.run(coordinator.execute_task("", {"sum": "the sum of 1 to 10", "max": "the maximum of [3, 9]"}))
    assert out == {"sum": 55, "max": 9}


def test_message_bus_and_shared_memory_in_the_missions_words() -> None:
    async def scenario() -> None:
        bus = MessageBus()
        for agent in ("a", "b", "c"):
            bus.register_agent(agent)
        bus.subscribe("c", "alerts")
        await bus.send_message(AgentMessage("a", None, "news", {"n": 1}))  # broadcast: b and c
        await bus.send_message(AgentMessage("a", "c", "alerts", "fire"))
        got = await bus.receive_message("b", timeout=1)
        assert got is not None and (got.from_agent, got.message_type, got.content) == ("a", "news", {"n": 1})
        alert = await bus.receive_message("c", timeout=1)
        assert alert is not None and alert.content == "fire"  # c follows alerts only
        assert await bus.receive_message("b", timeout=0.05) is None
        memory = SharedMemory()
        assert await memory.set("plan", "v1", "a")
        assert await memory.acquire_lock("plan", "a", ttl=0.1)
        assert not await memory.set("plan", "v2", "b")  # locked by a
        resource = memory.resource("plan")
        assert resource is not None and (resource.owner, resource.locked, resource.version) == ("a", True, 1)
        await asyncio.sleep(0.15)  # the lock expired
        assert await memory.set("plan", "v2", "b", expect_version=1)
        assert not await memory.set("plan", "v3", "a", expect_version=1)  # the version moved on
        assert await memory.get("plan") == "v2"

    asyncio.run(scenario())


def test_diagrams_draw_nested_machines_branches_and_agents_as_composite_states() -> None:
    from agentfsm.observability.diagram import mermaid_from_spec
    from agentfsm.spec.loader import load_spec
    from tests.mermaid import parse_mermaid_many

    paths = sorted((ROOT / "machines" / "teams").glob("*.yaml"))
    paths = [p for p in paths if not p.name.endswith(".test.yaml")]
    paths.append(ROOT / "tests" / "machines" / "composition" / "crash_team.yaml")
    texts = [mermaid_from_spec(load_spec(path).spec) for path in paths]
    parsed = dict(zip([p.name for p in paths], parse_mermaid_many(texts), strict=True))
    assert all(result["ok"] for result in parsed.values()), parsed
    chat = parsed["group_chat.yaml"]
    names = {sid: label.split("\n")[0] for sid, label in chat["states"].items()}  # below the name: `llm: brain`
    labels = set(names.values())
    assert {"chat (team, collaborative)", "writer", "critic", "draft", "review", "approve"} <= labels
    inside = {state for state, parent in chat["parents"].items()}
    assert any(names.get(state) == "draft" for state in inside)  # the agents' states are inside the team
    math = texts[[p.name for p in paths].index("parallel_math.yaml")]
    assert [line.strip() for line in math.splitlines()].count("--") == 2  # three agents side by side
    crash = parsed["crash_team.yaml"]
    assert {"a: worker.yaml", "e: worker.yaml"} <= set(crash["states"].values())  # branches from files
