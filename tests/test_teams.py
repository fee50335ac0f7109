"""`type: team`: the shipped team examples offline, each strategy's rules, and what validate says about bad teams."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Runs
from agentfsm.spec.loader import validate_file

ROOT = Path(__file__).resolve().parent.parent
TEAMS = ROOT / "machines" / "teams"

EXPECTED = {
    "parallel_math.yaml": {"sum": 55, "product": 120, "max": 42},
    "sequential.yaml": "Final: state machines are graphs of states and transitions; each step is explicit.",
    "hierarchical_research.yaml": {
        "report": "Report: the sources and the trade-offs agree.",
        "sources": {"searcher": "three papers on durable agent workflows",
                    "analyst": "speed against durability for durable agent workflows"}},
    "competitive_judged.yaml": {"winner": "bold", "slogan": "Agents you can rewind."},
    "group_chat.yaml": {"approved": True, "conversation": [
        {"from": "writer", "text": "Durable agents keep going."},
        {"from": "critic", "text": "Too vague: add an example."},
        {"from": "writer", "text": "Durable agents keep going: a run killed mid-step resumes where it was."},
        {"from": "critic", "text": "DONE: approved."}]},
}


def run(path: Path | str, inputs: dict[str, Any] | None = None) -> Any:
    return asyncio.run(agentfsm.run(path, inputs))


def test_every_team_example_is_tested_here() -> None:
    shipped = {path.name for path in TEAMS.glob("*.yaml") if not path.name.endswith(".test.yaml")}  # not test files
    assert shipped == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_team_example_runs_offline_to_its_result(name: str) -> None:
    assert validate_file(TEAMS / name).ok
    result = run(TEAMS / name)
    assert result.status == "succeeded", result.error
    assert result.output == EXPECTED[name]


def test_the_parallel_example_keeps_each_agent_as_a_child_run_and_rolls_usage_up(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    done = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(TEAMS / "parallel_math.yaml"), "--store",
                           store, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["output"] == {"sum": 55, "product": 120, "max": 42}
    assert printed["usage"]["brain"]["calls"] == 3  # one LLM call per agent, added up in the parent

    async def read() -> None:
        async with Runs(store) as runs:
            children = await runs.list(parent=printed["run_id"])
            assert sorted(child.child_name or "" for child in children) == ["max", "product", "sum"]
            for child in children:
                assert [row.state for row in await runs.history(child.id)] == ["think", "compute", "done"]

    asyncio.run(read())


def team(folder: Path, body: str, *, extra: str = "") -> Path:
    path = folder / "team.yaml"
    path.write_text("agentfsm: 1\nname: t\n" + extra + "initial: go\nstates:\n  go:\n    type: team\n"
                    + textwrap.indent(textwrap.dedent(body), "    ")
                    + "    save: out\n    next: done\n  done: {type: final, output: \"{{ out }}\"}\n", encoding="utf-8")
    return path


def agent(output: str, *, fail: bool = False, extra_states: str = "") -> str:
    if fail:
        return "{initial: a, states: {a: {type: fail, error: '" + output + "'}}}"
    return "{initial: a, states: {a: {type: final, output: '" + output + "'}}}"


def test_parallel_collect_keeps_failures_as_errors_and_fail_fast_raises(tmp_path: Path) -> None:
    body = f"""\
        strategy: parallel
        on_failure: collect
        agents:
          good: {agent('fine')}
          bad: {agent('broke', fail=True)}
        """
    out = run(team(tmp_path, body)).output
    assert out["good"] == "fine"
    assert out["bad"]["error"]["type"] == "fail" and out["bad"]["error"]["message"] == "broke"
    result = run(team(tmp_path, body.replace("collect", "fail_fast")))
    assert result.status == "failed" and result.error["type"] == "child.fail"
    assert result.error["detail"]["child"] == "bad"


def test_hierarchical_deals_a_list_of_tasks_round_robin_and_refuses_an_unknown_worker(tmp_path: Path) -> None:
    supervisor = """\
        supervisor:
          inputs: {plan: PLAN}
          initial: which
          states:
            which: {type: choice, transitions: [{when: "phase == 'plan'", to: planned}, {to: synth}]}
            planned: {type: final, output: "{{ plan }}"}
            synth: {type: final, output: "{{ results }}"}
        agents:
          w1: {initial: a, states: {a: {type: final, output: "w1 did {{ task }}"}}}
          w2: {initial: a, states: {a: {type: final, output: "w2 did {{ task }}"}}}
        """
    body = "strategy: hierarchical\n" + textwrap.dedent(supervisor)
    out = run(team(tmp_path, body.replace("PLAN", "['t1', 't2', 't3']"))).output
    assert out == {"w1": "w1 did t1", "w2": "w2 did t2", "w1#2": "w1 did t3"}
    result = run(team(tmp_path, body.replace("PLAN", "{w1: a, w9: b}")))
    assert result.status == "failed" and result.error["type"] == "team.bad_plan"
    assert "'w9'" in result.error["message"]


def test_competitive_first_keeps_the_first_to_succeed_and_records_the_others_cancelled(tmp_path: Path) -> None:
    body = """\
        strategy: competitive
        agents:
          slow:
            initial: a
            states:
              a: {type: wait, event: never, timeout: 30s, transitions: [{event: timeout, to: b}]}
              b: {type: final, output: slow}
          quick: {initial: a, states: {a: {type: final, output: quick}}}
        """

    async def scenario() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            done = await runs.start(team(tmp_path, body))
            assert done.output == {"winner": "quick", "output": "quick", "candidates": {"quick": "quick"}}

    asyncio.run(scenario())


def test_competitive_best_picks_the_highest_score(tmp_path: Path) -> None:
    body = f"""\
        strategy: competitive
        winner: best
        score: "output | length"
        agents:
          short: {agent('hi')}
          long: {agent('hello there')}
        """
    assert run(team(tmp_path, body)).output["winner"] == "long"


BAD_TEAMS = [
    ("strategy: parallel\nagents: {}\n", "team-config", "at least one agent"),
    ("strategy: chaotic\nagents: {a: " + agent("x") + "}\n", "invalid-value", "chaotic"),
    ("strategy: hierarchical\nagents: {a: " + agent("x") + "}\n", "team-config", "needs a supervisor"),
    ("strategy: competitive\nwinner: best\nagents: {a: " + agent("x") + "}\n", "team-config", "score"),
    ("strategy: parallel\nagents: {a: {machine: nowhere.yaml}}\n", "nested-machine", "nowhere.yaml"),
]


@pytest.mark.parametrize("body,code,words", BAD_TEAMS, ids=[case[1] + "-" + str(i) for i, case in
                                                           enumerate(BAD_TEAMS)])
def test_a_bad_team_is_a_located_validate_error(tmp_path: Path, body: str, code: str, words: str) -> None:
    report = validate_file(team(tmp_path, body))
    assert not report.ok
    found = [p for p in report.errors if p.code == code]
    assert found and words in found[0].message, report.problems
    assert found[0].line >= 5  # inside the team state, not at the top of the file
