"""Durable runs at their edges: races between processes, interrupted resumes, late events, branches that
went separate ways, and names that would make a point ambiguous. Through `agentfsm.history.Runs`, against
a real SQLite file, checked the way a user sees it (statuses, timers, history, what the store holds)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentfsm import Event, RunStarted, State, StateContext, StateMachine, StatePersistence, StepEnded
from agentfsm.bindings.imports import BindingError
from agentfsm import RunRefused, Runs
from agentfsm.service.worker import work_once
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.waiting import WaitForEvent
from agentfsm.store.base import Conflict, RunNotFound
from tests.test_durable_runs import (
    APPROVAL,
    BrokenStore,
    Crash,
    CrashAfter,
    Gate,
    _dead_owner,
    counter_machine,
    dump,
    run,
    timer,
    write,
)


class InterruptAtStart:
    """Ctrl-C as a resume begins, before it takes any step."""

    def on_run_started(self, *, event: RunStarted) -> None:
        raise KeyboardInterrupt


# -- waits and timers across interrupted resumes ----------------------------------------------------


def test_a_resume_whose_process_died_keeps_the_wait_timer(runs: Runs, tmp_path: Path) -> None:
    started = run(runs.start(timer(tmp_path, 30)))
    deadline = started.waiting["deadline"]
    # a resume took the lease (status running), then its process died before it did anything
    run(runs.store.acquire(started.run_id, _dead_owner(), time.time() + 3600, now=time.time(), status="running"))
    again = run(runs.resume(started.run_id))
    assert again.status == "waiting" and again.waiting["deadline"] == deadline


def test_an_interrupted_resume_of_a_waiting_run_leaves_it_waiting(runs: Runs, tmp_path: Path) -> None:
    started = run(runs.start(timer(tmp_path, 30)))
    with pytest.raises(KeyboardInterrupt):
        run(runs.resume(started.run_id, observers=[InterruptAtStart()]))
    row = run(runs.get(started.run_id))
    assert (row.status, row.lease_owner, row.wake_at) == ("waiting", None, started.waiting["deadline"])
    result = run(runs.send(started.run_id, "go", {"n": 1}))  # still takes the event it waits for
    assert result.output == "went"


def test_a_later_visit_of_a_wait_starts_a_timer_of_its_own(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))
    first_deadline = started.waiting["deadline"]
    # rejected: review -> revise (step 2) -> review (step 3), and the process dies before the run ends
    with pytest.raises(Crash):
        run(runs.send(started.run_id, "rejected", {"comment": "shorter"}, observers=[CrashAfter(3)]))
    assert run(runs.get(started.run_id)).waiting is None  # the wait it was in ended with step 2
    again = run(runs.resume(started.run_id))
    assert again.status == "waiting" and again.waiting["deadline"] > first_deadline


def test_an_event_after_the_timer_ran_out_is_refused_and_the_timeout_wins(runs: Runs, tmp_path: Path,
                                                                           db: Path) -> None:
    started = run(runs.start(timer(tmp_path, 0.1)))
    time.sleep(0.15)
    before = dump(db)
    with pytest.raises(Conflict, match="ran out"):
        run(runs.send(started.run_id, "go", {"n": 1}))
    assert dump(db) == before
    assert run(runs.resume(started.run_id)).output == "late"


# -- refused before anything is stored --------------------------------------------------------------

SLOW_STATE = """\
    agentfsm: 1
    name: hold-then-work
    initial: hold
    states:
      hold: {type: wait, event: go, next: work}
      work: {type: python, call: "MODULE:Work", next: done}
      done: {type: final, output: ok}
"""


class WorkModule:
    """A module holding the `Work` state of SLOW_STATE, importable from a folder of the test's own; it can
    go away (uninstalled since the run started) and come back."""

    def __init__(self, folder: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        folder.mkdir()
        self.file = folder / f"{name}.py"
        self.name = name
        self.monkeypatch = monkeypatch
        self.restore()
        monkeypatch.syspath_prepend(str(folder))

    def machine(self, tmp_path: Path) -> Path:
        return write(tmp_path / "hold.yaml", SLOW_STATE.replace("MODULE", self.name))

    def remove(self) -> None:
        self.file.unlink()
        self.monkeypatch.delitem(sys.modules, self.name, raising=False)

    def restore(self) -> None:
        self.file.write_text("from agentfsm import State\n\nclass Work(State):\n    pass\n")


def test_a_send_that_cannot_continue_the_run_records_no_event(runs: Runs, tmp_path: Path, db: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    module = WorkModule(tmp_path / "pkg", "held_work", monkeypatch)
    started = run(runs.start(module.machine(tmp_path)))
    assert started.status == "waiting"
    module.remove()  # the module went away since the run started
    before = dump(db)
    with pytest.raises(BindingError, match="held_work"):
        run(runs.send(started.run_id, "go"))
    assert dump(db) == before and run(runs.store.pending_events(started.run_id)) == []


def test_a_send_to_a_run_that_is_not_waiting_stores_nothing(runs: Runs, db: Path) -> None:
    machine = counter_machine(3)
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(1)], run_id="py-send"))
    before = dump(db)
    with pytest.raises(Conflict, match="not waiting"):
        run(runs.send("py-send", "go", machine=machine))  # paused, not waiting: refused, nothing stored
    assert dump(db) == before


def test_rollback_and_resume_refuses_before_making_the_branch(runs: Runs, tmp_path: Path, db: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    module = WorkModule(tmp_path / "pkg2", "gone_work", monkeypatch)
    started = run(runs.start(module.machine(tmp_path)))
    module.remove()
    before = dump(db)
    with pytest.raises(BindingError, match="gone_work"):
        run(runs.rollback_and_resume(started.run_id, "start"))
    assert dump(db) == before
    assert [b.name for b in run(runs.branches(started.run_id))] == ["main"]


# -- what comes back whole --------------------------------------------------------------------------

LONG_OUTPUT = """\
    agentfsm: 1
    name: long-output
    initial: make
    states:
      make:
        type: set
        set: {text: "{{ 'x' * 70000 }}"}
        next: done
      done: {type: final, output: "{{ text }}"}
"""


def test_a_long_output_comes_back_whole_from_a_branch_switched_to(runs: Runs, tmp_path: Path) -> None:
    run_id = run(runs.start(write(tmp_path / "long.yaml", LONG_OUTPUT))).run_id
    assert len(run(runs.get(run_id)).output) == 70_000
    run(runs.rollback(run_id, 2, branch="again"))
    back = run(runs.switch_branch(run_id, "main"))
    assert back.status == "succeeded" and back.output == "x" * 70_000
    assert run(runs.get(run_id)).output == "x" * 70_000


def test_usage_counts_every_llm_call_of_the_run_across_resumes(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))
    assert started.usage["writer"]["calls"] == 1
    rejected = run(runs.send(started.run_id, "rejected", {"comment": "shorter"}))
    assert rejected.usage["writer"]["calls"] == 2
    assert run(runs.resume(started.run_id)).usage["writer"]["calls"] == 2  # resuming calls nothing
    done = run(runs.send(started.run_id, "approved"))
    assert done.usage["writer"]["calls"] == 2
    stored = run(runs.get(started.run_id)).usage["writer"]
    assert stored["calls"] == 2 and stored["prompt_tokens"] == done.usage["writer"]["prompt_tokens"] > 0


# -- workers ----------------------------------------------------------------------------------------


def test_a_worker_skips_a_run_that_finished_after_it_claimed_it(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim keeps other workers off a run, not a person: a run cancelled while the worker got its machine
    ready is skipped (not advanced), and the worker's claim on it goes."""
    mine, theirs = Runs(f"sqlite:///{db}"), Runs(f"sqlite:///{db}")
    run_id = run(mine.start(APPROVAL)).run_id
    run(mine.send(run_id, "approved", resume=False))
    prepare = mine._machine_for

    def prepared_while_taken(*args: Any) -> Any:
        found = prepare(*args)  # this worker claimed the run and compiled its machine...
        assert run_in_thread(lambda: asyncio.run(work_once(theirs))).advanced == []  # (claimed: not theirs)
        run_in_thread(lambda: asyncio.run(theirs.cancel(run_id)))  # ...while a person cancelled it
        return found

    monkeypatch.setattr(mine, "_machine_for", prepared_while_taken)
    done = run(work_once(mine))
    assert done.skipped == [run_id] and done.failed == {} and done.advanced == []
    row = run(mine.get(run_id))
    assert (row.status, row.lease_owner) == ("cancelled", None) and len(run(mine.history(run_id))) == 1
    run(mine.close())
    run(theirs.close())


def run_in_thread(work: Any) -> Any:
    """Another process's worker, in its own thread and event loop (the store connection is its own)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def test_a_worker_takes_over_a_run_whose_process_died_at_once(runs: Runs) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    run(runs.send(run_id, "approved", resume=False))
    # a resume took the lease for an hour, then its process was killed
    run(runs.store.acquire(run_id, _dead_owner(), time.time() + 3600, now=time.time(), status="running"))
    assert run(runs.store.due_runs(time.time(), 10)) == []  # by its lease alone it is not due for an hour
    done = run(work_once(runs))
    assert [r.run_id for r in done.advanced] == [run_id] and run(runs.get(run_id)).status == "succeeded"


def test_a_stopped_worker_hands_its_runs_to_the_next_one(db: Path, tmp_path: Path) -> None:
    gate = Gate()
    machine = counter_machine(3, work=gate)
    runs = Runs(f"sqlite:///{db}")
    with pytest.raises(Crash):
        run(runs.start(machine, observers=[CrashAfter(1)], run_id="handed"))
    run(runs.store.acquire("handed", _dead_owner(), time.time() + 3600, now=time.time(), status="running"))
    original = runs._machine_for
    runs._machine_for = lambda run_row, given, llms: original(run_row, machine, llms)  # type: ignore[method-assign]

    async def stop_mid_run() -> None:
        task = asyncio.create_task(work_once(runs))
        entered = asyncio.create_task(gate.entered.wait())
        await asyncio.wait([task, entered], return_when=asyncio.FIRST_COMPLETED)
        assert gate.entered.is_set(), "the worker did not take the run over"
        # step 2 runs: the worker is stopped (Ctrl-C, SIGTERM) now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(stop_mid_run())
    row = run(runs.get("handed"))
    assert (row.status, row.lease_owner, row.steps) == ("running", None, 1)
    assert run(runs.store.due_runs(time.time(), 10)) == ["handed"]
    gate.open.set()
    done = run(work_once(runs))
    assert [r.status for r in done.advanced] == ["succeeded"] and len(run(runs.history("handed"))) == 4
    run(runs.close())


# -- branches that went separate ways ---------------------------------------------------------------


def test_diff_between_branches_goes_back_to_the_fork(runs: Runs) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    run(runs.send(run_id, "rejected", {"comment": "shorter"}))  # main: draft, review, revise (then waits)
    run(runs.rollback(run_id, 2, branch="approve-now"))
    run(runs.resume(run_id))  # waits at review again
    run(runs.send(run_id, "approved"))  # approve-now: draft | review, published
    diff = run(runs.diff(run_id, "main@head", "approve-now@head"))
    assert diff.fork == {"branch": "main", "step": 2}
    assert [(t["step"], t["branch"], t["state"]) for t in diff.undone] == [(2, "main", "review"), (3, "main", "revise")]
    assert [(t["step"], t["branch"], t["state"]) for t in diff.transitions] == [
        (2, "approve-now", "review"), (3, "approve-now", "published")]
    one_path = run(runs.diff(run_id, "main@2", "approve-now@head"))
    assert one_path.fork is None and one_path.undone == [] and len(one_path.transitions) == 2


# -- names that would make a point ambiguous --------------------------------------------------------


@pytest.mark.parametrize("name", ["start", "head", "main@3", "12", "-1", "state:x", " padded", ""])
def test_a_checkpoint_name_that_reads_as_a_point_is_refused(runs: Runs, db: Path, name: str) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    before = dump(db)
    with pytest.raises(RunRefused, match="cannot name a checkpoint"):
        run(runs.checkpoint(run_id, name))
    assert dump(db) == before


@pytest.mark.parametrize("name", ["a@b", " x", "x ", "", "tab\there"])
def test_a_branch_name_that_could_not_be_written_back_is_refused(runs: Runs, db: Path, name: str) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    before = dump(db)
    with pytest.raises(RunRefused, match="cannot name a branch"):
        run(runs.rollback(run_id, 1, branch=name))
    assert dump(db) == before


KEYWORD_STATE = """\
    agentfsm: 1
    name: keyword-states
    initial: first
    states:
      first: {type: set, set: {n: 1}, next: start}
      start: {type: set, set: {n: 2}, checkpoint: true, next: done}
      done: {type: final, output: "{{ n }}"}
"""


def test_keywords_win_over_a_checkpoint_named_after_a_state(runs: Runs, tmp_path: Path) -> None:
    run_id = run(runs.start(write(tmp_path / "kw.yaml", KEYWORD_STATE))).run_id
    assert [c.name for c in run(runs.checkpoints(run_id))] == ["start"]
    assert run(runs.point(run_id, "start")).point == 1  # the run's start, as documented
    assert run(runs.point(run_id, "state:start")).point == 2  # the state's visit is still reachable


def test_a_branch_written_before_a_point_is_honoured(runs: Runs) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    with pytest.raises(RunNotFound, match="no branch 'ghost'"):
        run(runs.point(run_id, "ghost@start"))
    with pytest.raises(RunNotFound, match="no branch 'ghost'"):
        run(runs.point(run_id, "ghost@review"))
    run(runs.rollback(run_id, 1, branch="redo"))
    run(runs.resume(run_id))  # redo: draft, then waits at review (checkpoint review#2)
    assert run(runs.point(run_id, "redo@review#2")).point == 2
    assert run(runs.point(run_id, "main@review")).point == 2
    with pytest.raises(RunNotFound, match="branch 'redo' does not pass through"):
        run(runs.point(run_id, "redo@review"))
    with pytest.raises(RunNotFound, match="has no step -1"):
        run(runs.point(run_id, "-1"))


# -- ids and the seed's save/load -------------------------------------------------------------------


def test_run_ids_made_in_one_burst_sort_in_the_order_they_were_made() -> None:
    ids = [new_run_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and {len(i) for i in ids} == {16}


def test_state_persistence_saves_one_context_again_and_again(db: Path) -> None:
    persistence = StatePersistence(f"sqlite:///{db}")
    machine = counter_machine(5)
    context = StateContext({"n": 1})
    first = run(persistence.save(machine, context))
    context.data["n"] = 2
    second = run(persistence.save(machine, context))
    assert first != second
    assert run(persistence.load(first)).data == {"n": 1} and run(persistence.load(second)).data == {"n": 2}
    run(persistence.close())


def test_a_checkpoint_named_by_hand_is_never_overwritten(runs: Runs) -> None:
    """A person names `review#2` while the run waits; the run's next review gets `review#3`."""
    run_id = run(runs.start(APPROVAL)).run_id
    run(runs.checkpoint(run_id, "review#2"))
    run(runs.send(run_id, "rejected", {"comment": "again"}))
    names = {c.name: c.point for c in run(runs.checkpoints(run_id))}
    assert names == {"review": 2, "review#2": 2, "review#3": 4}



def test_switching_to_the_branch_already_the_head_changes_nothing(runs: Runs, db: Path) -> None:
    run_id = run(runs.start(APPROVAL)).run_id  # waits at review, with a timer
    before = dump(db)
    with pytest.raises(RunRefused, match="already the head"):
        run(runs.switch_branch(run_id, "main"))
    assert dump(db) == before and run(runs.get(run_id)).status == "waiting"


def test_run_ids_that_cannot_be_one_are_not_found_clearly(runs: Runs) -> None:
    run(runs.start(APPROVAL))
    with pytest.raises(RunNotFound, match="at least 4 characters"):
        run(runs.get("1m8"))
    with pytest.raises(RunNotFound, match=r"no run '.*\\udcff"):
        run(runs.get("ab\udcffcd"))  # how Python passes on a command-line argument that is not UTF-8


# -- found by a second review -----------------------------------------------------------------------


def test_an_interrupted_resume_of_a_paused_run_leaves_it_paused_even_for_a_worker(runs: Runs) -> None:
    with pytest.raises(Crash):
        run(runs.start(counter_machine(3), observers=[CrashAfter(1)]))
    [row] = run(runs.list())
    assert row.status == "paused"
    with pytest.raises(KeyboardInterrupt):
        run(runs.resume(row.id, machine=counter_machine(3), observers=[InterruptAtStart()], on_interrupt="running"))
    assert run(runs.get(row.id)).status == "paused" and run(runs.store.due_runs(time.time(), 10)) == []


class InterruptAfter:
    """Ctrl-C right after step `step` was committed."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_ended(self, *, event: StepEnded) -> None:
        if event.step == self.step:
            raise KeyboardInterrupt


def test_an_interrupt_after_a_step_leaves_the_run_paused_or_running_for_a_worker(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))  # waits at review
    with pytest.raises(KeyboardInterrupt):  # review -> revise is committed, then Ctrl-C
        run(runs.send(started.run_id, "rejected", {"comment": "x"}, observers=[InterruptAfter(2)]))
    row = run(runs.get(started.run_id))
    assert (row.status, row.steps, row.waiting) == ("paused", 2, None)  # not waiting: that wait is over
    with pytest.raises(KeyboardInterrupt):
        run(runs.resume(started.run_id, observers=[InterruptAfter(3)], on_interrupt="running"))
    row = run(runs.get(started.run_id))
    assert (row.status, row.steps, row.lease_owner) == ("running", 3, None)
    assert run(runs.store.due_runs(time.time(), 10)) == [started.run_id]


def test_a_step_a_worker_cannot_record_leaves_the_run_paused_not_retried(runs: Runs) -> None:
    started = run(runs.start(APPROVAL))
    run(runs.send(started.run_id, "approved", resume=False))
    broken = Runs(BrokenStore(runs.store, 1))  # review takes the event; the next step cannot be recorded
    with pytest.raises(OSError):
        run(broken.resume(started.run_id, on_interrupt="running"))
    assert run(runs.get(started.run_id)).status == "paused" and run(runs.store.due_runs(time.time(), 10)) == []


def test_a_damaged_context_is_a_store_error_naming_the_step(runs: Runs, db: Path) -> None:
    import sqlite3
    from contextlib import closing

    from agentfsm.store.base import StoreError

    run_id = run(runs.start(APPROVAL)).run_id
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE steps SET context = '[{\"op\": \"nonsense\"}]' WHERE step = 1")
    with pytest.raises(StoreError, match=r"is damaged \(the context stored with step 1 of branch 'main'"):
        run(runs.diff(run_id, "start", "head"))


def test_prune_deletes_a_run_whose_owner_died_as_it_listed_it(runs: Runs) -> None:
    with pytest.raises(Crash):
        run(runs.start(counter_machine(3), observers=[CrashAfter(1)], run_id="ghost-run"))
    run(runs.store.acquire("ghost-run", _dead_owner(), time.time() + 3600, now=time.time(), status="running"))
    listed = run(runs.prune(statuses=["running"], older_than=0, dry_run=True))
    assert [r.id for r in listed] == ["ghost-run"]
    assert [r.id for r in run(runs.prune(statuses=["running"], older_than=0))] == ["ghost-run"]
    assert run(runs.list()) == []


def test_a_checkpoint_a_person_names_while_the_run_goes_on_is_kept(runs: Runs, db: Path) -> None:
    other = Runs(f"sqlite:///{db}")

    class NameItMeanwhile:
        """Another process names `review#2` while this one advances the run (before it reaches review)."""

        async def on_step_ended(self, *, event: StepEnded) -> None:
            if event.state == "review":
                await other.checkpoint(event.run_id, "review#2")

    run_id = run(runs.start(APPROVAL)).run_id
    run(runs.send(run_id, "rejected", {"comment": "again"}, observers=[NameItMeanwhile()]))
    assert {c.name: c.point for c in run(runs.checkpoints(run_id))} == {"review": 2, "review#2": 3, "review#3": 4}
    run(other.close())


class AskForGo(State):
    """A Python state that waits for `go` (what a YAML `type: wait` does, built by hand)."""

    async def execute(self, context: StateContext) -> Any:
        delivery = context.mailbox.take(("go",))
        if delivery is None:
            raise WaitForEvent(("go",), None)
        return Event("go", delivery.data)


def python_waiting_machine() -> StateMachine:
    machine = StateMachine("py-wait")
    machine.add_state(AskForGo("ask"), initial=True)
    machine.add_state(State("end"), final=True)
    machine.add_transition("ask", "end", "go")
    return machine


def test_send_continues_a_python_machine_it_is_given(runs: Runs, db: Path) -> None:
    started = run(runs.start(python_waiting_machine()))
    assert started.status == "waiting"
    before = dump(db)
    with pytest.raises(RunRefused, match="built in Python"):
        run(runs.send(started.run_id, "go"))
    assert dump(db) == before  # refused before the event was stored
    done = run(runs.send(started.run_id, "go", {"n": 1}, machine=python_waiting_machine()))
    assert done.status == "succeeded" and [s.event for s in run(runs.history(started.run_id))] == ["go", "done"]


def test_a_digit_that_is_not_ascii_is_no_step_number(runs: Runs) -> None:
    run_id = run(runs.start(APPROVAL)).run_id
    with pytest.raises(RunNotFound, match="no checkpoint '²'"):
        run(runs.point(run_id, "²"))


def test_a_forked_child_makes_ids_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(time, "time_ns", lambda: 1_800_000_000_000_000_000)  # one millisecond for everyone
    new_run_id()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: one id, written back, then gone without running pytest's exit
        os.write(writer, new_run_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        from_child = pipe.read()
    assert from_child != new_run_id()


def test_the_worker_does_not_retry_a_failing_run_on_every_pass(runs: Runs, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfsm.service.worker import Failing

    module = WorkModule(tmp_path / "pkg3", "flaky_work", monkeypatch)
    started = run(runs.start(module.machine(tmp_path)))
    run(runs.send(started.run_id, "go", resume=False))
    module.remove()
    failing: dict[str, Failing] = {}
    assert started.run_id in run(work_once(runs, failing=failing)).failed
    second = run(work_once(runs, failing=failing))
    assert second.failed == {} and second.advanced == []  # not tried again so soon
    failing[started.run_id].retry_at = 0  # its delay is over (30 s)...
    module.restore()
    third = run(work_once(runs, failing=failing))  # ...and the module is back
    assert [r.status for r in third.advanced] == ["succeeded"] and failing == {}
