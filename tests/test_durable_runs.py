"""Durable runs through the Python API (`agentfsm.history.Runs`) against a real SQLite file.

Everything is checked the way a user sees it: `history()`, `get()`, `position()`, `summary()`,
`diff()`, and what is in the store file. Python states used by the YAML machines below live
in this module (`call: "tests.test_durable_runs:Mutate"`).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from agentfsm import Event, InputError, State, StateContext, StateMachine, StepEnded
from agentfsm import RunRefused, Runs
from agentfsm.history.leases import new_owner
from agentfsm.service.worker import work_once
from agentfsm.store.base import Conflict, LeaseHeld, RunNotFound

ROOT = Path(__file__).resolve().parent.parent
APPROVAL = ROOT / "machines" / "approval.yaml"
REACT = ROOT / "machines" / "react_agent.yaml"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def dump(db: Path) -> str:
    """Everything in the store file, to compare before and after a refused request."""
    connection = sqlite3.connect(db)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


# -- machines ---------------------------------------------------------------------------------

SALT = "AGENTFSM_TEST_SALT"
"""An environment variable `Mutate` writes at its salted steps, so a branch can take another path than main.

(The machine imports this module as `tests.test_durable_runs`, which is not the module object pytest
imported: a module global would not be shared; the environment is.)"""


def _salt() -> str:
    return os.environ.get(SALT, "main")


def _change(data: dict[str, Any], i: int) -> None:
    """Change number `i` of the mutating machine: keys added, removed, lists edited, types changed."""
    if i == 0:
        data["a/b~c"] = 1  # a key that needs JSON-pointer escaping
    elif i == 1:
        data["a/b~c"] = True  # 1 -> True: equal in Python, not in JSON
    elif i == 2:
        data["a/b~c"] = "1"
        data[""] = 0  # the empty key: JSON pointer "/"
    elif i == 3:
        data["items"] = []
        data["nested"] = {"k": [1], "~/": {"deep": [0]}}
    elif i == 4:
        data["items"].append({"x": 1})
        data["nested"]["k"].append(2)
    elif i == 5:
        data["items"].insert(0, [1, 2])
        data["items"][1]["x"] = 2
        data["nested"]["~/"]["deep"].append({"salt": _salt()})
    elif i == 6:
        del data["items"]
        data["nested"]["k"] = data["nested"]["k"][1:]
        data["salted"] = _salt()
    elif i == 7:
        pass  # only the counter changes
    elif i == 8:
        data["x"] = 1.5
        del data["a/b~c"]
        data["nested"]["k"] = {"now": "a dict"}
    elif i == 9:
        data["x"] = 0
        data[""] = False


class Mutate(State):
    """Applies change number `i` to the context, then counts `i` up."""

    async def execute(self, context: StateContext) -> None:
        i = context.data["i"]
        _change(context.data, i)
        context.data["i"] = i + 1


MUTATE = """\
    agentfsm: 1
    name: mutate
    context: {i: 0}
    initial: mutate
    states:
      mutate:
        type: python
        call: "tests.test_durable_runs:Mutate"
        transitions:
          - {when: "i < 10", to: mutate}
          - {to: done}
      done:
        type: final
        output: "{{ i }}"
"""


class Contexts:
    """An observer keeping a copy of the context after every step (index: step number)."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.after: dict[int, dict[str, Any]] = {} if initial is None else {0: copy.deepcopy(initial)}

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.after[event.step] = copy.deepcopy(dict(event.data))


class Crash(BaseException):
    """The process dying: raised by an observer after a step was committed."""


class CrashAfter:
    """An observer that kills the run right after step `step` was committed (it runs after the recorder)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_ended(self, *, event: StepEnded) -> None:
        if event.step == self.step:
            raise Crash(f"died after step {event.step}")


def same_json(a: Any, b: Any) -> bool:
    """Equal including types (`1`, `True` and `1.0` differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_positions(runs: Runs, run_id: str, expected: dict[int, dict[str, Any]], branch: str | None = None) -> None:
    """Point k (just before step k) holds the context after step k-1, exactly."""
    prefix = f"{branch}@" if branch else ""
    for step, data in expected.items():
        where = run(runs.position(run_id, run(runs.point(run_id, f"{prefix}{step + 1}"))))
        assert same_json(where.data, data), (step, where.data, data)


class Step(State):
    """A Python state running a function of the context (sync or async)."""

    def __init__(self, name: str, work: Any = None, **options: Any) -> None:
        super().__init__(name, **options)
        self.work = work

    async def execute(self, context: StateContext) -> Any:
        if self.work is None:
            return None
        outcome = self.work(context)
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        return outcome


def counter_machine(limit: int = 5, name: str = "counter", work: Any = None) -> StateMachine:
    """count (n += 1, `work` first) until n == limit, then end."""

    def count(context: StateContext) -> Any:
        outcome = work(context) if work is not None else None
        if asyncio.iscoroutine(outcome):
            return _then_count(outcome, context, limit)
        context.data["n"] = context.data.get("n", 0) + 1
        return Event("more" if context.data["n"] < limit else "enough")

    machine = StateMachine(name, max_steps=10_000)
    machine.add_state(Step("count", count), initial=True)
    machine.add_state(State("end"), final=True)
    machine.add_transition("count", "count", "more")
    machine.add_transition("count", "end", "enough")
    return machine


async def _then_count(outcome: Any, context: StateContext, limit: int) -> Event:
    await outcome
    context.data["n"] = context.data.get("n", 0) + 1
    return Event("more" if context.data["n"] < limit else "enough")


TIMER = """\
    agentfsm: 1
    name: timer
    initial: hold
    states:
      hold:
        type: wait
        event: go
        timeout: {timeout}
        save: got
        transitions:
          - {{event: go, to: went}}
          - {{event: timeout, to: late}}
      went: {{type: final, output: went}}
      late: {{type: final, output: late}}
"""


def timer(tmp_path: Path, seconds: float = 0.2) -> Path:
    return write(tmp_path / "timer.yaml", TIMER.format(timeout=seconds))


# -- start records every step ----------------------------------------------------------------------


def test_start_records_every_step_with_state_event_and_next_state(runs: Runs) -> None:
    result = run(runs.start(REACT, {"task": "What is 17 * 23?"}))
    assert result.status == "succeeded" and result.output == "391"
    steps = run(runs.history(result.run_id))
    assert [row.step for row in steps] == list(range(1, result.steps + 1))
    assert [row.state for row in steps] == [
        "initial", "thinking", "acting", "observing", "reflecting", "thinking", "finalizing"]
    assert [row.next_state for row in steps] == [
        "thinking", "acting", "observing", "reflecting", "thinking", "finalizing", None]
    assert all(row.event == "done" for row in steps)
    row = run(runs.get(result.run_id))
    assert (row.status, row.output, row.steps, row.head) == ("succeeded", "391", 7, "main")
    assert row.lease_owner is None
    assert steps[1].calls and steps[1].calls[0]["kind"] == "llm"


def test_every_point_rebuilds_the_context_exactly(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    seen = Contexts({"i": 0})
    result = run(runs.start(machine, observers=[seen]))
    assert result.status == "succeeded" and result.output == 10
    assert len(seen.after) == 12  # step 0, ten mutations, done
    assert_positions(runs, result.run_id, seen.after)
    assert same_json(run(runs.position(result.run_id, run(runs.point(result.run_id, "head")))).data, result.context.data)


def test_contexts_are_rebuilt_across_snapshots(db: Path, tmp_path: Path) -> None:
    runs = Runs(f"sqlite:///{db}", snapshot_every=3)
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    seen = Contexts({"i": 0})
    result = run(runs.start(machine, observers=[seen]))
    kinds = [row.context_kind for row in run(runs.store.steps(result.run_id, "main"))]
    assert kinds.count("snapshot") >= 3, kinds  # step 0 and later ones
    assert "patch" in kinds
    assert_positions(runs, result.run_id, seen.after)
    run(runs.close())


def test_unchanged_context_is_not_stored_again(runs: Runs) -> None:
    machine = counter_machine(3)
    machine.add_state(Step("idle"))
    result = run(runs.start(machine))
    kinds = [row.context_kind for row in run(runs.store.steps(result.run_id, "main"))]
    assert kinds == ["snapshot", "patch", "patch", "patch", None]  # the final step changes nothing


def test_storage_grows_with_change_not_with_context_size(db: Path) -> None:
    runs = Runs(f"sqlite:///{db}")
    result = run(runs.start(counter_machine(300), {"blob": "x" * 100_000}))
    assert result.status == "succeeded" and result.steps == 301
    kinds = [row.context_kind for row in run(runs.store.steps(result.run_id, "main"))]
    assert kinds.count("snapshot") == 1
    position = run(runs.position(result.run_id, run(runs.point(result.run_id, "200"))))
    assert position.data["n"] == 199 and len(position.data["blob"]) == 100_000
    run(runs.close())
    size = sum(path.stat().st_size for path in db.parent.glob("runs.db*"))
    assert size < 1_000_000, size


# -- resume after a crash -----------------------------------------------------------------------


def test_resume_after_a_crash_continues_from_the_next_step(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    whole = run(runs.start(machine))
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(4)], run_id="crashed1"))
    row = run(runs.get("crashed1"))
    assert row.status == "paused" and row.steps == 4 and row.lease_owner is None
    assert [step.step for step in run(runs.history("crashed1"))] == [1, 2, 3, 4]
    seen = Contexts()
    resumed = run(runs.resume("crashed1", observers=[seen]))
    assert min(seen.after) == 5  # step 4 is not run again
    assert resumed.status == "succeeded" and resumed.output == whole.output
    assert same_json(resumed.context.data, whole.context.data)
    assert [s.state for s in run(runs.history("crashed1"))] == [s.state for s in run(runs.history(whole.run_id))]
    assert [s.step for s in run(runs.history("crashed1"))] == list(range(1, 12))


def test_resume_after_a_crash_with_a_scripted_llm_matches_an_uninterrupted_run(runs: Runs) -> None:
    task = {"task": "Make a plan, then compute 6 * 7"}
    whole = run(runs.start(REACT, task))
    with pytest.raises(Crash):
        run(runs.start(REACT, task, observers=[CrashAfter(3)], run_id="crashed2"))
    resumed = run(runs.resume("crashed2"))
    assert resumed.status == "succeeded" and resumed.output == whole.output == "42"
    assert same_json(resumed.context.data, whole.context.data)
    path = [row.state for row in run(runs.history("crashed2"))]
    assert path == [row.state for row in run(runs.history(whole.run_id))]
    assert path.count("planning") == 1


SCRIPT = """\
    agentfsm: 1
    name: script
    context: {said: []}
    llms:
      bot: {provider: scripted, replies: [one, two, three, four]}
    initial: ask
    states:
      ask:
        type: llm
        llm: bot
        prompt: "say the next word"
        save: last
        next: note
      note:
        type: set
        set: {said: "{{ said + [last] }}"}
        transitions:
          - {when: "said | length < 3", to: ask}
          - {to: done}
      done: {type: final, output: "{{ said }}"}
"""


def test_a_resumed_run_continues_its_llm_script_instead_of_restarting_it(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "script.yaml", SCRIPT)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(3)], run_id="script1"))
    result = run(runs.resume("script1"))
    assert result.context.data["said"] == ["one", "two", "three"]


def test_a_crash_at_the_very_first_step_resumes_from_the_start(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(1)], run_id="early1"))
    rolled = run(run(runs.open("early1")).rollback(1))  # back to the start: nothing of step 1 is kept
    assert (rolled.point, rolled.state) == (1, "mutate")
    result = run(runs.resume("early1"))
    assert result.output == 10 and [row.step for row in run(runs.history("early1"))] == list(range(1, 12))


# -- waiting ---------------------------------------------------------------------------------------


def test_wait_then_send_finishes_the_run(runs: Runs) -> None:
    started = run(runs.start(APPROVAL, {"topic": "the API"}))
    assert started.status == "waiting"
    assert started.waiting is not None and started.waiting["state"] == "review"
    assert started.waiting["events"] == ["approved", "rejected"]
    row = run(runs.get(started.run_id))
    assert row.status == "waiting" and row.wake_at == started.waiting["deadline"] and row.steps == 1
    done = run(runs.send(started.run_id, "approved", {"by": "ada"}))
    assert done is not None and done.status == "succeeded"
    assert done.output == {"text": "Announcing the API: faster, simpler, ready today.", "revisions": 0}
    steps = run(runs.history(started.run_id))
    assert [(s.state, s.event, s.next_state) for s in steps] == [
        ("draft", "done", "review"), ("review", "approved", "published"), ("published", "done", None)]
    assert steps[1].event_data == {"by": "ada"}
    assert run(runs.get(started.run_id)).status == "succeeded"


def test_send_refuses_unknown_events_and_finished_runs(runs: Runs, db: Path) -> None:
    started = run(runs.start(APPROVAL))
    before = dump(db)
    with pytest.raises(Conflict, match="approved, rejected"):
        run(runs.send(started.run_id, "maybe"))
    assert dump(db) == before
    run(runs.send(started.run_id, "approved"))
    with pytest.raises(Conflict, match="succeeded"):
        run(runs.send(started.run_id, "approved"))


def test_send_without_resume_then_resume(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))
    assert run(runs.send(started.run_id, "rejected", {"comment": "shorter"}, resume=False)) is None
    assert run(runs.get(started.run_id)).status == "waiting"
    assert [e.name for e in run(runs.store.pending_events(started.run_id))] == ["rejected"]
    result = run(runs.resume(started.run_id))
    assert result.status == "waiting" and result.context.data["revisions"] == 1
    assert result.context.data["text"] == "Announcing it, revised: shorter."
    assert run(runs.store.pending_events(started.run_id)) == []


def test_an_event_left_pending_does_not_follow_a_rollback(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))
    run(runs.send(started.run_id, "approved", resume=False))
    run(runs.rollback(started.run_id, 1))
    again = run(runs.resume(started.run_id))
    assert again.status == "waiting"  # the new branch waits for its own decision
    assert run(runs.store.pending_events(started.run_id)) == []


def test_events_sent_to_one_visit_of_a_wait_are_not_taken_by_the_next(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))
    run(runs.send(started.run_id, "rejected", {"comment": "shorter"}, resume=False))
    run(runs.send(started.run_id, "approved", {"by": "bob"}, resume=False))  # about the draft, not the revision
    again = run(runs.resume(started.run_id))
    assert again.status == "waiting" and again.context.data["revisions"] == 1  # the revision awaits its own review
    assert run(runs.store.pending_events(started.run_id)) == []


def test_a_point_on_another_run_is_refused_even_by_a_shared_prefix(runs: Runs) -> None:
    first = run(runs.start(REACT, {"task": "What is 17 * 23?"})).run_id
    second = run(runs.start(APPROVAL)).run_id
    shared = os.path.commonprefix([first, second])
    with pytest.raises(RunNotFound, match="several runs|not run"):
        run(runs.diff(first, "1", f"{second[:max(len(shared) + 1, 4)]}:1"))
    if len(shared) >= 4:
        with pytest.raises(RunNotFound, match="matches several runs"):
            run(runs.diff(first, "1", f"{shared}:1"))


def test_a_wait_timer_survives_resumes_and_then_times_out(runs: Runs, tmp_path: Path) -> None:
    started = run(runs.start(timer(tmp_path, 0.2)))
    deadline = started.waiting["deadline"]
    again = run(runs.resume(started.run_id))  # before the deadline: still waiting, same timer
    assert again.status == "waiting" and again.waiting["deadline"] == deadline
    assert run(runs.get(started.run_id)).wake_at == deadline
    time.sleep(max(0.0, deadline - time.time()) + 0.02)
    late = run(runs.resume(started.run_id))
    assert late.status == "succeeded" and late.output == "late"
    assert [(s.state, s.event) for s in run(runs.history(started.run_id))] == [("hold", "timeout"), ("late", "done")]


def test_an_event_delivered_before_a_due_timer_wins(runs: Runs, tmp_path: Path) -> None:
    started = run(runs.start(timer(tmp_path, 0.1)))
    run(runs.send(started.run_id, "go", {"n": 1}, resume=False))
    time.sleep(0.15)
    result = run(runs.resume(started.run_id))
    assert result.output == "went" and result.context.data["got"] == {"n": 1}


def test_worker_advances_due_runs_and_skips_others(runs: Runs, tmp_path: Path) -> None:
    with_event = run(runs.start(APPROVAL)).run_id
    idle = run(runs.start(APPROVAL)).run_id
    timed = run(runs.start(timer(tmp_path, 0.1))).run_id
    run(runs.send(with_event, "approved", resume=False))
    time.sleep(0.15)
    done = run(work_once(runs))
    assert sorted(result.run_id for result in done.advanced) == sorted([with_event, timed])
    assert run(runs.get(with_event)).status == "succeeded" and run(runs.get(timed)).output == "late"
    assert run(runs.get(idle)).status == "waiting" and run(runs.history(idle))[-1].step == 1
    assert run(work_once(runs)).advanced == []


def test_two_workers_never_advance_the_same_run_twice(db: Path, tmp_path: Path) -> None:
    first, second = Runs(f"sqlite:///{db}"), Runs(f"sqlite:///{db}")
    ids = [run(first.start(APPROVAL)).run_id for _ in range(6)]
    for run_id in ids:
        run(first.send(run_id, "rejected", {"comment": "again"}, resume=False))

    async def both() -> list[Any]:
        return list(await asyncio.gather(work_once(first, concurrency=2), work_once(second, concurrency=2)))

    passes = run(both())
    # a worker that finds a run taken (LeaseHeld) skips it; one that comes after finds it waiting again and
    # nothing to take: it suspends again without recording a step
    advanced = {result.run_id for done in passes for result in done.advanced}
    assert advanced == set(ids)
    for run_id in ids:
        steps = [row.step for row in run(first.history(run_id))]
        assert steps == [1, 2, 3]  # draft, review (rejected), revise: then waiting again
        assert run(first.get(run_id)).status == "waiting"
    run(first.close())
    run(second.close())


# -- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_states_are_named_on_each_visit(runs: Runs) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    run(runs.send(run_id, "rejected", {"comment": "more"}))
    names = [(c.name, c.branch, c.point) for c in run(runs.checkpoints(run_id))]
    assert names == [("review", "main", 2), ("review#2", "main", 4)]
    # the point of a checkpoint is just before the checkpointed state runs
    assert run(runs.position(run_id, run(runs.point(run_id, "review#2")))).state == "review"
    assert run(runs.position(run_id, run(runs.point(run_id, "review#2")))).data["revisions"] == 1


def test_checkpoint_names_the_head_point_and_refuses_duplicates(runs: Runs, db: Path) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    made = run(runs.checkpoint(run_id, "before-review"))
    assert (made.branch, made.point) == ("main", 2)
    before = dump(db)
    with pytest.raises(Conflict, match="before-review"):
        run(runs.checkpoint(run_id, "before-review"))
    with pytest.raises(Conflict, match="review"):
        run(runs.checkpoint(run_id, "review"))  # named by the machine already
    for bad in ("12", "state:x", " padded", ""):
        with pytest.raises(RunRefused):
            run(runs.checkpoint(run_id, bad))
    assert dump(db) == before


# -- rollback and branches -------------------------------------------------------------------------


def _approval_with_history(runs: Runs) -> str:
    """draft, review(rejected), revise, review(approved), published: 5 steps, checkpoints review, review#2."""
    run_id = run(runs.start(APPROVAL, {"topic": "v2"})).run_id
    run(runs.send(run_id, "rejected", {"comment": "add docs"}))
    run(runs.send(run_id, "approved", {"by": "ada"}))
    assert run(runs.get(run_id)).status == "succeeded"
    return run_id


def test_rollback_to_a_checkpoint_starts_a_branch_and_keeps_the_old_one(runs: Runs) -> None:
    run_id = _approval_with_history(runs)
    handle = run(runs.open(run_id))
    main_before = [(s.step, s.state) for s in run(handle.history())]
    rolled = run(handle.rollback_to_point("review"))
    assert (rolled.branch, rolled.point, rolled.state) == ("rollback-1", 2, "review")
    row = run(runs.get(run_id))
    assert (row.head, row.status, row.steps, row.output) == ("rollback-1", "paused", 1, None)
    waiting = run(handle.resume())
    assert waiting.status == "waiting" and waiting.waiting["state"] == "review"
    done = run(handle.send("approved", {"by": "bob"}))
    assert done.output["revisions"] == 0
    assert [(s.step, s.state, s.branch) for s in run(handle.history())] == [
        (1, "draft", "main"), (2, "review", "rollback-1"), (3, "published", "rollback-1")]
    assert [(s.step, s.state) for s in run(runs.history(run_id, branch="main"))] == main_before


def test_rollback_by_steps_by_state_and_to_a_step_number(runs: Runs) -> None:
    run_id = _approval_with_history(runs)
    handle = run(runs.open(run_id))
    by_steps = run(handle.rollback(2))  # head was after step 5: point 4 is before the second review
    assert (by_steps.branch, by_steps.point, by_steps.state) == ("rollback-1", 4, "review")
    by_state = run(handle.rollback_to_state("revise"))
    assert (by_state.branch, by_state.point, by_state.state) == ("rollback-2", 3, "revise")
    by_number = run(runs.rollback(run_id, "main@2", branch="retry"))
    assert (by_number.branch, by_number.point, by_number.state) == ("retry", 2, "review")
    assert run(runs.get(run_id)).head == "retry"
    assert [b.name for b in run(runs.branches(run_id))] == ["main", "rollback-1", "rollback-2", "retry"]


def test_refused_rollbacks_say_why_and_change_nothing(runs: Runs, db: Path) -> None:
    run_id = _approval_with_history(runs)
    handle = run(runs.open(run_id))
    before = dump(db)
    with pytest.raises(RunRefused, match=r"no checkpoint 'nope' \(checkpoints: review, review#2\)"):
        run(handle.rollback_to_point("nope"))
    with pytest.raises(RunNotFound, match="never entered state 'nope'.*states: draft, review, revise, published"):
        run(handle.rollback_to_state("nope"))
    with pytest.raises(RunNotFound, match="no step 9 .*steps are 1 to 5"):
        run(runs.rollback(run_id, 9))
    with pytest.raises(RunRefused, match="cannot go back 9 step"):
        run(handle.rollback(9))
    with pytest.raises(RunRefused, match="cannot go back 0 step"):
        run(handle.rollback(0))
    with pytest.raises(RunRefused, match="nothing runs from there"):
        run(runs.rollback(run_id, "head"))  # the end of a finished branch
    with pytest.raises(RunRefused, match="already has a branch 'main'"):
        run(runs.rollback(run_id, 2, branch="main"))
    with pytest.raises(RunNotFound, match="no branch 'ghost'"):
        run(handle.switch_branch("ghost"))
    with pytest.raises(RunRefused, match="has succeeded"):
        run(handle.resume())
    assert dump(db) == before


def test_create_and_switch_branches(runs: Runs) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    handle = run(runs.open(run_id))
    made = run(handle.create_branch("experiment"))
    assert (made.branch, made.point, made.state) == ("experiment", 2, "review")
    assert run(runs.get(run_id)).head == "experiment"
    run(runs.resume(run_id))
    run(handle.send("rejected", {"comment": "try"}))
    run(handle.send("approved"))
    assert run(runs.get(run_id)).status == "succeeded"
    back = run(handle.switch_branch("main"))
    assert (back.head, back.status, back.steps) == ("main", "paused", 1)  # main was waiting at review
    assert run(handle.resume()).status == "waiting"
    with pytest.raises(RunRefused, match="already has a branch 'experiment'"):
        run(handle.create_branch("experiment"))
    ended = run(handle.switch_branch("experiment"))
    assert (ended.status, ended.steps) == ("succeeded", 5)
    assert run(runs.get(run_id)).output == {"text": "Announcing it, revised: try.", "revisions": 1}  # its own output
    with pytest.raises(RunRefused, match="end of branch 'experiment'.*nothing runs from there"):
        run(handle.create_branch("later"))


def test_summary_lists_path_visits_branches_and_checkpoints(runs: Runs) -> None:
    run_id = _approval_with_history(runs)
    handle = run(runs.open(run_id))
    summary = run(handle.summary())
    assert summary["state_path"] == ["draft", "review", "revise", "review", "published"]
    assert summary["visits"] == {"draft": 1, "review": 2, "revise": 1, "published": 1}
    assert summary["branches"] == ["main"] and summary["status"] == "succeeded"
    assert summary["checkpoints"] == {"review": {"branch": "main", "step": 2}, "review#2": {"branch": "main", "step": 4}}
    run(handle.rollback_to_point("review"))
    assert run(handle.summary())["state_path"] == ["draft"]
    assert run(handle.summary(branch="main"))["steps"] == 5
    assert run(handle.summary())["branches"] == ["main", "rollback-1"]


def test_diff_shows_keys_added_removed_changed_and_the_steps_between(runs: Runs) -> None:
    run_id = _approval_with_history(runs)
    diff = run(run(runs.open(run_id)).diff("review", "review#2"))
    assert set(diff.added) == {"review"} and diff.added["review"] == {"comment": "add docs"}
    assert diff.changed["revisions"] == {"old": 0, "new": 1}
    assert diff.changed["text"]["new"] == "Announcing it, revised: add docs."
    assert diff.removed == {}
    assert [(t["step"], t["state"], t["event"], t["next_state"]) for t in diff.transitions] == [
        (2, "review", "rejected", "revise"), (3, "revise", "done", "review")]
    backwards = run(runs.diff(run_id, "review#2", "review"))
    assert set(backwards.removed) == {"review"} and backwards.changed["revisions"] == {"old": 1, "new": 0}
    assert run(runs.diff(run_id, "3", "3")).same


def test_diff_sees_type_changes_and_removed_keys(runs: Runs, tmp_path: Path) -> None:
    run_id = run(runs.start(write(tmp_path / "mutate.yaml", MUTATE))).run_id
    diff = run(runs.diff(run_id, "2", "3"))  # after step 1 (a/b~c = 1) -> after step 2 (True)
    assert diff.changed["a/b~c"] == {"old": 1, "new": True}
    later = run(runs.diff(run_id, "7", "8"))
    assert "items" in later.removed and later.added == {"salted": "main"}


def test_positions_on_nested_branches(runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    main = Contexts({"i": 0})
    run_id = run(runs.start(machine, observers=[main])).run_id
    monkeypatch.setenv(SALT, "first")
    run(runs.rollback(run_id, 6))  # rollback-1 runs steps 6.. (the salted steps) itself
    first = Contexts()
    run(runs.resume(run_id, observers=[first]))
    monkeypatch.setenv(SALT, "second")
    run(runs.rollback(run_id, 3))  # from rollback-1 to a point before its own fork
    second = Contexts()
    run(runs.resume(run_id, observers=[second]))
    assert [(b.name, b.parent, b.fork) for b in run(runs.branches(run_id))] == [
        ("main", None, 0), ("rollback-1", "main", 6), ("rollback-2", "rollback-1", 3)]
    assert_positions(runs, run_id, main.after, "main")
    assert_positions(runs, run_id, {**{k: v for k, v in main.after.items() if k < 5}, **first.after}, "rollback-1")
    assert_positions(runs, run_id, {**{k: v for k, v in main.after.items() if k < 2}, **second.after}, "rollback-2")
    assert run(runs.position(run_id, run(runs.point(run_id, "rollback-1@head")))).data["salted"] == "first"
    assert run(runs.position(run_id, run(runs.point(run_id, "head")))).data["salted"] == "second"
    assert [(s.step, s.branch) for s in run(runs.history(run_id))][:3] == [
        (1, "main"), (2, "main"), (3, "rollback-2")]


def test_positions_on_branches_across_snapshots(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = Runs(f"sqlite:///{db}", snapshot_every=3)
    main = Contexts({"i": 0})
    run_id = run(runs.start(write(tmp_path / "mutate.yaml", MUTATE), observers=[main])).run_id
    monkeypatch.setenv(SALT, "other")
    run(runs.rollback(run_id, 5))
    branch = Contexts()
    run(runs.resume(run_id, observers=[branch]))
    assert branch.after[11]["salted"] == "other"
    assert_positions(runs, run_id, {**{k: v for k, v in main.after.items() if k < 4}, **branch.after})
    assert_positions(runs, run_id, main.after, "main")
    run(runs.close())


# -- leases ----------------------------------------------------------------------------------------


class Gate:
    """Holds a Python state until the test opens it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def __call__(self, context: StateContext) -> None:
        if context.data.get("n", 0) == 1:
            self.entered.set()
            await self.open.wait()


def test_a_second_resume_while_a_live_process_holds_the_lease_is_refused(db: Path) -> None:
    gate = Gate()
    machine = counter_machine(3, work=gate)
    first, second = Runs(f"sqlite:///{db}"), Runs(f"sqlite:///{db}")

    async def scenario() -> tuple[Any, BaseException | None]:
        task = asyncio.create_task(first.start(machine, run_id="held1"))
        await gate.entered.wait()
        refused: BaseException | None = None
        try:
            await second.resume("held1", machine=machine)
        except LeaseHeld as exc:
            refused = exc
        gate.open.set()
        return await task, refused

    result, refused = run(scenario())
    assert refused is not None and "held1 is being advanced by" in str(refused)
    assert result.status == "succeeded" and [s.step for s in run(first.history("held1"))] == [1, 2, 3, 4]
    run(first.close())
    run(second.close())


def _dead_owner() -> str:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return f"{socket.gethostname()}:{child.stdout.strip()}:1.000:dead"


def test_a_lease_held_by_a_dead_process_is_taken_over_at_once(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(2)], run_id="dead1"))
    run(runs.store.acquire("dead1", _dead_owner(), time.time() + 3600, now=time.time(), status="running"))
    result = run(runs.resume("dead1"))
    assert result.status == "succeeded" and run(runs.get("dead1")).lease_owner is None


def test_a_live_lease_is_not_taken_over_until_it_expires(db: Path, tmp_path: Path) -> None:
    now = [1000.0]
    runs = Runs(f"sqlite:///{db}", lease_seconds=0.2, clock=lambda: now[0])
    machine = write(tmp_path / "mutate.yaml", MUTATE)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(2)], run_id="expire1"))
    run(runs.store.acquire("expire1", new_owner(), now[0] + 0.2, now=now[0], status="running"))  # a live process
    with pytest.raises(LeaseHeld):
        run(runs.resume("expire1"))
    now[0] += 1.0
    assert run(runs.store.due_runs(now[0], 10)) == ["expire1"]
    assert run(runs.resume("expire1")).status == "succeeded"
    run(runs.close())


def test_cancel_stops_a_run_being_advanced_at_its_next_step(db: Path) -> None:
    gate = Gate()
    machine = counter_machine(5, work=gate)
    runs, other = Runs(f"sqlite:///{db}"), Runs(f"sqlite:///{db}")

    async def scenario() -> Any:
        task = asyncio.create_task(runs.start(machine, run_id="cancel1"))
        await gate.entered.wait()
        await other.cancel("cancel1")
        gate.open.set()
        return await task

    result = run(scenario())
    assert result.status == "cancelled" and result.steps == 1
    row = run(runs.get("cancel1"))
    assert row.status == "cancelled" and row.lease_owner is None
    assert [s.step for s in run(runs.history("cancel1"))] == [1]  # step 2 was running when it was cancelled
    with pytest.raises(RunRefused, match="cancelled"):
        run(runs.resume("cancel1", machine=machine))
    with pytest.raises(Conflict, match="already been cancelled"):
        run(runs.cancel("cancel1"))
    run(runs.close())
    run(other.close())


def test_a_failing_observer_does_not_stop_the_run(runs: Runs, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def on_step_ended(self, *, event: StepEnded) -> None:
            raise RuntimeError("metrics are down")

    result = run(runs.start(write(tmp_path / "mutate.yaml", MUTATE), observers=[Broken()], run_id="broken1"))
    assert result.status == "succeeded"
    row = run(runs.get("broken1"))
    assert (row.status, row.lease_owner, row.steps) == ("succeeded", None, result.steps)
    warnings = [record for record in caplog.records if "metrics are down" in record.getMessage()]
    assert warnings and warnings[0].exc_info is not None  # the first failure comes with its traceback


class BrokenStore:
    """A store whose step commits start failing after `steps` of them: the disk is full."""

    def __init__(self, store: Any, steps: int) -> None:
        self.store, self.left = store, steps

    async def commit_step(self, *args: Any, **options: Any) -> Any:
        if self.left == 0:
            raise OSError("no space left on device")
        self.left -= 1
        return await self.store.commit_step(*args, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_step_that_cannot_be_recorded_stops_the_run_and_releases_the_lease(db: Path, tmp_path: Path) -> None:
    plain = Runs(f"sqlite:///{db}")
    broken = Runs(BrokenStore(plain.store, 1))
    with pytest.raises(OSError):
        run(broken.start(write(tmp_path / "mutate.yaml", MUTATE), run_id="broken1"))
    row = run(plain.get("broken1"))
    assert (row.status, row.lease_owner, row.steps) == ("paused", None, 1)
    assert run(plain.resume("broken1")).status == "succeeded"
    run(plain.close())


def test_a_run_whose_process_died_after_its_last_step_is_finished_by_resume(runs: Runs, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def die(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process stops between the last step's commit and the end of the run

    with monkeypatch.context() as patched:
        patched.setattr(runs.store, "end_run", die)
        with pytest.raises(KeyboardInterrupt):
            run(runs.start(REACT, {"task": "What is 17 * 23?"}, run_id="lastgasp"))
    assert (run(runs.get("lastgasp")).status, run(runs.get("lastgasp")).steps) == ("paused", 7)
    finished = run(runs.resume("lastgasp"))
    assert (finished.status, finished.output, finished.steps) == ("succeeded", "391", 7)
    row = run(runs.get("lastgasp"))
    assert (row.status, row.output, row.lease_owner) == ("succeeded", "391", None)
    assert len(run(runs.history("lastgasp"))) == 7  # nothing ran twice


def test_a_resume_that_raced_a_cancel_is_refused_and_leaves_the_cancel(runs: Runs, db: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    real = runs._machine_for

    async def cancel_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = await real(*args, **kwargs)
        await runs.cancel(run_id)  # another process cancels while this one prepares the resume
        return found

    monkeypatch.setattr(runs, "_machine_for", cancel_meanwhile)
    with pytest.raises(Conflict, match="cancelled"):
        run(runs.resume(run_id))
    assert run(runs.get(run_id)).status == "cancelled"


def test_a_nested_type_change_is_stored(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "flags.yaml", """\
        agentfsm: 1
        name: flags
        context: {flags: {ok: 1}, counts: [0]}
        initial: flip
        states:
          flip:
            type: set
            set: {flags: {ok: true}, counts: [false]}
            next: hold
          hold:
            type: wait
            event: go
            next: done
          done:
            type: final
            output: "{{ flags.ok }} {{ counts[0] }}"
        """)
    run_id = run(runs.start(machine)).run_id
    finished = run(runs.send(run_id, "go"))
    assert finished is not None and finished.output == "True False"  # not "1 0": the store kept the types


def test_a_registered_secret_does_not_reach_the_store(runs: Runs, db: Path, tmp_path: Path) -> None:
    from agentfsm.bindings.known_secrets import forget_secrets, register_secret

    secret = "sk-test-SECRET-0042"
    register_secret(secret)
    try:
        machine = write(tmp_path / "leaky.yaml", """\
            agentfsm: 1
            name: leaky
            inputs:
              token: {type: string}
            initial: echo
            states:
              echo:
                type: set
                set: {echoed: "token={{ token }}"}
                next: broken
              broken:
                type: fail
                error: "the server said token={{ token }}"
            """)
        result = run(runs.start(machine, {"token": secret}))  # as if a tool had echoed a key it was given
        assert result.status == "failed"
    finally:
        forget_secrets()
    stored = dump(db) + db.read_bytes().decode("latin-1") + (db.with_name(db.name + "-wal").read_bytes().decode(
        "latin-1") if db.with_name(db.name + "-wal").exists() else "")
    assert secret not in stored
    assert "[redacted]" in dump(db)


# -- machines: edited files and machines built in Python ------------------------------------------


def test_resume_uses_the_stored_machine_even_if_the_file_changed(runs: Runs, tmp_path: Path) -> None:
    copy_of = tmp_path / "approval.yaml"
    copy_of.write_text(APPROVAL.read_text())
    run_id = run(runs.start(copy_of)).run_id
    copy_of.write_text("this is not a machine any more")
    result = run(runs.send(run_id, "approved"))
    assert result.status == "succeeded" and result.output["text"].startswith("Announcing")


def test_resume_with_an_edited_machine(runs: Runs, tmp_path: Path, db: Path) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    digest = run(runs.get(run_id)).digest
    lacking = write(tmp_path / "lacking.yaml", """\
        agentfsm: 1
        name: approval
        initial: elsewhere
        states:
          elsewhere: {type: final, output: no}
    """)
    run(runs.send(run_id, "approved", resume=False))
    before = dump(db)
    with pytest.raises(RunRefused, match="at state 'review', which machine 'approval' does not have"):
        run(runs.resume(run_id, machine=lacking))
    assert dump(db) == before
    edited = tmp_path / "edited.yaml"
    edited.write_text(APPROVAL.read_text().replace('output: {text: "{{ text }}"', 'output: {text: "EDITED"'))
    result = run(runs.resume(run_id, machine=edited))
    assert result.output["text"] == "EDITED"
    assert run(runs.get(run_id)).digest != digest


def test_a_python_machine_runs_durably_and_resumes_with_its_machine(runs: Runs, db: Path) -> None:
    machine = counter_machine(4)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(2)], run_id="py1"))
    row = run(runs.get("py1"))
    assert (row.machine, row.digest, row.status, row.steps) == ("counter", None, "paused", 2)
    before = dump(db)
    with pytest.raises(RunRefused, match=r"built in Python.*machine="):
        run(runs.resume("py1"))
    assert dump(db) == before
    result = run(runs.resume("py1", machine=machine))
    assert result.status == "succeeded" and result.context.data == {"n": 4}
    assert [s.state for s in run(runs.history("py1"))] == ["count"] * 4 + ["end"]


@pytest.mark.parametrize("value", [set(), datetime.datetime(2024, 1, 1)])
def test_a_value_that_is_not_json_fails_the_run_naming_the_key(runs: Runs, value: Any) -> None:
    def store_it(context: StateContext) -> None:
        if context.data.get("n") == 2:
            context.data["bad"] = value

    result = run(runs.start(counter_machine(4, work=store_it)))
    assert result.status == "failed"
    assert result.error["type"] == "context.not_json" and "'bad'" in result.error["message"]
    row = run(runs.get(result.run_id))
    assert row.status == "failed" and row.error["type"] == "context.not_json" and row.lease_owner is None
    assert [s.step for s in run(runs.history(result.run_id))] == [1, 2]


# -- prune -----------------------------------------------------------------------------------------


def test_prune(runs: Runs) -> None:
    finished = [run(runs.start(counter_machine(1), run_id=f"done{i}")).run_id for i in range(3)]
    waiting = run(runs.start(APPROVAL)).run_id
    with pytest.raises(RunRefused, match="nothing to prune"):
        run(runs.prune())  # nothing is 30 days old
    with pytest.raises(RunRefused, match="nothing to prune"):
        run(runs.prune(older_than=3600))
    dry = run(runs.prune(older_than=0, dry_run=True))
    assert sorted(r.id for r in dry) == sorted(finished)
    assert len(run(runs.list())) == 4
    pruned = run(runs.prune(keep_last=1))
    assert sorted(r.id for r in pruned) == ["done0", "done1"]
    assert sorted(r.id for r in run(runs.list())) == sorted(["done2", waiting])
    with pytest.raises(RunNotFound):
        run(runs.history("done0"))
    assert [r.id for r in run(runs.prune(statuses=["waiting"], older_than=0))] == [waiting]
    with pytest.raises(RunRefused, match="nothing to prune"):
        run(runs.prune(statuses=["waiting"], older_than=0))


# -- bad requests change nothing -------------------------------------------------------------------


def test_bad_inputs_and_unknown_runs_change_nothing(runs: Runs, db: Path) -> None:
    run(runs.start(APPROVAL))
    before = dump(db)
    with pytest.raises(InputError, match="task"):
        run(runs.start(REACT, {}))  # `task` is required
    with pytest.raises(RunNotFound):
        run(runs.open("nosuchrun"))
    with pytest.raises(RunNotFound):
        run(runs.send("nosuchrun", "approved"))
    with pytest.raises(RunNotFound):
        run(runs.resume("nosuchrun"))
    assert dump(db) == before


def test_diff_and_points_refuse_unknown_points(runs: Runs) -> None:
    run_id = _approval_with_history(runs)
    with pytest.raises(RunNotFound, match="no checkpoint 'later'"):
        run(runs.diff(run_id, "1", "later"))
    with pytest.raises(RunNotFound, match="no branch 'ghost'"):
        run(runs.point(run_id, "ghost@2"))
    assert run(runs.point(run_id, "start")).point == 1 and run(runs.point(run_id, "head")).point == 6


def test_a_checkpoint_on_a_branch_names_the_branch_head(runs: Runs) -> None:
    run_id = _approval_with_history(runs)
    handle = run(runs.open(run_id))
    run(handle.rollback_to_state("revise"))
    made = run(handle.checkpoint("fork-here"))
    assert (made.branch, made.point) == ("rollback-1", 3)
    result = run(handle.resume())
    assert result.status == "waiting"
    # the revisit of review on this branch gets the next free name
    assert [c.name for c in run(runs.checkpoints(run_id))][-1] == "review#3"
    again = run(handle.rollback_to_point("fork-here"))
    assert (again.branch, again.point, again.state) == ("rollback-2", 3, "revise")
    assert run(handle.summary())["state_path"] == ["draft", "review"]
