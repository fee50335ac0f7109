"""Every kind of entry issue 11 asks the trace to keep, each with its time, step, branch and run id: a team's
messages and memory writes (in the agent's trace and in the team run's, filed under the team's step), child runs
started and ended, retries, and transitions with the index and guard of the rule that matched."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

from agentfsm.service.runs import Runs

MACHINES = Path(__file__).resolve().parent.parent / "machines"
COMMON = ("seq", "run_id", "branch", "step", "at", "kind")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def of_kind(entries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["kind"] == kind]


def test_a_team_traces_its_messages_and_memory_writes_in_each_agent_and_in_the_team(runs: Runs) -> None:
    result = run(runs.start(MACHINES / "teams" / "group_chat.yaml"))
    assert result.status == "succeeded", result.error
    agents = {child.child_name: child.id for child in run(runs.list(parent=result.run_id))}
    team = run(runs.trace(result.run_id))
    writer = run(runs.trace(agents["writer"]))
    for entries in (team, writer):
        assert all(all(key in entry for key in COMMON) for entry in entries)

    sent = of_kind(writer, "message_sent")
    assert sent and sent[0]["sender"] == "writer" and sent[0]["recipient"] == "critic"
    assert sent[0]["topic"] == "draft" and sent[0]["data"] == "Durable agents keep going."
    written = of_kind(writer, "memory_write")
    assert written[0]["op"] == "cas" and written[0]["key"] == "conversation" and written[0]["version"] >= 1
    assert written[0]["value"][-1] == {"from": "writer", "text": "Durable agents keep going."}
    received = of_kind(writer, "message_received")
    assert received[0]["sender"] == "critic" and received[0]["agent"] == "writer"
    # the agent's own entries sit under its own steps, between that step's entered and exited entries
    entered = {entry["step"]: entry["state"] for entry in of_kind(writer, "state_entered")}
    assert entered[sent[0]["step"]] == "tell" and entered[written[0]["step"]] == "post"

    # the team run keeps every agent's bus and memory events, under its own step (the team state's)
    team_step = next(entry["step"] for entry in of_kind(team, "state_entered") if entry["state"] == "chat")
    passed_up = [entry for entry in team if entry["kind"] in ("message_sent", "message_received", "memory_write")]
    assert {entry["from_run"] for entry in passed_up} == set(agents.values())
    assert {entry["step"] for entry in passed_up} == {team_step}
    assert {entry["run_id"] for entry in passed_up} == {result.run_id}
    assert [entry["message_id"] for entry in of_kind(team, "message_sent")] == [1, 2, 3]
    started = of_kind(team, "child_started")
    assert {(entry["child"], entry["child_run"]) for entry in started} == set(agents.items())
    assert [entry["seq"] for entry in team] == list(range(1, len(team) + 1))


def test_child_runs_end_in_the_parents_trace(runs: Runs) -> None:
    result = run(runs.start(MACHINES / "teams" / "sequential.yaml"))
    assert result.status == "succeeded", result.error
    ended = of_kind(run(runs.trace(result.run_id)), "child_ended")
    assert [entry["child"] for entry in ended] == ["researcher", "writer", "editor"]
    assert {entry["status"] for entry in ended} == {"succeeded"} and all(entry["error"] is None for entry in ended)


def test_retries_and_the_rule_that_matched_are_traced(runs: Runs, tmp_path: Path) -> None:
    machine = tmp_path / "retrying.yaml"
    machine.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: retrying
        context: {n: 0}
        tools:
          calc: {builtin: calculator}
        initial: count
        states:
          count: {type: set, set: {n: "{{ n + 1 }}"}, next: route}
          route:
            type: choice
            transitions:
              - {when: "n < 2", to: count}
              - {to: compute}
          compute:
            type: tool
            tool: calc
            args: {expression: "1 / 0"}
            retry: {errors: [tool.error], interval: 0.01s, max_attempts: 2}
            catch: [{errors: ["*"], to: done}]
            next: done
          done: {type: final}
        """), encoding="utf-8")
    result = run(runs.start(machine))
    entries = run(runs.trace(result.run_id))
    routes = [(entry["target"], entry["rule"], entry["label"]) for entry in of_kind(entries, "transition")
              if entry["source"] == "route"]
    assert routes == [("count", 0, "[n < 2]"), ("compute", 1, "")]
    retries = of_kind(entries, "retry")
    assert [(entry["attempt"], entry["delay"]) for entry in retries] == [(1, 0.01), (2, 0.02)]
    assert all(entry["error"]["type"] == "tool.error" and entry["state"] == "compute" for entry in retries)
    assert len(of_kind(entries, "tool_call")) == 3
    assert of_kind(entries, "error")[0]["caught_by"] == "done"


def test_a_waits_timer_running_out_is_a_delivered_event(runs: Runs, tmp_path: Path) -> None:
    machine = tmp_path / "delay.yaml"
    machine.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: delay
        initial: pause
        states:
          pause:
            type: wait
            timeout: 0.01s
            transitions: [{event: timeout, to: done}]
          done: {type: final}
        """), encoding="utf-8")
    result = run(runs.start(machine))
    assert result.status == "succeeded", result.error
    entries = run(runs.trace(result.run_id))
    delivered = of_kind(entries, "event_delivered")
    assert [(entry["event"], entry["data"], entry["step"]) for entry in delivered] == [("timeout", None, 1)]
    transition = of_kind(entries, "transition")[0]
    assert (transition["source"], transition["target"], transition["event"]) == ("pause", "done", "timeout")
