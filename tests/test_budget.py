"""Budgets (`budget:` on a machine and on a team state): the LLM call after a limit is reached fails with
`limit.budget`, which a catch routes like any error; uncaught, it fails the run with a clear message; a resumed
run counts what it spent before from its store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentfsm import Runs

LOOP = """\
agentfsm: 1
name: budgeted
llms:
  brain: {provider: scripted, replies: ["one two three", "four five", "six", "seven"], PRICE}
budget: BUDGET
initial: think
states:
  think:
    type: llm
    llm: brain
    prompt: "go {{ run.step }}"
    save: last
    transitions:
      - {when: "run.step < 4", to: think}
      - {to: done}
    CATCH
  summary:
    type: final
    output: "cheap: {{ last }} ({{ why.type }})"
  done:
    type: final
    output: "{{ last }}"
"""


def loop_machine(tmp_path: Path, budget: str, *, catch: bool = True, price: str = "") -> Path:
    text = LOOP.replace("BUDGET", budget).replace(", PRICE", f", price: {price}" if price else "")
    text = text.replace("CATCH", "catch: [{errors: [limit.budget], to: summary, as: why}]" if catch else "")
    if not catch:
        text = text.replace('    output: "cheap: {{ last }} ({{ why.type }})"', '    output: "cheap"')
    path = tmp_path / "budgeted.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def start(path: Path, store: str) -> Any:
    async def go() -> Any:
        async with Runs(store) as runs:
            return await runs.start(path)
    return asyncio.run(go())


@pytest.mark.parametrize(("budget", "price", "calls"), [
    ("{llm_calls: 2}", "", 2),
    # scripted replies count words: 2 + 3, then 2 + 2 tokens
    ("{tokens: 9}", "", 2),
    ("{tokens: 6}", "", 2),
    # $1000 and $2000 per million tokens: the first call costs 2*1000e-6 + 3*2000e-6 = $0.008
    ("{cost: 0.01}", "{input: 1000, output: 2000}", 2),
    ("{cost: 0.005}", "{input: 1000, output: 2000}", 1),
])
def test_a_caught_budget_routes_to_the_cheaper_path(tmp_path: Path, budget: str, price: str, calls: int) -> None:
    result = start(loop_machine(tmp_path, budget, price=price), str(tmp_path / "runs.db"))
    assert result.status == "succeeded"
    assert result.output == f"cheap: {['one two three', 'four five'][calls - 1]} (limit.budget)"
    assert result.usage["brain"]["calls"] == calls


def test_without_a_budget_the_loop_runs_its_course(tmp_path: Path) -> None:
    path = loop_machine(tmp_path, "{llm_calls: 10}")
    result = start(path, str(tmp_path / "runs.db"))
    assert result.output == "seven" and result.usage["brain"]["calls"] == 4


def test_an_uncaught_budget_fails_the_run_with_a_clear_message(tmp_path: Path) -> None:
    path = loop_machine(tmp_path, "{llm_calls: 2}", catch=False)
    completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "--store",
                                str(tmp_path / "runs.db")], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1, completed.stderr
    assert ("error: state 'think': limit.budget: the budget of machine 'budgeted' is spent (2 llm_calls of 2)"
            in completed.stderr)
    assert "Traceback" not in completed.stderr


def test_a_budget_holds_across_a_resume(tmp_path: Path) -> None:
    """Two calls, a durable wait, then a new process resumes: the third call is refused, since the two before
    count (from the store) against the budget of two."""
    path = tmp_path / "paused.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: paused
        llms:
          brain: {provider: scripted, replies: ["a", "b", "c"]}
        budget: {llm_calls: 2}
        initial: first
        states:
          first: {type: llm, llm: brain, prompt: one, save: x, next: second}
          second: {type: llm, llm: brain, prompt: two, save: x, next: hold}
          hold:
            type: wait
            event: go
            transitions: [{event: go, to: third}]
          third:
            type: llm
            llm: brain
            prompt: three
            save: x
            catch: [{errors: [limit.budget], to: over, as: why}]
            next: done
          over: {type: final, output: "over: {{ why.detail.used }} of {{ why.detail.allowed }}"}
          done: {type: final, output: "{{ x }}"}
        """), encoding="utf-8")
    store = str(tmp_path / "runs.db")
    waiting = start(path, store)
    assert waiting.status == "waiting"

    async def resume() -> Any:
        async with Runs(store) as runs:  # a fresh process would see only the store
            return await runs.send(waiting.run_id, "go")
    result = asyncio.run(resume())
    assert result.status == "succeeded" and result.output == "over: 2 of 2"


TEAM = """\
agentfsm: 1
name: team-budget
llms:
  brain: {provider: scripted, replies: ["alpha"]}
initial: team
states:
  team:
    type: team
    strategy: sequential
    budget: {llm_calls: 2}
    agents:
      a: {initial: s, states: {s: {type: llm, llm: brain, prompt: a, save: x, next: e}, e: {type: final, output: "{{ x }}"}}}
      b: {initial: s, states: {s: {type: llm, llm: brain, prompt: b, save: x, next: e}, e: {type: final, output: "{{ x }}"}}}
      c: {initial: s, states: {s: {type: llm, llm: brain, prompt: c, save: x, next: e}, e: {type: final, output: "{{ x }}"}}}
    save: work
    catch: [{errors: [limit.budget], to: partial, as: why}]
    next: done
  partial: {type: final, output: "{{ why.message }}"}
  done: {type: final, output: "{{ work }}"}
"""


@pytest.mark.parametrize("limit", [2, 3])
def test_a_team_budget_covers_its_agents_together(tmp_path: Path, limit: int) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(TEAM.replace("llm_calls: 2", f"llm_calls: {limit}"), encoding="utf-8")
    result = start(path, str(tmp_path / "runs.db"))
    assert result.status == "succeeded"
    if limit == 3:
        assert result.output == {"a": "alpha", "b": "alpha", "c": "alpha"}  # each agent has its own script
    else:
        assert result.output == "'c' failed: the budget of team state 'team' is spent (2 llm_calls of 2)"
        assert result.usage["brain"]["calls"] == 2


def test_a_team_budget_holds_across_a_resume(tmp_path: Path) -> None:
    """Agent a calls once and ends; b calls once and waits; after the resume (a new Runs over the store) b calls
    again: three calls, the budget. Then c's call is refused: a's (read back, not run again) and b's first call
    count."""
    path = tmp_path / "team.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: team-resume
        llms:
          brain: {provider: scripted, replies: ["alpha", "beta"]}
        initial: team
        states:
          team:
            type: team
            strategy: sequential
            budget: {llm_calls: 3}
            agents:
              a: {initial: s, states: {s: {type: llm, llm: brain, prompt: a, save: x, next: e}, e: {type: final}}}
              b:
                initial: s
                states:
                  s: {type: llm, llm: brain, prompt: b, save: x, next: hold}
                  hold: {type: wait, event: go, transitions: [{event: go, to: t}]}
                  t: {type: llm, llm: brain, prompt: b2, save: x, next: e}
                  e: {type: final}
              c: {initial: s, states: {s: {type: llm, llm: brain, prompt: c, save: x, next: e}, e: {type: final}}}
            save: work
            catch: [{errors: [limit.budget], to: partial, as: why}]
            next: done
          partial: {type: final, output: "{{ why.message }}"}
          done: {type: final, output: "all three"}
        """), encoding="utf-8")
    store = str(tmp_path / "runs.db")
    waiting = start(path, store)
    assert waiting.status == "waiting"

    async def resume() -> Any:
        async with Runs(store) as runs:
            return await runs.send(waiting.run_id, "go")
    result = asyncio.run(resume())
    assert result.status == "succeeded"
    assert result.output == "'c' failed: the budget of team state 'team' is spent (3 llm_calls of 3)"


@pytest.mark.parametrize(("price", "warned"), [("", True), ("{input: 1, output: 2}", False)])
def test_a_cost_budget_warns_of_calls_it_cannot_price(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                     price: str, warned: bool) -> None:
    from agentfsm.service.machines import load_machine

    with caplog.at_level("WARNING", logger="agentfsm"):
        load_machine(loop_machine(tmp_path, "{cost: 1.0}", price=price))
    said = [record.getMessage() for record in caplog.records if "has no price" in record.getMessage()]
    assert said == (["budget.cost of machine 'budgeted': LLM binding 'brain' (model scripted) has no price, so its "
                     "calls count as free; give it `price: {input: USD, output: USD}` or add the model to a price "
                     "file"] if warned else [])
