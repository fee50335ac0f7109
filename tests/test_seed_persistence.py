"""The seed's persistence and history (`StatePersistence`, `AutoSaveStateMachine`, `VersionedStateMachine`,
`DiffTracker`), checked as a user sees them: what loads back, in this process or another, what the store
keeps (every save, snapshot and branch readable, as `agentfsm history` reads runs), and what it costs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Runs, State, StateContext, StateMachine
from agentfsm.history.deltas import ContextNotJSON
from agentfsm.history.errors import RunRefused
from agentfsm.history.leases import new_owner
from agentfsm.seed import DiffTracker, StateHistory, StatePersistence, VersionedStateMachine
from agentfsm.store import LeaseHeld, open_store

ROOT = Path(__file__).resolve().parent.parent


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def dump(db: Path) -> str:
    connection = sqlite3.connect(db)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def python(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` in a new Python process (the store it opens is that process's own)."""
    env = {key: value for key, value in os.environ.items() if key != "AGENTFSM_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(cwd)])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def machine_at(state: str | None, **data: Any) -> StateMachine:
    machine = StateMachine("seed")
    machine.current_state = state
    machine.context.update(data)
    return machine


# -- StatePersistence ---------------------------------------------------------------------------------------


def test_a_machine_saved_in_one_process_loads_in_another(tmp_path: Path) -> None:
    saved = python("""
        import asyncio
        from agentfsm.seed import StateMachine, StatePersistence

        async def main():
            machine = StateMachine("writer")
            machine.current_state = "drafting"
            machine.context.set("draft", {"title": "Day 5", "words": [1, 2, 3]})
            await StatePersistence("saves").save_state("writer/42", machine)

        asyncio.run(main())
    """, tmp_path)
    assert saved.returncode == 0, saved.stderr
    assert (tmp_path / "saves" / "runs.db").is_file()

    machine = StateMachine("writer")
    assert run(StatePersistence(tmp_path / "saves").load_state("writer/42", machine)) is True
    assert machine.current_state == "drafting"
    assert machine.context.get("draft") == {"title": "Day 5", "words": [1, 2, 3]}


def test_every_save_is_a_step_of_the_machine_ids_run_and_none_is_overwritten(tmp_path: Path) -> None:
    persistence = StatePersistence(tmp_path)
    machine = machine_at("one", n=1)
    for state, n in (("one", 1), ("two", 2), ("three", 3)):
        machine.current_state = state
        machine.context.set("n", n)
        run(persistence.save_state("job", machine))

    run_id = persistence.run_id("job")
    shown = subprocess.run([sys.executable, "-m", "agentfsm", "history", run_id, "--json", "--store",
                            f"sqlite:///{tmp_path / 'runs.db'}"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert [(step["event"], step["next_state"]) for step in json.loads(shown.stdout)] == [
        ("save", "two"), ("save", "three")]
    runs = Runs(persistence.store)
    assert run(runs.diff(run_id, "1", "3")).changed == {"n": {"old": 1, "new": 3}}
    loaded = StateMachine("seed")
    assert run(persistence.load_state("job", loaded)) and loaded.context.data == {"n": 3}
    assert run(runs.get(run_id)).status == "paused"  # Runs.resume(run_id, machine=...) continues it at 'three'


def test_checkpoints_load_and_a_name_saved_again_keeps_the_earlier_one(tmp_path: Path) -> None:
    persistence = StatePersistence(str(tmp_path))
    machine = machine_at("review", draft="v1")
    assert run(persistence.save_checkpoint("doc", "approved", machine)) == "approved"
    machine.context.set("draft", "v2")
    assert run(persistence.save_checkpoint("doc", "approved", machine)) == "approved#2"
    machine.current_state, machine.context = "publish", StateContext({"draft": "v3"})
    run(persistence.save_state("doc", machine))

    loaded = StateMachine("seed")
    assert run(persistence.load_checkpoint("doc", "approved", loaded))
    assert (loaded.current_state, loaded.context.data) == ("review", {"draft": "v2"})  # the newest of that name
    listed = run(persistence.list_checkpoints("doc"))
    assert [(entry["name"], entry["state"], entry["step"]) for entry in listed] == [
        ("approved#2", "review", 2), ("approved", "review", 1)]
    # the first one is still there, for `agentfsm rollback RUN --to approved` as for anything else
    runs = Runs(persistence.store)
    assert run(runs.position(persistence.run_id("doc"), run(runs.point(persistence.run_id("doc"), "approved")))
               ).data == {"draft": "v1"}


def test_a_load_of_something_never_saved_returns_false_and_changes_nothing(tmp_path: Path) -> None:
    persistence = StatePersistence(tmp_path)
    machine = machine_at("mine", keep=True)
    context = machine.context
    assert run(persistence.load_state("never saved", machine)) is False
    assert run(persistence.load_checkpoint("never saved", "cp", machine)) is False
    assert run(persistence.list_checkpoints("never saved")) == []
    assert run(Runs(persistence.store).list()) == []

    run(persistence.save_state("saved", machine_at("there", n=1)))
    before = dump(tmp_path / "runs.db")
    assert run(persistence.load_checkpoint("saved", "no such point", machine)) is False
    assert run(persistence.load_state("save", machine)) is False  # a prefix of a saved id is another id
    assert machine.current_state == "mine" and machine.context is context and context.data == {"keep": True}
    assert dump(tmp_path / "runs.db") == before


MACHINE_IDS = ["", "a", "A", "a b", "a-b", "a_b", "../../etc/passwd", "ünïcödé", "名前", "bad\udcffutf8",
               "x" * 1000, "x" * 1001, "test", "test_machine", "1m8abcdefghjkmnp", "with\nnewline", "@head"]


def test_any_text_is_a_machine_id_of_its_own(tmp_path: Path) -> None:
    persistence = StatePersistence(tmp_path)
    run_ids = [persistence.run_id(machine_id) for machine_id in MACHINE_IDS]
    assert len(set(run_ids)) == len(MACHINE_IDS)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", run_id) and len(run_id) <= 53 for run_id in run_ids)
    assert persistence.run_id("test_machine") == persistence.run_id("test_machine")  # the same id every time

    async def round_trip() -> list[Any]:
        for number, machine_id in enumerate(MACHINE_IDS):
            await persistence.save_state(machine_id, machine_at(f"s{number}", number=number))
        found = []
        for machine_id in MACHINE_IDS:
            machine = StateMachine("seed")
            assert await persistence.load_state(machine_id, machine)
            found.append((machine.current_state, machine.context.get("number")))
        return found

    assert run(round_trip()) == [(f"s{number}", number) for number in range(len(MACHINE_IDS))]


def test_a_context_that_is_not_json_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    persistence = StatePersistence(tmp_path)
    with pytest.raises(ContextNotJSON, match="'tags'"):
        run(persistence.save_state("job", machine_at("a", tags={"x", "y"})))
    assert run(persistence.stored_run("job")) is None

    run(persistence.save_state("job", machine_at("a", n=1)))
    before = dump(tmp_path / "runs.db")
    with pytest.raises(ContextNotJSON, match="'when'"):
        run(persistence.save_checkpoint("job", "cp", machine_at("b", n=2, when=object())))
    assert dump(tmp_path / "runs.db") == before  # no step, no point, and the lease handed back as it was


def test_a_checkpoint_name_that_reads_as_a_point_is_refused(tmp_path: Path) -> None:
    persistence = StatePersistence(tmp_path)
    for name in ("3", "start", "head", "state:review", "a@b", " padded"):
        with pytest.raises(RunRefused, match="cannot name a checkpoint"):
            run(persistence.save_checkpoint("job", name, machine_at("a")))
    assert run(persistence.stored_run("job")) is None


def test_a_folder_a_store_url_a_store_file_and_a_store_all_name_a_store(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "there" / "yet"
    run(StatePersistence(folder).save_state("job", machine_at("a", n=1)))
    db = folder / "runs.db"
    assert db.is_file()

    async def loads(where: Any) -> int:
        machine = StateMachine("seed")
        assert await StatePersistence(where).load_state("job", machine)
        return int(machine.context.get("n"))

    assert run(loads(str(folder))) == run(loads(f"sqlite:///{db}")) == run(loads(db)) == 1
    store = open_store(f"sqlite:///{db}")
    assert run(loads(store)) == 1
    run(store.close())
    assert agentfsm.StatePersistence is StatePersistence


# -- AutoSaveStateMachine --------------------------------------------------------------------------------------

JOB = '''
"""Four states, a to d; each appends its name to `seen` and to a log file of the process that ran it."""

import os
import signal
from agentfsm.seed import AutoSaveStateMachine, State


class Step(State):
    def __init__(self, name, target, log, die=False):
        super().__init__(name)
        self.target, self.log, self.die = target, log, die

    async def execute(self, context):
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies in this state, after the steps before it
        context.set("seen", [*context.get("seen", []), self.name])
        with open(self.log, "a") as log:
            log.write(self.name + "\\n")
        return self.target


def build(persistence, log, die_in=None):
    machine = AutoSaveStateMachine("job", "nightly job", persistence)
    names = ["a", "b", "c", "d"]
    for name, target in zip(names, [*names[1:], None]):
        machine.add_state(Step(name, target, log, die=name == die_in), initial=name == "a", final=target is None)
        if target:
            machine.add_transition(name, target)
    return machine
'''


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "seedjob.py").write_text(JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    import seedjob

    yield seedjob
    monkeypatch.delitem(sys.modules, "seedjob")


def test_auto_save_resumes_after_the_process_is_killed(tmp_path: Path, job: Any) -> None:
    killed = python("""
        import asyncio
        from agentfsm.seed import StatePersistence
        from seedjob import build

        asyncio.run(build(StatePersistence("saves"), "first.log", die_in="c").start({"seen": []}))
    """, tmp_path)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "first.log").read_text().split() == ["a", "b"]

    machine = job.build(StatePersistence(tmp_path / "saves"), str(tmp_path / "second.log"))
    context = run(machine.start({"seen": []}))
    assert context.get("seen") == ["a", "b", "c", "d"]
    assert (tmp_path / "second.log").read_text().split() == ["c", "d"]  # a and b did not run again
    assert machine.current_state == "d"
    row = run(Runs(machine.persistence.store).get(machine.run_id))
    assert (row.status, row.steps) == ("succeeded", 4)


def test_each_step_is_saved_before_the_next_state_starts(tmp_path: Path, job: Any) -> None:
    persistence = StatePersistence(tmp_path)
    machine = job.build(persistence, str(tmp_path / "log"))
    seen_in_store: list[list[str | None]] = []

    async def look(context: StateContext) -> None:
        steps = await Runs(persistence.store).history(machine.run_id)
        seen_in_store.append([row.state for row in steps])

    for name in ("b", "c", "d"):
        machine.states[name].add_entry_callback(look)
    run(machine.start())
    assert seen_in_store == [["a"], ["a", "b"], ["a", "b", "c"]]


def test_a_machine_id_another_live_process_advances_is_refused(tmp_path: Path, job: Any) -> None:
    persistence = StatePersistence(tmp_path)
    machine = job.build(persistence, str(tmp_path / "log"))
    run(persistence.save_state("nightly job", machine))
    holder = new_owner()  # this process is alive: its lease holds
    run(persistence.store.acquire(machine.run_id, holder, time.time() + 60, now=time.time()))
    with pytest.raises(LeaseHeld):
        run(machine.start())
    assert not (tmp_path / "log").exists()


def test_a_machine_id_whose_run_ended_is_not_run_again(tmp_path: Path, job: Any) -> None:
    persistence = StatePersistence(tmp_path)
    first = run(job.build(persistence, str(tmp_path / "log")).start())
    again = job.build(persistence, str(tmp_path / "log"))
    context = run(again.start())
    assert context.get("seen") == first.get("seen") == ["a", "b", "c", "d"]
    assert (tmp_path / "log").read_text().split() == ["a", "b", "c", "d"]
    assert again.current_state == "d"
    with pytest.raises(RunRefused, match="has succeeded"):
        run(persistence.save_state("nightly job", again))


def test_restore_checkpoint_rolls_back_to_it_and_start_continues_from_there(tmp_path: Path, job: Any) -> None:
    persistence = StatePersistence(tmp_path)
    machine = job.build(persistence, str(tmp_path / "log"))
    named: list[str] = []

    async def checkpoint(context: StateContext) -> None:
        named.append(await machine.create_checkpoint("before c"))

    machine.states["c"].add_entry_callback(checkpoint)
    run(machine.start())
    assert named == ["before c"]
    assert run(machine.restore_checkpoint("no such point")) is False

    assert run(machine.restore_checkpoint("before c")) is True
    assert machine.current_state == "c" and machine.context.get("seen") == ["a", "b"]
    context = run(machine.start())
    assert context.get("seen") == ["a", "b", "c", "d"]
    assert named == ["before c", "before c#2"]  # the rerun of c named its point again, keeping the first
    assert (tmp_path / "log").read_text().split() == ["a", "b", "c", "d", "c", "d"]
    runs = Runs(persistence.store)
    assert [branch.name for branch in run(runs.branches(machine.run_id))] == ["main", "rollback-1"]
    assert [row.state for row in run(runs.history(machine.run_id, "main"))] == ["a", "b", "c", "d"]


def test_a_checkpoint_between_runs_saves_the_machine_first(tmp_path: Path, job: Any) -> None:
    persistence = StatePersistence(tmp_path)
    machine = job.build(persistence, str(tmp_path / "log"))
    machine.context.set("seen", ["given"])
    assert run(machine.create_checkpoint("not started")) == "not started"
    context = run(machine.start())  # the saved machine stands at its initial state: the run starts there
    assert context.get("seen") == ["given", "a", "b", "c", "d"]


# -- VersionedStateMachine ----------------------------------------------------------------------------------------


class Count(State):
    async def execute(self, context: StateContext) -> str | None:
        context.set("count", context.get("count", 0) + 1)
        return {"a": "b", "b": "c"}.get(self.name)


def counting(store: Any = None) -> VersionedStateMachine:
    machine = VersionedStateMachine("counting", store)
    machine.add_state(Count("a"), initial=True)
    machine.add_state(Count("b"))
    machine.add_state(Count("c"), final=True)
    machine.add_transition("a", "b")
    machine.add_transition("b", "c")
    return machine


def test_a_run_is_snapshotted_where_it_starts_and_after_each_transition() -> None:
    machine = counting()
    run(machine.start({"count": 0}))
    history = machine.history
    assert history.get_state_path() == ["a", "b", "c"]
    assert [snapshot.context.get("count") for snapshot in history.snapshots] == [0, 1, 2]
    assert [snapshot.transition_index for snapshot in history.snapshots] == [0, 1, 2]
    assert history.pending_writes == 0  # each was written before the next state started

    assert run(machine.rollback_to_state("b")) is True
    assert (machine.current_state, machine.context.get("count")) == ("b", 1)
    context = run(machine.start(machine.context))  # continues from b
    assert context.get("count") == 3
    assert machine.current_branch == "rollback-1"
    assert machine.history.get_state_path() == ["a", "b", "c"]
    summary = machine.get_history_summary()
    assert summary["branches"] == ["main", "rollback-1"] and summary["state_visits"] == {"a": 1, "b": 1, "c": 1}


def test_rollback_branch_and_switch_keep_every_snapshot_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    machine = VersionedStateMachine("editor", url)
    machine.current_state = "editing"
    for version in range(4):
        machine.context.set("text", f"v{version}")
        assert machine.history.take_snapshot("editing", machine.context).index == version
    assert machine.create_checkpoint("v3 saved")
    assert machine.create_branch("idea")
    machine.context.set("text", "v4, unsaved")

    async def travel() -> None:
        assert await machine.rollback(2)  # the unsaved v4 is kept as a snapshot first: two back is v2
        assert machine.context.get("text") == "v2"
        machine.context.set("text", "v2 reworked")
        assert await machine.switch_branch("idea")
        assert machine.context.get("text") == "v3"
        assert await machine.rollback_to_point("v3 saved")
        assert await machine.switch_branch("no such branch") is False
        assert await machine.rollback_to_point("no such point") is False

    run(travel())
    run(machine.close())

    async def read_back() -> dict[str, list[tuple[str | None, Any]]]:
        async with Runs(url) as runs:
            kept: dict[str, list[tuple[str | None, Any]]] = {}
            for branch in await runs.branches(machine.run_id):
                path = await runs.history(machine.run_id, branch.name)
                for step in range(1, len(path) + 2):
                    point = await runs.point(machine.run_id, f"{branch.name}@{step}")
                    where = await runs.position(machine.run_id, point)
                    kept.setdefault(branch.name, []).append((where.state, where.data.get("text")))
            return kept

    kept = run(read_back())
    assert kept["main"] == [("editing", "v0"), ("editing", "v1"), ("editing", "v2"), ("editing", "v3"),
                            ("editing", "v4, unsaved")]
    assert kept["rollback-1"] == [("editing", "v0"), ("editing", "v1"), ("editing", "v2"),
                                  ("editing", "v2 reworked")]
    assert kept["idea"] == [("editing", "v0"), ("editing", "v1"), ("editing", "v2"), ("editing", "v3")]
    assert kept["rollback-2"][-1] == ("editing", "v3")


def test_a_durable_history_is_read_back_by_a_new_machine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    first = counting(url)
    run(first.start({"count": 0}))
    first.create_checkpoint("done")  # after c ran: a snapshot of its own, since c changed the count
    run(first.rollback(1))  # to the snapshot before: entering c

    later = VersionedStateMachine("counting", url, run_id=first.run_id)
    with pytest.raises(RunRefused, match="load"):
        later.history.take_snapshot("a", later.context)
    run(later.load())
    assert later.current_branch == "rollback-1" and later.branches == ["main", "rollback-1"]
    assert (later.current_state, later.context.get("count")) == ("c", 2)
    assert [point.name for point in later.history.checkpoints] == ["done"]
    assert run(later.rollback_to_point("done")) and later.context.get("count") == 3
    assert later.branches == ["main", "rollback-1", "rollback-2"]


def test_sync_writes_reach_the_store_at_the_next_awaited_call(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    machine = VersionedStateMachine("sync", url)
    machine.current_state = "here"
    machine.context.set("value", "main")
    assert machine.create_branch("feature") and not machine.create_branch("feature")
    assert machine.history.pending_writes > 0
    assert run(Runs(url).list()) == []  # nothing written yet
    run(machine.flush())
    assert machine.history.pending_writes == 0
    assert [branch.name for branch in run(Runs(url).branches(machine.run_id))] == ["main", "feature"]
    assert run(Runs(url).get(machine.run_id)).head == "main"  # creating a branch does not switch to it


def test_a_refused_rollback_branch_or_point_changes_nothing() -> None:
    machine = VersionedStateMachine("empty")
    machine.context.set("x", 1)
    assert run(machine.rollback(1)) is False
    assert run(machine.rollback_to_state("x")) is False
    assert run(machine.rollback_to_snapshot(0)) is False
    assert machine.history.create_rollback_point("nothing yet") is False
    with pytest.raises(RunRefused, match="cannot name a branch"):
        machine.create_branch("a@b")
    with pytest.raises(RunRefused, match="cannot name a rollback point"):
        machine.create_checkpoint("state:x")
    assert machine.history.snapshots == [] and machine.history.pending_writes == 0
    assert machine.context.get("x") == 1 and machine.branches == []


def test_snapshot_storage_grows_with_what_changes_not_with_the_context() -> None:
    big = "x" * 200_000
    history = StateHistory()
    context = StateContext({"transcript": big, "count": 0})
    for count in range(200):
        context.set("count", count)
        history.take_snapshot("talking", context)
    run(history.flush())

    async def stored_bytes() -> int:
        rows = await history.store.steps(history.run_id, "main")
        return sum(len(row.context or "") for row in rows)

    assert len(history.snapshots) == 200
    assert run(stored_bytes()) < len(big) + 200 * 100  # one copy of the big value, then a few bytes a snapshot
    assert history.snapshots[150].context.data == {"transcript": big, "count": 150}


def test_diff_tracker_compares_contexts_and_snapshots() -> None:
    old = StateContext({"kept": 1, "gone": "x", "changed": 1}, metadata={"owner": "me"})
    new = StateContext({"kept": 1, "changed": True, "new": [1]}, metadata={"owner": "you"})
    diff = DiffTracker.diff_contexts(old, new)
    assert diff["data_changes"] == {
        "gone": {"old": "x", "new": None, "action": "removed"},
        "changed": {"old": 1, "new": True, "action": "modified"},  # 1 and true are not the same JSON
        "new": {"old": None, "new": [1], "action": "added"},
    }
    assert diff["metadata_changes"] == {"owner": {"old": "me", "new": "you"}}

    machine = counting()
    run(machine.start())
    first, last = machine.history.snapshots[0], machine.history.snapshots[-1]
    compared = DiffTracker.diff_snapshots(first, last)
    assert (compared["state_change"], compared["old_state"], compared["new_state"]) == (True, "a", "c")
    assert compared["context_diff"]["data_changes"]["count"]["new"] == 2 and compared["time_diff"] >= 0
    assert json.dumps(compared)  # plain JSON, as everything else a history gives back
