"""`StateMonitor` (the mission's vocabulary): live status and run-aware diagrams of registered machines, fed by the
same event stream the CLI watches; every diagram read back by the real Mermaid parser."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Runs, State, StateMachine, StateMonitor
from tests.mermaid import parse_mermaid_many

ROOT = Path(__file__).resolve().parent.parent


def python_machine() -> StateMachine:
    machine = StateMachine("counter")
    machine.add_state(State("start"), initial=True)
    machine.add_state(State("done: yes"), final=True)
    machine.add_transition("start", "done: yes")
    return machine


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A monitor watching an approval machine (one run in memory, one recorded) and a machine built in Python."""
    monitor = StateMonitor()
    approval = agentfsm.load_machine(ROOT / "machines" / "approval.yaml")
    counter = python_machine()
    monitor.register_machine("approval", approval)
    monitor.register_machine("counter", counter)
    found: dict[str, Any] = {"before": monitor.get_status("approval"), "plain": monitor.get_diagram("approval")}

    async def go() -> None:
        await counter.run()
        waiting = await approval.run({"topic": "monitors"})
        found["waiting"] = (waiting.run_id, monitor.get_status("approval"), monitor.get_diagram("approval"))
        async with Runs(f"sqlite:///{tmp_path_factory.mktemp('monitor') / 'runs.db'}") as runs:
            started = await runs.start(approval, {"topic": "stores"})
            await runs.send(started.run_id, "rejected", {"comment": "shorter"}, machine=approval)
            await runs.send(started.run_id, "approved", {"by": "ada"}, machine=approval)
            found["recorded"] = (started.run_id, monitor.get_status("approval"), monitor.get_diagram("approval"))

    asyncio.run(go())
    found["earlier"] = monitor.get_diagram("approval", run_id=found["waiting"][0])
    found["counter"] = monitor.get_diagram("counter")
    found["all"] = monitor.get_all_status()
    found["dot"] = monitor.get_diagram("approval", "dot")
    texts = {name: found[name] if isinstance(found[name], str) else found[name][2]
             for name in ("plain", "waiting", "recorded", "earlier", "counter")}
    found["parsed"] = dict(zip(texts, parse_mermaid_many(list(texts.values())), strict=True))
    found["monitor"] = monitor
    return found


def arrows(result: dict[str, Any]) -> dict[tuple[str, str], str]:
    names = {sid: label.split("\n")[0] for sid, label in result["states"].items()}
    return {(names.get(t["from"], t["from"]), names.get(t["to"], t["to"])): t["label"] for t in result["transitions"]}


def marks(result: dict[str, Any]) -> dict[str, list[str]]:
    return {result["states"][sid].split("\n")[0]: found for sid, found in result["classes"].items()}


def test_every_monitor_diagram_parses(watched: dict[str, Any]) -> None:
    for name, result in watched["parsed"].items():
        assert result["ok"], (name, result.get("error"))


def test_status_follows_a_run_in_memory_to_its_wait(watched: dict[str, Any]) -> None:
    assert watched["before"]["status"] == "idle" and watched["before"]["run_id"] is None
    run_id, status, _ = watched["waiting"]
    assert status["run_id"] == run_id and status["name"] == "approval"
    assert (status["status"], status["current_state"], status["running"]) == ("waiting", "review", False)
    assert status["visits"] == {"draft": 1, "review": 1} and status["history_length"] == 1
    assert status["event_count"] > 3 and status["context_size"] >= 3
    parsed = watched["parsed"]["waiting"]
    assert arrows(parsed)[("draft", "review")] == "done (1x)"
    assert marks(parsed)["review"] == ["waiting"] and marks(parsed)["published"] == ["unvisited"]


def test_a_recorded_run_of_the_same_machine_reports_too(watched: dict[str, Any]) -> None:
    run_id, status, _ = watched["recorded"]
    assert status["run_id"] == run_id and status["runs"] == 2
    assert (status["status"], status["current_state"]) == ("succeeded", "published")
    assert status["visits"] == {"draft": 1, "review": 2, "revise": 1, "published": 1}
    found = arrows(watched["parsed"]["recorded"])
    assert found[("review", "revise")] == "rejected (1x)" and found[("review", "published")] == "approved (1x)"
    assert found[("review", "escalate")] == "timeout"
    assert marks(watched["parsed"]["recorded"])["published"] == ["ended"]
    assert "approved (1x)" in watched["dot"]


def test_an_earlier_run_and_a_machine_built_in_python_are_drawn(watched: dict[str, Any]) -> None:
    assert marks(watched["parsed"]["earlier"])["review"] == ["waiting"]
    assert not any("(1x)" in label for label in arrows(watched["parsed"]["plain"]).values())
    counter = watched["parsed"]["counter"]
    assert arrows(counter)[("start", "done: yes")] == "done (1x)"
    assert marks(counter)["done: yes"] == ["ended"] and marks(counter)["start"] == ["visited"]


def test_all_statuses_and_unknown_ids(watched: dict[str, Any]) -> None:
    monitor: StateMonitor = watched["monitor"]
    assert [status["machine_id"] for status in watched["all"]] == ["approval", "counter"]
    assert watched["all"][1]["status"] == "succeeded" and watched["all"][1]["current_state"] == "done: yes"
    assert monitor.get_status("nope") == {"machine_id": "nope", "error": "machine not registered"}
    assert monitor.get_diagram("nope") == ""
    with pytest.raises(KeyError, match="no run 'x'"):
        monitor.get_diagram("approval", run_id="x")
    machine = monitor.active_machines["counter"]
    monitor.unregister_machine("counter")
    assert machine.observers == [] and [s["machine_id"] for s in monitor.get_all_status()] == ["approval"]
