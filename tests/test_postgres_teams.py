"""Teams and child runs on a PostgreSQL store: what tests/test_teams.py, test_team_space.py, test_composition.py
and test_children_crash.py show on SQLite holds on the server too (the session's one cluster, a schema per test).

Every team example (each strategy; the bus and the shared memory where they use them), contention on one memory
key, a child waiting for an event sent to its parent, a machine nested in a machine, and a team whose process is
killed with SIGKILL mid-run, resumed without rerunning a finished agent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentfsm import Runs
from agentfsm.store.copy import dump_run
from tests import children_crash
from tests.postgres import Cluster
from tests.test_teams import EXPECTED, TEAMS

ROOT = Path(__file__).resolve().parent.parent
COUNTER_TEAM = ROOT / "tests" / "machines" / "composition" / "counter_team.yaml"
NESTED = ROOT / "tests" / "machines" / "nested_twice.yaml"
WAITING_CHILD = """\
agentfsm: 1
name: asks
initial: start
states:
  start:
    type: machine
    initial: ask
    states:
      ask: {type: wait, event: approve, save: said, next: end}
      end: {type: final, output: "approved by {{ said.who }}"}
    save: verdict
    next: done
  done: {type: final, output: "{{ verdict }}"}
"""

AGENTS = {  # each example's agents, and how each child run ends
    "parallel_math.yaml": {"sum": "succeeded", "product": "succeeded", "max": "succeeded"},
    "sequential.yaml": None,
    "hierarchical_research.yaml": None,
    "competitive_judged.yaml": None,
    "group_chat.yaml": {"critic": "cancelled", "writer": "cancelled"},
}


def test_every_team_example_and_a_contended_memory_key_on_postgresql(postgres_server: Cluster) -> None:
    async def scenario() -> None:
        async with Runs(postgres_server.fresh_url()) as runs:
            for name, output in EXPECTED.items():
                done = await runs.start(TEAMS / name)
                assert (done.status, done.output) == ("succeeded", output), (name, done.error)
                children = await runs.list(parent=done.run_id)
                assert children and all(child.status in ("succeeded", "cancelled") for child in children), name
                if AGENTS[name] is not None:
                    assert {child.child_name: child.status for child in children} == AGENTS[name], name
                if name == "group_chat.yaml":  # the bus and the memory are rows of the server
                    kept = await dump_run(runs.store, done.run_id)
                    senders = sorted(m["sender"] for m in kept["team_messages"])
                    assert senders == ["critic", "writer", "writer"], kept["team_messages"]
                    memory = {row["key"]: row["value"] for row in kept["team_memory"]}
                    assert memory["approved"] is True and len(memory["conversation"]) == 4
            counted = await runs.start(COUNTER_TEAM)  # twenty agents cas one key: every increment lands once
            assert counted.output == 20
            agents = await runs.list(parent=counted.run_id)
            assert sorted(child.output for child in agents) == list(range(1, 21))

    asyncio.run(scenario())


def test_nested_machines_and_a_waiting_child_on_postgresql(postgres_server: Cluster, tmp_path: Path) -> None:
    asks = tmp_path / "asks.yaml"
    asks.write_text(WAITING_CHILD, encoding="utf-8")

    async def scenario() -> None:
        async with Runs(postgres_server.fresh_url()) as runs:
            done = await runs.start(NESTED, {"word": "down"})
            assert done.output == "DOWN!"
            [outer] = await runs.list(parent=done.run_id)
            [inner] = await runs.list(parent=outer.id)
            assert (outer.child_name, inner.child_name, inner.output) == ("outer", "inner", "DOWN")
            assert [row.state for row in await runs.history(inner.id)] == ["shout", "end"]
            first = await runs.start(asks)
            assert first.status == "waiting"
            [child] = await runs.list(parent=first.run_id)
            assert child.status == "waiting"
            answered = await runs.send(first.run_id, "approve", {"who": "ada"})
            assert answered is not None and answered.output == "approved by ada"
            assert (await runs.get(child.id)).status == "succeeded"

    asyncio.run(scenario())


def test_a_team_killed_mid_run_resumes_on_postgresql_without_rerunning_finished_agents(
        postgres_server: Cluster, tmp_path: Path) -> None:
    # Killed when some of the five agents (0.05 s to 0.3 s a step, three steps) have finished and some have not:
    # only then does "finished agents are not run again" check anything. A loaded machine may shift the moment,
    # so up to three kill moments are tried; run_point checks every one of them.
    points = [children_crash.Point(index, delay) for index, delay in enumerate((0.35, 0.5, 0.25))]
    for point in points:
        outcome = children_crash.run_point(point, tmp_path, postgres_server.fresh_url())
        if outcome == children_crash.harness.MID_RUN and 0 < point.finished_at_kill < len(children_crash.AGENTS):
            break
    assert any(0 < point.finished_at_kill < len(children_crash.AGENTS) for point in points), \
        [(point.delay, point.finished_at_kill) for point in points]
