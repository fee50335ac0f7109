"""`type: wait` in memory: a run suspends at the wait, and continues when an event is delivered or the timer ran out.

Everything goes through `agentfsm.load_machine` and `machine.run(...)`, the way a Python
caller (or the store's driver) resumes a run: deliver into `result.context.mailbox`, then
run the same context again.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm.observability.diagram import graph_from_machine
from agentfsm.runtime.loop import RunResult
from agentfsm.service.views import result_json
from agentfsm.runtime.model import StateType
from agentfsm.spec.problems import MachineFileError

ROOT = Path(__file__).resolve().parent.parent
APPROVAL = ROOT / "machines" / "approval.yaml"

DECISION = """\
    agentfsm: 1
    name: decision
    context: {entered: 0}
    initial: prepare
    states:
      prepare:
        type: set
        set: {draft: ready}
        next: approve
      approve:
        type: wait
        event: [approved, rejected]
        save: decision
        on_enter:
          - set: {entered: "{{ entered + 1 }}"}
        transitions:
          - {event: approved, when: "event.data.x > 3", to: big}
          - {event: approved, to: small}
          - {event: rejected, to: no}
      big:
        type: final
        output: {size: big, x: "{{ event.data.x }}"}
      small:
        type: final
        output: {size: small}
      no:
        type: fail
        error: "rejected: {{ decision.reason }}"
"""

TIMED = """\
    agentfsm: 1
    name: timed
    initial: approve
    states:
      approve:
        type: wait
        event: approved
        timeout: 0.05
        transitions:
          - {event: approved, to: accepted}
          - {event: timeout, to: escalated}
      accepted: {type: final, output: accepted}
      escalated: {type: final, output: escalated}
"""

LOOPING = """\
    agentfsm: 1
    name: looping
    context: {rounds: 0}
    initial: approve
    states:
      approve:
        type: wait
        event: [approved, rejected]
        max_visits: 2
        transitions:
          - {event: approved, to: done}
          - {event: rejected, to: again}
      again:
        type: set
        set: {rounds: "{{ rounds + 1 }}"}
        next: approve
      done: {type: final, output: "{{ rounds }}"}
"""


def load(text: str, tmp_path: Path, name: str = "machine.yaml") -> agentfsm.StateMachine:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return agentfsm.load_machine(path)


def resume(machine: agentfsm.StateMachine, result: RunResult, *events: tuple[str, Any]) -> RunResult:
    """Deliver `events` (name, data) to a suspended run and run its context again."""
    for name, data in events:
        result.context.mailbox.deliver(name, data)
    return asyncio.run(machine.run(context=result.context))


def start(machine: agentfsm.StateMachine, inputs: dict[str, Any] | None = None) -> RunResult:
    return asyncio.run(machine.run(inputs))


def visited(result: RunResult) -> list[str]:
    """The states the run entered, in order: each transition's source, then the state a finished run ended in
    (its last step takes no transition)."""
    path = [record.from_state for record in result.context.history]
    return path + [result.context.state] if result.status in ("succeeded", "failed") else path


# -- suspending and resuming ---------------------------------------------------------------------


def test_a_run_reaching_a_wait_stops_waiting_without_counting_the_wait(tmp_path: Path) -> None:
    result = start(load(DECISION, tmp_path))
    assert result.status == "waiting"
    assert result.waiting == {"state": "approve", "events": ["approved", "rejected"], "deadline": None}
    assert result.steps == 1  # `prepare` only: the wait's step did not happen
    assert result.output is None and result.error is None
    assert visited(result) == ["prepare"]
    assert result_json(result)["waiting"] == result.waiting


def test_delivering_an_event_continues_saves_its_data_and_guards_read_it(tmp_path: Path) -> None:
    machine = load(DECISION, tmp_path)
    result = resume(machine, start(machine), ("approved", {"x": 5}))
    assert result.status == "succeeded", result.error
    assert result.output == {"size": "big", "x": 5}
    assert result.context.data["decision"] == {"x": 5}
    assert result.steps == 3
    assert visited(result) == ["prepare", "approve", "big"]
    assert result.context.history[1].trigger == "approved"
    assert result.waiting is None

    small = resume(machine, start(machine), ("approved", {"x": 1}))
    assert small.output == {"size": "small"}
    rejected = resume(machine, start(machine), ("rejected", {"reason": "too long"}))
    assert rejected.status == "failed"
    assert rejected.error is not None and rejected.error["message"] == "rejected: too long"


def test_an_event_the_wait_does_not_list_is_not_taken(tmp_path: Path) -> None:
    machine = load(DECISION, tmp_path)
    result = resume(machine, start(machine), ("cancelled", {"why": "none"}))
    assert result.status == "waiting"
    assert result.steps == 1
    assert [d.name for d in result.context.mailbox.deliveries] == ["cancelled"]
    # the listed event, delivered later, is taken; what else was sent to that visit of the wait goes with it
    result = resume(machine, result, ("approved", {"x": 9}))
    assert result.output == {"size": "big", "x": 9}
    assert result.context.mailbox.deliveries == []


def test_the_oldest_listed_event_is_taken_and_the_rest_dropped(tmp_path: Path) -> None:
    machine = load(DECISION, tmp_path)
    result = resume(machine, start(machine), ("rejected", {"reason": "first"}), ("approved", {"x": 5}))
    assert result.status == "failed"
    assert result.context.mailbox.deliveries == []  # `approved` was about the same visit: no later wait acts on it


def test_the_timer_runs_out_while_the_run_is_suspended(tmp_path: Path) -> None:
    machine = load(TIMED, tmp_path)

    async def scenario() -> tuple[RunResult, RunResult, RunResult, float]:
        before = time.time()
        first = await machine.run()
        again = await machine.run(context=first.context)  # not due yet: waits again, on the same timer
        await asyncio.sleep(0.1)
        last = await machine.run(context=again.context)
        return first, again, last, before

    first, again, last, before = asyncio.run(scenario())
    assert first.status == "waiting" and first.steps == 0
    assert first.waiting is not None
    deadline = first.waiting["deadline"]
    assert before + 0.05 <= deadline <= time.time() + 0.05
    assert again.status == "waiting" and again.waiting == first.waiting
    assert last.status == "succeeded", last.error
    assert last.output == "escalated"
    assert last.context.history[-1].trigger == "timeout"
    assert last.steps == 2


def test_an_event_delivered_before_resuming_wins_over_a_due_timer(tmp_path: Path) -> None:
    machine = load(TIMED, tmp_path)

    async def scenario() -> RunResult:
        result = await machine.run()
        await asyncio.sleep(0.1)  # the timer is due, but the event arrived before the run resumed
        result.context.mailbox.deliver("approved", {"by": "ada"})
        return await machine.run(context=result.context)

    result = asyncio.run(scenario())
    assert result.status == "succeeded", result.error
    assert result.output == "accepted"


def test_a_day_long_timer_is_far_away(tmp_path: Path) -> None:
    result = start(load(TIMED.replace("timeout: 0.05", "timeout: 2d"), tmp_path))
    assert result.waiting is not None
    assert result.waiting["deadline"] == pytest.approx(time.time() + 2 * 86400, abs=60)


def test_on_enter_changes_are_undone_when_the_run_suspends(tmp_path: Path) -> None:
    machine = load(DECISION, tmp_path)
    result = start(machine)
    assert result.context.data == {"entered": 0, "draft": "ready"}
    result = resume(machine, result)  # nothing delivered: suspends again, still nothing entered
    assert result.context.data == {"entered": 0, "draft": "ready"}
    result = resume(machine, result, ("approved", {"x": 1}))
    assert result.context.data["entered"] == 1  # the one real visit


def test_max_visits_counts_real_visits_not_suspensions(tmp_path: Path) -> None:
    machine = load(LOOPING, tmp_path)
    result = start(machine)
    for _ in range(3):
        result = resume(machine, result)
        assert result.status == "waiting"
    assert result.context.visits.get("approve", 0) == 0
    result = resume(machine, result, ("rejected", None))
    assert result.status == "waiting"
    assert result.context.visits["approve"] == 1
    result = resume(machine, result, ("approved", None))
    assert result.status == "succeeded" and result.output == 1

    over = resume(machine, resume(machine, start(machine), ("rejected", None)), ("rejected", None))
    assert over.status == "failed"
    assert over.error is not None and over.error["type"] == "limit.max_visits"


def test_the_compiled_wait_keeps_its_timer_apart_from_execution_timeouts(tmp_path: Path) -> None:
    machine = load(TIMED, tmp_path)
    state = machine.states["approve"]
    assert state.state_type is StateType.WAITING
    assert state.timeout is None
    assert state.events == ("approved",)  # type: ignore[attr-defined]
    assert state.wait_timeout == 0.05  # type: ignore[attr-defined]


def test_next_on_a_wait_takes_any_listed_event_and_the_timer(tmp_path: Path) -> None:
    text = """\
        agentfsm: 1
        name: any
        initial: w
        states:
          w: {type: wait, event: [a, b], timeout: 1h, next: done}
          done: {type: final, output: "{{ event.name }}"}
    """
    machine = load(text, tmp_path)
    assert resume(machine, start(machine), ("b", None)).output == "b"
    labels = {(edge.source, edge.target, edge.label) for edge in graph_from_machine(machine).edges}
    assert ("w", "done", "a | b | timeout") in labels
    assert "w --> " in machine.visualize()


# -- the shipped example -------------------------------------------------------------------------


def test_approval_example_approved_at_once() -> None:
    machine = agentfsm.load_machine(APPROVAL)
    result = start(machine, {"topic": "the new API"})
    assert result.status == "waiting"
    assert result.waiting is not None and result.waiting["state"] == "review"
    assert machine.states["review"].checkpoint
    result = resume(machine, result, ("approved", {"by": "ada"}))
    assert result.status == "succeeded", result.error
    assert result.output == {"text": "Announcing the new API: faster, simpler, ready today.", "revisions": 0}
    assert result.context.data["review"] == {"by": "ada"}
    assert visited(result) == ["draft", "review", "published"]


def test_approval_example_rejected_then_approved() -> None:
    machine = agentfsm.load_machine(APPROVAL)
    result = resume(machine, start(machine), ("rejected", {"comment": "mention the docs"}))
    assert result.status == "waiting"
    assert result.context.data["text"] == "Announcing it, revised: mention the docs."
    result = resume(machine, result, ("approved", {"by": "grace"}))
    assert result.status == "succeeded", result.error
    assert result.output == {"text": "Announcing it, revised: mention the docs.", "revisions": 1}
    assert visited(result) == ["draft", "review", "revise", "review", "published"]


# -- validation ----------------------------------------------------------------------------------

BAD_WAIT = """\
    agentfsm: 1
    name: bad
    initial: w
    states:
      w:
        type: wait
        event: [approved, approved, timeout]
        transitions:
          - {event: aproved, to: done}
          - {event: timeout, to: done}
      done: {type: final}
"""


def test_wait_problems_are_reported_with_their_codes(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(BAD_WAIT), encoding="utf-8")
    problems = {(p.code, p.line): p.message for p in agentfsm.validate_file(path).problems}
    assert problems == {
        ("wait-duplicate-event", 7): "states.w.event: 'approved' is listed twice",
        ("invalid-name", 7): "states.w.event: 'timeout' is reserved for the wait's timer; set 'timeout:' and route "
                             "the event 'timeout' instead",
        ("wait-unknown-event", 9): "states.w.transitions[0]: the wait never receives 'aproved'; it waits for "
                                   "'approved', 'approved', 'timeout' (did you mean 'approved'?)",
        ("wait-timeout-without-timer", 10): "states.w.transitions[1]: routes 'timeout', but the wait has no timer; "
                                            "add 'timeout:' (such as 24h) or drop the rule",
    }
    with pytest.raises(MachineFileError):
        agentfsm.load_machine(path)


def test_an_unhandled_timer_is_a_warning_and_a_wait_cannot_retry(tmp_path: Path) -> None:
    unhandled = tmp_path / "unhandled.yaml"
    unhandled.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: unhandled
        initial: approve
        states:
          approve:
            type: wait
            event: approved
            timeout: 1h
            transitions: [{event: approved, to: accepted}]
          accepted: {type: final}
    """), encoding="utf-8")
    report = agentfsm.validate_file(unhandled)
    assert report.ok
    assert [p.code for p in report.warnings] == ["wait-timeout-unhandled"]

    retrying = tmp_path / "retrying.yaml"
    retrying.write_text(textwrap.dedent(TIMED.replace("timeout: 0.05", "timeout: 1m\n        retry: {errors: '*'}")),
                        encoding="utf-8")
    assert [p.code for p in agentfsm.validate_file(retrying).errors] == ["unknown-field"]
