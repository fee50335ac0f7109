"""Durable runs from the command line: `run`, `resume`, `send`, `runs`, `history`, `checkpoints`,
`checkpoint`, `rollback`, `diff`, `cancel`, `prune`, `worker`, as a user sees them.

Every case runs `python -m agentfsm ...` as a real subprocess, with its own store file in
`tmp_path` (`--store`), and checks the exit code and what is printed. Bad input must change
nothing in the store: those cases compare the store's SQL dump before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentfsm import Runs

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ROOT / "machines"
APPROVAL = MACHINES / "approval.yaml"
REACT = MACHINES / "react_agent.yaml"
HELLO = MACHINES / "hello.yaml"
TASK = "task=What is 17 * 23?"
TIMEOUT = 60

_ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}
_ENV.pop("FORCE_COLOR", None)
_ENV.pop("AGENTFSM_STORE", None)  # every command names its store, or the test says where it goes

RUN_LINE = re.compile(r"^run ([0-9a-z]{16})  (\S+)$")  # `run ID  MACHINE`, the first line of the progress
# its timer outlasts any test: time passes when the test says so (timer_runs_out), not while processes start
WAIT_TIMER = """\
agentfsm: 1
name: timer
initial: start
states:
  start:
    type: set
    set: {asked: true}
    next: wait
  wait:
    type: wait
    event: go
    timeout: 1h
    transitions:
      - {event: go, to: early}
      - {event: timeout, to: late}
  early:
    type: final
    output: early
  late:
    type: final
    output: late
"""


def cli(*args: object, store: Path | None = None, cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m agentfsm ARGS... [--store STORE]`, as a user runs it."""
    argv = [sys.executable, "-m", "agentfsm", *map(str, args)]
    if store is not None:
        argv += ["--store", str(store)]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=_ENV if env is None else env, stdin=subprocess.DEVNULL)


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, show(result)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 2 and exactly one `error: ...` line on stderr; returns it."""
    no_traceback(result)
    assert result.returncode == 2, show(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), show(result)
    return lines[0]


def dump(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def started(result: subprocess.CompletedProcess[str]) -> str:
    """The run id that `run` names on the first line of stderr, once."""
    first = result.stderr.splitlines()[0] if result.stderr else ""
    found = RUN_LINE.match(first)
    assert found, show(result)
    assert [line for line in result.stderr.splitlines() if RUN_LINE.match(line)] == [first], show(result)
    return found.group(1)


def start_json(store: Path, machine: Path, *args: object) -> dict:
    result = cli("run", machine, *args, "--json", "-q", store=store)
    assert result.returncode in (0, 3), show(result)
    return json.loads(result.stdout)


def seed(store: Path, machine: Path, inputs: dict | None = None, *, send: str | None = None) -> str:
    """Start a run in this process (setup, not the subject of a test: no subprocess); its id."""
    runs = Runs(f"sqlite:///{store}")
    try:
        result = asyncio.run(runs.start(machine, inputs or {}))
        if send is not None:
            asyncio.run(runs.send(result.run_id, send))
        return result.run_id
    finally:
        asyncio.run(runs.close())


def timer_runs_out(store: Path, run_id: str) -> None:
    """Time passes for a waiting run: its timer's deadline moves into the past, where the clock would have
    taken it. The store keeps that deadline twice: `runs.wake_at` (which runs are due) and `deadline` in the
    `waiting` JSON (what a resume waits for)."""
    db = sqlite3.connect(store)
    try:
        with db:
            [waiting] = db.execute("SELECT waiting FROM runs WHERE id = ?", (run_id,)).fetchone()
            due = time.time() - 1
            db.execute("UPDATE runs SET wake_at = ?, waiting = ? WHERE id = ?",
                       (due, json.dumps({**json.loads(waiting), "deadline": due}), run_id))
    finally:
        db.close()


def runs_json(store: Path, *args: object) -> list[dict]:
    result = cli("runs", "--json", *args, store=store)
    assert result.returncode == 0, show(result)
    return json.loads(result.stdout)


def history_json(store: Path, run_id: str, *args: object) -> list[dict]:
    result = cli("history", run_id, "--json", *args, store=store)
    assert result.returncode == 0, show(result)
    return json.loads(result.stdout)


# --- the approval flow ------------------------------------------------------------------------


def test_run_waits_and_says_how_to_continue(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    result = cli("run", APPROVAL, store=store)
    no_traceback(result)
    assert result.returncode == 3, show(result)
    assert result.stdout == ""
    run_id = started(result)
    assert f"run {run_id} is waiting in state 'review' for: approved, rejected" in result.stderr
    assert "its timer is due at" in result.stderr
    hint = result.stderr.splitlines()[-1]
    assert hint == f"continue with: agentfsm send {run_id} approved --data '{{...}}' --store {store}", show(result)

    sent = cli("send", run_id, "approved", "--data", '{"comment": "ok"}', store=store)
    no_traceback(sent)
    assert sent.returncode == 0, show(sent)
    assert json.loads(sent.stdout) == {"text": "Announcing our new release: faster, simpler, ready today.",
                                       "revisions": 0}
    assert "succeeded" in sent.stderr
    [run] = runs_json(store)
    assert (run["run_id"], run["status"], run["output"]["revisions"]) == (run_id, "succeeded", 0)


def test_quiet_run_names_no_run(tmp_path: Path) -> None:
    result = cli("run", APPROVAL, "-q", store=tmp_path / "runs.db")
    assert result.returncode == 3, show(result)
    assert not RUN_LINE.match(result.stderr.splitlines()[0] if result.stderr else "")
    assert "continue with: agentfsm send" in result.stderr  # how to go on is not progress: it stays


def test_json_of_run_resume_and_send_have_the_same_keys(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    waiting = start_json(store, APPROVAL, "-i", "topic=the API")
    run_id = waiting["run_id"]
    assert waiting["status"] == "waiting"
    assert waiting["waiting"]["state"] == "review"
    assert waiting["waiting"]["events"] == ["approved", "rejected"]

    rejected = cli("send", run_id, "rejected", "--data", '{"comment": "mention the docs"}', "--json", "-q",
                   store=store)
    assert rejected.returncode == 3, show(rejected)
    again = json.loads(rejected.stdout)
    assert again["context"]["review"] == {"comment": "mention the docs"}
    assert again["context"]["text"] == "Announcing it, revised: mention the docs."

    recorded = cli("send", run_id, "approved", "--data", '{"comment": "ok"}', "--no-resume", store=store)
    assert recorded.returncode == 0, show(recorded)
    assert recorded.stdout == ""
    assert recorded.stderr == (f"event 'approved' recorded for run {run_id}; it continues with: "
                               f"agentfsm resume {run_id} --store {store} (or a worker)\n"), show(recorded)
    assert runs_json(store)[0]["status"] == "waiting"  # recorded, not taken yet

    resumed = cli("resume", run_id, "--json", "-q", store=store)
    assert resumed.returncode == 0, show(resumed)
    done = json.loads(resumed.stdout)
    assert done["status"] == "succeeded"
    assert done["output"] == {"text": "Announcing it, revised: mention the docs.", "revisions": 1}
    assert done["waiting"] is None
    assert set(waiting) == set(again) == set(done), (waiting.keys(), done.keys())
    assert {"run_id", "status", "output", "context", "steps", "error", "usage", "waiting"} <= set(done)
    assert waiting["run_id"] == again["run_id"] == done["run_id"] == run_id

    steps = history_json(store, run_id)
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert [(s["state"], s["event"], s["next_state"]) for s in steps] == [
        ("draft", "done", "review"),
        ("review", "rejected", "revise"),
        ("revise", "done", "review"),
        ("review", "approved", "published"),
        ("published", "done", None),
    ]
    table = cli("history", run_id, store=store)
    assert table.returncode == 0, show(table)
    assert table.stderr == f"run {run_id}, branch main\n"  # which branch the table shows
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0][:4] == ["step", "state", "event", "next"]
    assert [row[:4] for row in rows[1:]] == [
        ["1", "draft", "done", "review"], ["2", "review", "rejected", "revise"], ["3", "revise", "done", "review"],
        ["4", "review", "approved", "published"], ["5", "published", "done", "(end)"],
    ]

    named = cli("checkpoints", run_id, store=store)
    assert named.returncode == 0, show(named)
    assert [line.split()[:3] for line in named.stdout.splitlines()[1:]] == [["review", "main", "2"],
                                                                           ["review#2", "main", "4"]]
    listed = json.loads(cli("checkpoints", run_id, "--json", store=store).stdout)
    assert [(c["name"], c["branch"], c["step"]) for c in listed] == [("review", "main", 2), ("review#2", "main", 4)]


def test_run_names_its_run_once_it_is_recorded(tmp_path: Path) -> None:
    result = cli("run", HELLO, store=tmp_path / "runs.db")
    assert result.returncode == 0, show(result)
    run_id = started(result)
    assert RUN_LINE.match(result.stderr.splitlines()[0]).group(2) == "hello"  # type: ignore[union-attr]
    assert [line for line in result.stderr.splitlines() if run_id in line] == [f"run {run_id}  hello"], show(result)
    assert [r["run_id"] for r in runs_json(tmp_path / "runs.db")] == [run_id]


def test_a_run_the_store_refuses_shows_no_run_id(tmp_path: Path) -> None:
    """The id is printed once the store recorded the run: a locked store leaves nothing to name."""
    store = tmp_path / "runs.db"
    seed(store, HELLO)
    before = dump(store)
    db = sqlite3.connect(store, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        db.execute("UPDATE meta SET value = value")
        result = cli("run", HELLO, "--store", f"sqlite:///{store}?timeout=0.2")
    finally:
        db.execute("ROLLBACK")
        db.close()
    line = one_error_line(result)  # the error alone: no `run ID` before it
    assert "locked" in line, show(result)
    assert dump(store) == before


def test_send_no_resume_json_says_the_event_was_recorded(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, APPROVAL)
    result = cli("send", run_id[:8], "approved", "--no-resume", "--json", store=store)
    assert result.returncode == 0, show(result)
    assert result.stderr == ""
    assert json.loads(result.stdout) == {"run_id": run_id, "event": "approved", "status": "waiting", "recorded": True}
    assert len(result.stdout.splitlines()) == 1
    assert cli("resume", run_id, "-q", store=store).returncode == 0  # the recorded event is taken


def test_history_says_which_branch_and_when_there_are_no_steps(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, APPROVAL)
    assert cli("rollback", run_id, "--to", "start", store=store).returncode == 0
    empty = cli("history", run_id, store=store)
    assert empty.returncode == 0, show(empty)
    assert empty.stdout == ""
    assert empty.stderr == f"run {run_id}, branch rollback-1\nno steps\n"
    assert history_json(store, run_id) == []
    main = cli("history", run_id, "--branch", "main", store=store)
    assert main.returncode == 0, show(main)
    assert main.stderr == f"run {run_id}, branch main\n"
    assert [line.split()[:2] for line in main.stdout.splitlines()] == [["step", "state"], ["1", "draft"]]




def test_history_of_a_long_run_lists_every_step_aligned(tmp_path: Path) -> None:
    """A run longer than the pages `history` prints as it reads (1,000 rows): every step, once, in order,
    and `--json` still one list on one line."""
    store = tmp_path / "runs.db"
    run_id = seed(store, ROOT / "tests" / "machines" / "counter.yaml", {"limit": 1200})
    table = cli("history", run_id, store=store)
    assert table.returncode == 0, show(table)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["step", "state", "event", "next", "state", "duration", "error"]
    assert [int(line.split()[0]) for line in lines[1:]] == list(range(1, 2402))
    assert {line.index(line.split()[1], 4) for line in lines} == {lines[0].index("state")}  # one column
    assert lines[-1].split()[1:4] == ["done", "done", "(end)"]
    listed = cli("history", run_id, "--json", store=store)
    assert listed.returncode == 0, show(listed)
    assert len(listed.stdout.splitlines()) == 1
    steps = json.loads(listed.stdout)
    assert [step["step"] for step in steps] == list(range(1, 2402))
    assert steps[0] | {"started_at": 0, "duration": 0} == {
        "step": 1, "branch": "main", "state": "inc", "event": "done", "next_state": "check",
        "started_at": 0, "duration": 0, "retries": 0, "error": None}


def test_history_of_an_unknown_branch_prints_nothing_but_the_error(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, HELLO)
    for extra in ((), ("--json",)):
        result = cli("history", run_id, "--branch", "nope", *extra, store=store)
        assert result.returncode == 2, show(result)
        assert result.stdout == ""
        assert result.stderr.startswith("error: no branch 'nope' (branches: main)"), show(result)


def test_tables_keep_one_line_per_row_in_a_pipe(tmp_path: Path) -> None:
    """Piped into grep (no terminal, 80 columns or fewer), a row is never wrapped nor padded at its end."""
    store = tmp_path / "runs.db"
    long_name = "a-machine-whose-name-is-much-longer-than-a-terminal-line-" * 3 + "end"
    machine = tmp_path / "long.yaml"
    machine.write_text(HELLO.read_text(encoding="utf-8").replace("name: hello", f"name: {long_name}"),
                       encoding="utf-8")
    run_id = seed(store, machine)
    seed(store, HELLO)
    env = {**_ENV, "COLUMNS": "40"}
    for args in (["runs"], ["history", run_id], ["checkpoints", seed(store, APPROVAL)],
                 ["prune", "--older-than", "0", "--dry-run"]):
        result = cli(*args, store=store, env=env)
        assert result.returncode == 0, show(result)
        printed = result.stdout.splitlines()
        assert len(printed) >= 2, show(result)
        assert [line for line in printed if line != line.rstrip()] == [], show(result)
        header = printed[0].split()
        assert all(len(line.split()) >= len(header) - 1 for line in printed[1:]), show(result)  # no cut rows
    listed = cli("runs", store=store, env=env).stdout.splitlines()
    assert len(listed) == 4
    assert [line.split()[:2] for line in listed if long_name in line] == [[run_id[-8:], long_name]]  # id's tail


def test_runs_filters_and_cancel_refuses_later_events(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    waiting = seed(store, APPROVAL)
    finished = seed(store, HELLO)
    assert [r["run_id"] for r in runs_json(store, "--status", "waiting")] == [waiting]
    assert [r["run_id"] for r in runs_json(store, "--machine", "hello")] == [finished]
    assert [r["run_id"] for r in runs_json(store, "--limit", "1")] == [finished]  # newest first
    table = cli("runs", "--status", "waiting", store=store)
    assert table.returncode == 0, show(table)
    assert table.stdout.split()[:6] == ["run", "machine", "status", "steps", "branch", "updated"]
    # a table shows the tail of an id (ids start with their creation time, so their heads look alike)...
    short = table.stdout.splitlines()[1].split()[0]
    assert table.stdout.splitlines()[1].split()[:5] == [short, "approval", "waiting", "1", "main"]
    assert waiting.endswith(short) and len(short) == 8
    cancelled = cli("cancel", short, store=store)  # ...and every command takes it
    assert cancelled.returncode == 0, show(cancelled)
    assert cancelled.stderr == f"run {waiting} cancelled\n"
    assert runs_json(store, "--status", "cancelled")[0]["run_id"] == waiting
    before = dump(store)
    refused = cli("send", waiting, "approved", store=store)
    assert "cancelled" in one_error_line(refused)
    assert dump(store) == before


def test_a_run_id_prefix_is_enough(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, APPROVAL)
    result = cli("send", run_id[:10], "approved", "-q", store=store)
    assert result.returncode == 0, show(result)
    assert runs_json(store)[0]["status"] == "succeeded"


def test_the_tail_a_table_shows_names_one_run_among_runs_made_together(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    runs = Runs(f"sqlite:///{store}")
    try:
        ids = [asyncio.run(runs.start(APPROVAL)).run_id for _ in range(5)]
    finally:
        asyncio.run(runs.close())
    assert len({run_id[:4] for run_id in ids}) == 1  # made together: their heads are alike...
    assert "matches several runs" in one_error_line(cli("history", ids[2][:4], store=store))
    listed = cli("runs", store=store)
    tails = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert sorted(tails) == sorted(run_id[-8:] for run_id in ids)  # ...their tails are not
    shown = cli("history", ids[2][-8:], store=store)
    assert shown.returncode == 0 and shown.stderr.startswith(f"run {ids[2]}, branch main"), show(shown)


# --- timers -----------------------------------------------------------------------------------


def test_a_due_timer_is_taken_by_the_worker_and_by_resume(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    machine = tmp_path / "timer.yaml"
    machine.write_text(WAIT_TIMER, encoding="utf-8")
    first = cli("run", machine, store=store)
    assert first.returncode == 3, show(first)
    assert "waiting in state 'wait' for: go; its timer is due at" in first.stderr
    by_worker = started(first)
    by_resume = seed(store, machine)
    for run_id in (by_worker, by_resume):
        timer_runs_out(store, run_id)

    resumed = cli("resume", by_resume, store=store)
    assert resumed.returncode == 0, show(resumed)
    assert resumed.stdout == "late\n"
    worked = cli("worker", "--once", store=store)
    assert worked.returncode == 0, show(worked)
    assert f"run {by_worker}: succeeded" in worked.stderr
    assert by_resume not in worked.stderr  # finished already: nothing for the worker to do

    found = {run["run_id"]: run for run in runs_json(store)}
    for run_id in (by_worker, by_resume):
        assert (found[run_id]["status"], found[run_id]["output"]) == ("succeeded", "late")
        assert [(s["state"], s["event"], s["next_state"]) for s in history_json(store, run_id)] == [
            ("start", "done", "wait"), ("wait", "timeout", "late"), ("late", "done", None)]


FRAGILE = """\
agentfsm: 1
name: fragile
tools:
  shout: {python: "fragile_tools:shout"}
initial: wait
states:
  wait:
    type: wait
    event: go
    transitions:
      - {event: go, to: act}
  act:
    type: tool
    tool: shout
    args: {text: hi}
    save: said
    next: done
  done:
    type: final
    output: "{{ said }}"
"""


def test_a_run_the_worker_cannot_resume_is_reported_once(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    (tmp_path / "fragile.yaml").write_text(FRAGILE, encoding="utf-8")
    tools = tmp_path / "fragile_tools.py"
    tools.write_text("def shout(text):\n    return text.upper()\n", encoding="utf-8")
    run_id = start_json(store, tmp_path / "fragile.yaml")["run_id"]
    assert cli("send", run_id, "go", "--no-resume", store=store, cwd=tmp_path).returncode == 0
    tools.unlink()  # the run's tool can no longer be imported
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)

    worked = cli("worker", "--once", store=store, cwd=tmp_path)
    no_traceback(worked)
    assert worked.returncode == 1, show(worked)
    about = [line for line in worked.stderr.splitlines() if run_id in line]
    assert len(about) == 1 and "fragile_tools" in about[0], show(worked)
    assert worked.stderr.splitlines() == about, show(worked)


def test_an_early_resume_keeps_the_timer(tmp_path: Path) -> None:
    """Resuming before the timer is due waits again, for what is left of the same timer."""
    store = tmp_path / "runs.db"
    machine = tmp_path / "timer.yaml"
    machine.write_text(WAIT_TIMER, encoding="utf-8")
    first = start_json(store, machine)
    early = cli("resume", first["run_id"], "--json", "-q", store=store)
    assert early.returncode == 3, show(early)
    assert json.loads(early.stdout)["waiting"]["deadline"] == pytest.approx(first["waiting"]["deadline"])
    timer_runs_out(store, first["run_id"])
    assert cli("worker", "--once", store=store).returncode == 0
    assert runs_json(store)[0]["output"] == "late"


# --- rollback, branches, diff -----------------------------------------------------------------


def test_rollback_branches_and_diff(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    first = cli("run", REACT, "-i", TASK, store=store)
    assert first.returncode == 0, show(first)
    run_id = started(first)
    main = history_json(store, run_id)
    assert [s["state"] for s in main] == ["initial", "thinking", "acting", "observing", "reflecting", "thinking",
                                          "finalizing"]

    back = cli("rollback", run_id, "--to", "state:thinking", store=store)
    assert back.returncode == 0, show(back)
    assert back.stdout == ""
    assert back.stderr.splitlines() == [
        f"run {run_id}: branch 'rollback-1' starts at step 6 (state 'thinking') and is now the head",
        f"continue with: agentfsm resume {run_id} --store {store}",
    ]
    [run] = runs_json(store)
    assert (run["status"], run["branch"], run["steps"]) == ("paused", "rollback-1", 5)
    assert history_json(store, run_id, "--branch", "main") == main  # nothing is lost
    assert [s["step"] for s in history_json(store, run_id)] == [1, 2, 3, 4, 5]

    retry = cli("rollback", run_id, "--to", "2", "--branch", "retry", "--resume", "-q", store=store)
    assert retry.returncode == 0, show(retry)
    assert retry.stdout == "391\n"
    assert "branch 'retry' starts at step 2 (state 'thinking')" in retry.stderr
    steps = history_json(store, run_id)
    assert [(s["step"], s["branch"]) for s in steps] == [(1, "main")] + [(n, "retry") for n in range(2, 8)]
    [run] = runs_json(store)
    assert (run["status"], run["branch"], run["output"]) == ("succeeded", "retry", "391")

    as_json = cli("rollback", run_id, "--to", "main@state:acting", "--json", store=store)
    assert as_json.returncode == 0, show(as_json)
    assert json.loads(as_json.stdout) == {"run_id": run_id, "branch": "rollback-2", "step": 3, "state": "acting"}

    diffed = cli("diff", run_id, "retry@start", "retry@head", "--json", store=store)
    assert diffed.returncode == 0, show(diffed)
    assert len(diffed.stdout.splitlines()) == 1, show(diffed)  # one line, like every other --json
    found = json.loads(diffed.stdout)
    assert found["run_id"] == run_id
    assert (found["a"]["step"], found["a"]["state"], found["b"]["step"], found["b"]["state"]) == (1, "initial", 8,
                                                                                                  None)
    assert found["added"]["last_result"] == 391
    assert found["added"]["thought"]["final_answer"] == "391"
    assert found["changed"] == {"observations": {"old": [], "new": [391]}}
    assert found["removed"] == {}
    assert [(t["step"], t["state"], t["next_state"]) for t in found["transitions"]] == [
        (1, "initial", "thinking"), (2, "thinking", "acting"), (3, "acting", "observing"),
        (4, "observing", "reflecting"), (5, "reflecting", "thinking"), (6, "thinking", "finalizing"),
        (7, "finalizing", None)]

    text = cli("diff", run_id, "main@1", "main@3", store=store)
    assert text.returncode == 0, show(text)
    assert text.stdout.splitlines() == [
        "a: main@1 = step 1 of branch 'main', state initial",
        "b: main@3 = step 3 of branch 'main', state acting",
        '+ thought: {"thought": "I should compute 17 * 23 with the calculator.", '
        '"action": {"tool": "calculator", "input": "17 * 23"}}',
        "transitions:",
        "  1: initial --done--> thinking",
        "  2: thinking --done--> acting",
    ]


def test_diff_of_branches_that_parted_shows_both_ways_from_the_fork(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, APPROVAL)  # main: draft, then waits at review
    assert cli("send", run_id, "approved", "-q", store=store).returncode == 0  # main: review, published
    assert cli("rollback", run_id, "--to", "review", "--branch", "no", store=store).returncode == 0
    assert cli("resume", run_id, "-q", store=store).returncode == 3
    assert cli("send", run_id, "rejected", "--data", '{"comment": "x"}', "-q", store=store).returncode == 3
    text = cli("diff", run_id, "main@head", "no@head", store=store)
    assert text.returncode == 0, show(text)
    assert text.stdout.splitlines()[-7:] == [
        "a and b part after step 1 of branch 'main'",
        "undone (from there to a):",
        "  main@2: review --approved--> published",
        "  main@3: published --done--> (end)",
        "taken (from there to b):",
        "  no@2: review --rejected--> revise",
        "  no@3: revise --done--> review",
    ]
    found = json.loads(cli("diff", run_id, "main@head", "no@head", "--json", store=store).stdout)
    assert found["fork"] == {"branch": "main", "step": 2}
    assert [(t["branch"], t["step"]) for t in found["undone"]] == [("main", 2), ("main", 3)]


def test_reading_commands_refuse_an_empty_store_file_and_leave_it_empty(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    store.write_bytes(b"")
    for command in (["runs"], ["history", "abcd"], ["checkpoints", "abcd"]):
        result = cli(*command, store=store)
        assert result.returncode == 2, show(result)
        assert result.stderr == f"error: {store} is not an agentfsm store (the file is empty)\n", show(result)
    assert store.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_rollback_to_checkpoints(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, APPROVAL)
    named = cli("checkpoint", run_id, "before-decision", store=store)
    assert named.returncode == 0, show(named)
    assert named.stderr == "checkpoint 'before-decision' is step 2 of branch 'main'\n"
    assert cli("send", run_id, "approved", "-q", store=store).returncode == 0

    back = cli("rollback", run_id, "--to", "review", store=store)  # the wait's own checkpoint
    assert back.returncode == 0, show(back)
    assert "branch 'rollback-1' starts at step 2 (state 'review')" in back.stderr
    waits = cli("resume", run_id, store=store)
    assert waits.returncode == 3, show(waits)  # the approval was on the old branch: it waits again
    assert cli("send", run_id, "rejected", "--data", '{"comment": "shorter"}', "-q", store=store).returncode == 3
    assert cli("send", run_id, "approved", "-q", store=store).returncode == 0

    again = cli("rollback", run_id, "--to", "before-decision", "--branch", "second-look", "--resume", "--json", "-q",
                store=store)
    assert again.returncode == 3, show(again)
    document = json.loads(again.stdout)
    assert (document["status"], document["waiting"]["state"]) == ("waiting", "review")
    [run] = runs_json(store)
    assert (run["status"], run["branch"]) == ("waiting", "second-look")
    assert [s["state"] for s in history_json(store, run_id, "--branch", "rollback-1")] == [
        "draft", "review", "revise", "review", "published"]


# --- prune ------------------------------------------------------------------------------------


def test_prune(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    finished = [seed(store, HELLO, {"name": f"n{n}"}) for n in range(3)]  # oldest first
    waiting = seed(store, APPROVAL)

    before = dump(store)
    dry = cli("prune", "--keep-last", "1", "--dry-run", store=store)
    assert dry.returncode == 0, show(dry)
    listed = [line.split()[0] for line in dry.stdout.splitlines()[1:]]
    assert sorted(listed) == sorted(run_id[-8:] for run_id in finished[:2])  # tables show an id's tail
    assert dry.stderr == "would delete 2 run(s)\n"
    dry_json = json.loads(cli("prune", "--older-than", "0s", "--dry-run", "--json", store=store).stdout)
    assert dry_json["dry_run"] is True
    assert sorted(r["run_id"] for r in dry_json["runs"]) == sorted(finished)
    assert dump(store) == before

    kept = cli("prune", "--keep-last", "1", store=store)
    assert kept.returncode == 0, show(kept)
    assert kept.stderr == "deleted 2 run(s)\n"
    assert sorted(r["run_id"] for r in runs_json(store)) == sorted([finished[2], waiting])
    for run_id in finished[:2]:
        assert "no run" in one_error_line(cli("history", run_id, store=store))

    older = cli("prune", "--older-than", "0", "--json", store=store)  # a bare 0 needs no unit
    assert older.returncode == 0, show(older)
    assert [r["run_id"] for r in json.loads(older.stdout)["runs"]] == [finished[2]]
    assert [r["run_id"] for r in runs_json(store)] == [waiting]  # a waiting run is not pruned by default
    assert cli("prune", "--status", "waiting", "--older-than", "0s", "--json",
               store=store).returncode == 0
    assert runs_json(store) == []


# --- bad input changes nothing ----------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """A store with: a waiting approval run (with a checkpoint 'mark'), a finished one, a finished
    react-agent run, a finished hello run, and a run whose wait timed out (not resumed since)."""

    path: Path
    waiting: str
    approved: str
    react: str
    hello: str
    timed_out: str


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = tmp_path_factory.mktemp("base") / "runs.db"
    waiting = seed(path, APPROVAL)
    approved = seed(path, APPROVAL, send="approved")
    react = seed(path, REACT, {"task": "What is 17 * 23?"})
    hello = seed(path, HELLO)
    timer = path.parent / "timer.yaml"
    timer.write_text(WAIT_TIMER, encoding="utf-8")
    timed_out = seed(path, timer)
    timer_runs_out(path, timed_out)
    runs = Runs(f"sqlite:///{path}")
    try:
        asyncio.run(runs.checkpoint(waiting, "mark"))
        asyncio.run(runs.rollback(react, 3, branch="taken"))
        assert asyncio.run(runs.resume(react)).succeeded
    finally:
        asyncio.run(runs.close())
    return Base(path, waiting, approved, react, hello, timed_out)


# each case: (arguments, given the base store) and a fragment the error line must hold
BAD: dict[str, tuple[Callable[[Base], Sequence[object]], str]] = {
    "rollback-unknown-checkpoint": (lambda b: ["rollback", b.react, "--to", "nope"], "no checkpoint 'nope'"),
    "rollback-unknown-step": (lambda b: ["rollback", b.react, "--to", "999"], "no step 999"),
    "rollback-unknown-state": (lambda b: ["rollback", b.react, "--to", "state:NOPE"], "never entered state 'NOPE'"),
    "rollback-unknown-branch": (lambda b: ["rollback", b.react, "--to", "nope@2"], "no branch 'nope'"),
    "rollback-to-the-end": (lambda b: ["rollback", b.react, "--to", "head"], "nothing runs from there"),
    "rollback-existing-branch": (lambda b: ["rollback", b.react, "--to", "2", "--branch", "taken"],
                                 "already has a branch 'taken'"),
    "rollback-resume-existing-branch": (lambda b: ["rollback", b.react, "--to", "2", "--branch", "main", "--resume"],
                                        "already has a branch 'main'"),
    "resume-unknown-run": (lambda b: ["resume", "zzzzzzzzzzzz"], "no run 'zzzzzzzzzzzz'"),
    "resume-finished-run": (lambda b: ["resume", b.approved], "nothing to resume"),
    "send-to-finished-run": (lambda b: ["send", b.approved, "approved"], "succeeded"),
    "send-unknown-event": (lambda b: ["send", b.waiting, "maybe"], "it waits for: approved, rejected"),
    "send-unknown-event-no-resume": (lambda b: ["send", b.waiting, "maybe", "--no-resume"], "approved, rejected"),
    "send-data-not-json": (lambda b: ["send", b.waiting, "approved", "--data", "{comment: ok}"], "--data is not JSON"),
    "send-unknown-run": (lambda b: ["send", "zzzzzzzzzzzz", "approved"], "no run"),
    "send-data-nan": (lambda b: ["send", b.waiting, "approved", "--data", '{"score": NaN}'], "NaN is not a JSON value"),
    "send-after-the-timer": (lambda b: ["send", b.timed_out, "go"], "ran out"),
    "rollback-branch-with-at": (lambda b: ["rollback", b.react, "--to", "2", "--branch", "x@y"], "cannot name a branch"),
    "checkpoint-keyword": (lambda b: ["checkpoint", b.waiting, "head"], "cannot name a checkpoint"),
    "resume-short-prefix": (lambda b: ["resume", b.react[:3]], "at least 4 characters"),
    "diff-points-of-two-runs": (lambda b: ["diff", b.react, "1", f"{b.hello}:1"],
                                "both points must be on one run"),
    "diff-unknown-point": (lambda b: ["diff", b.react, "1", "nope"], "no checkpoint 'nope'"),
    "prune-nothing": (lambda b: ["prune"], "nothing to prune"),
    "prune-nothing-keep-last": (lambda b: ["prune", "--keep-last", "10"], "nothing to prune"),
    "prune-bad-duration": (lambda b: ["prune", "--older-than", "soon"], "is not a duration"),
    "prune-unknown-status": (lambda b: ["prune", "--status", "done"], "'done' is not a status"),
    "runs-unknown-status": (lambda b: ["runs", "--status", "done"], "'done' is not a status"),
    "checkpoint-duplicate": (lambda b: ["checkpoint", b.waiting, "mark"], "already has a checkpoint 'mark'"),
    "checkpoint-duplicate-of-a-wait": (lambda b: ["checkpoint", b.approved, "review"], "checkpoint 'review'"),
    "checkpoint-number": (lambda b: ["checkpoint", b.waiting, "7"], "cannot name a checkpoint"),
    # the end of a run that ended is no point a rollback can continue from: refused up front
    "checkpoint-at-the-end": (lambda b: ["checkpoint", b.hello, "late"], "nothing runs from its end"),
    "cancel-finished-run": (lambda b: ["cancel", b.approved], "succeeded"),
    "cancel-unknown-run": (lambda b: ["cancel", "zzzzzzzzzzzz"], "no run"),
    "history-unknown-branch": (lambda b: ["history", b.react, "--branch", "nope"], "no branch 'nope'"),
}


@pytest.fixture(scope="module")
def refused(base: Base, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, str, str]]:
    """Each case on its own copy of the base store, run together: (result, dump before, dump after)."""
    before = dump(base.path)

    def one(name: str) -> tuple[object, str, str]:
        copy = tmp_path_factory.mktemp(name) / "runs.db"
        shutil.copyfile(base.path, copy)
        args, _ = BAD[name]
        result = cli(*args(base), store=copy)
        return result, before, dump(copy)

    with ThreadPoolExecutor(max_workers=max(4, (os.cpu_count() or 2) * 2)) as pool:
        return dict(zip(BAD, pool.map(one, BAD), strict=True))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line_and_changes_nothing(refused: dict, case: str) -> None:
    result, before, after = refused[case]
    line = one_error_line(result)
    assert BAD[case][1] in line, show(result)
    assert after == before, f"{case} changed the store"


def test_the_base_store_had_nothing_pending(base: Base) -> None:
    """Every copy starts clean: no WAL left behind, so copying the file copies the store."""
    assert not Path(f"{base.path}-wal").exists() or Path(f"{base.path}-wal").stat().st_size == 0


# --- the store file itself --------------------------------------------------------------------


def test_a_file_that_is_no_store(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 16)
    content = garbage.read_bytes()
    for args in (["runs"], ["run", HELLO], ["history", "abcdabcd"]):
        result = cli(*args, store=garbage)
        line = one_error_line(result)
        assert str(garbage) in line and "not an agentfsm store" in line, show(result)
    assert garbage.read_bytes() == content


def test_a_truncated_store(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    for _ in range(3):
        seed(store, REACT, {"task": "What is 17 * 23?"})
    content = store.read_bytes()[: store.stat().st_size // 2]
    store.write_bytes(content)
    result = cli("runs", store=store)
    line = one_error_line(result)
    assert str(store) in line and "damaged" in line, show(result)
    assert store.read_bytes() == content


def test_a_store_that_is_not_there_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "runs.db"
    for args in (["history", "abcdabcd"], ["prune"], ["resume", "abcdabcd"]):
        line = one_error_line(cli(*args, store=missing))
        assert f"no store at {missing}" in line
    # listing runs where none was ever recorded is a normal question: the answer is an empty list
    listed = cli("runs", store=missing)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "no runs yet\n"), show(listed)
    as_json = cli("runs", "--json", store=missing)
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, []), show(as_json)
    assert not missing.parent.exists()
    line = one_error_line(cli("runs", store="mysql://db/runs"))
    assert "unsupported store URL 'mysql://db/runs'" in line


def _locked(store: Path, args: Sequence[object], *, exclusive_mode: bool) -> tuple[subprocess.CompletedProcess[str],
                                                                                     float]:
    """Run the command while this process holds the store's lock; how long it took."""
    db = sqlite3.connect(store, isolation_level=None)
    try:
        if exclusive_mode:  # in WAL mode only this keeps readers out too
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        db.execute("UPDATE meta SET value = value")  # the lock is taken by the first write
        began = time.monotonic()
        result = cli(*args, store=store)
        return result, time.monotonic() - began
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_a_locked_store_waits_then_says_so(tmp_path: Path) -> None:
    """The store waits for a lock for 5 s (its busy timeout), then gives up with one line."""
    reader, writer = tmp_path / "reader.db", tmp_path / "writer.db"
    for store in (reader, writer):
        seed(store, HELLO)
    before = {store: dump(store) for store in (reader, writer)}
    outcomes: dict[str, tuple[subprocess.CompletedProcess[str], float]] = {}
    threads = [
        threading.Thread(target=lambda: outcomes.__setitem__("runs", _locked(reader, ["runs"], exclusive_mode=True))),
        threading.Thread(target=lambda: outcomes.__setitem__("run", _locked(writer, ["run", HELLO, "-q"],
                                                                            exclusive_mode=False))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    for name, store in (("runs", reader), ("run", writer)):
        result, took = outcomes[name]
        line = one_error_line(result)
        assert "locked" in line and str(store) in line, show(result)
        assert 4.0 <= took <= 30.0, took
        assert dump(store) == before[store]


# --- where the store is -----------------------------------------------------------------------


def test_the_store_from_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "env.db"
    env = {**_ENV, "AGENTFSM_STORE": f"sqlite:///{store}"}
    result = cli("run", HELLO, "-q", env=env)
    assert result.returncode == 0, show(result)
    [run] = runs_json(store)
    listed = json.loads(cli("runs", "--json", env=env).stdout)
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    other = tmp_path / "other.db"
    assert cli("run", HELLO, "-q", store=other, env=env).returncode == 0  # --store wins over the variable
    assert len(runs_json(other)) == 1 and len(runs_json(store)) == 1


def test_the_default_store_is_under_the_working_directory(tmp_path: Path) -> None:
    result = cli("run", HELLO, cwd=tmp_path)
    assert result.returncode == 0, show(result)
    run_id = started(result)
    default = tmp_path / ".agentfsm" / "runs.db"
    assert default.is_file()
    assert [r["run_id"] for r in runs_json(default)] == [run_id]
    listed = cli("runs", "--json", cwd=tmp_path)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nothing = cli("runs", cwd=elsewhere)
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "no runs yet\n"), show(nothing)
    line = one_error_line(cli("history", run_id, cwd=elsewhere))
    assert "no store at" in line and "the default store" in line
    assert not (elsewhere / ".agentfsm").exists()


def test_a_send_or_rollback_that_cannot_go_on_changes_nothing(tmp_path: Path) -> None:
    """The run's Python state no longer imports: `send` and `rollback --resume` fail before they write."""
    (tmp_path / "held_work.py").write_text("from agentfsm import State\n\nclass Work(State):\n    pass\n")
    machine = tmp_path / "hold.yaml"
    machine.write_text(
        "agentfsm: 1\nname: hold\ninitial: hold\nstates:\n"
        "  hold: {type: wait, event: go, next: work}\n"
        "  work: {type: python, call: 'held_work:Work', next: done}\n"
        "  done: {type: final, output: ok}\n"
    )
    store = tmp_path / "runs.db"
    started = cli("run", machine, "-q", store=store)
    assert started.returncode == 3, show(started)
    run_id = runs_json(store)[0]["run_id"]
    (tmp_path / "held_work.py").unlink()
    before = dump(store)
    for command in (["send", run_id, "go"], ["rollback", run_id, "--to", "start", "--resume"]):
        refused = cli(*command, store=store)
        assert refused.returncode == 2, show(refused)
        assert len(refused.stderr.splitlines()) == 1 and "held_work" in refused.stderr, show(refused)
        assert dump(store) == before


RETRIED = """\
agentfsm: 1
name: retried
tools:
  flaky: {python: "always_failing:call"}
initial: call
states:
  call:
    type: tool
    tool: flaky
    retry: {errors: [tool.error], interval: 0.01, max_attempts: 2}
    catch: [{errors: ["*"], to: recover, as: problem}]
    next: done
  recover: {type: final, output: "{{ problem.detail.retries }} retries"}
  done: {type: final, output: never}
"""


def test_a_step_retried_and_then_caught_shows_its_retries(tmp_path: Path) -> None:
    (tmp_path / "always_failing.py").write_text("def call():\n    raise RuntimeError('down')\n")
    machine = tmp_path / "retried.yaml"
    machine.write_text(RETRIED, encoding="utf-8")
    store = tmp_path / "runs.db"
    result = cli("run", machine, store=store)
    assert result.returncode == 0 and result.stdout == "2 retries\n", show(result)
    [line] = [line for line in result.stderr.splitlines() if "call --tool.error--> recover" in line]
    assert "(2 retries)" in line
    steps = history_json(store, started(result))
    assert [(step["state"], step["retries"]) for step in steps] == [("call", 2), ("recover", 0)]


def test_a_diff_back_to_an_earlier_point_lists_the_steps_as_undone(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, REACT, {"task": TASK.split("=", 1)[1]})
    forward = json.loads(cli("diff", run_id, "2", "5", "--json", store=store).stdout)
    back = json.loads(cli("diff", run_id, "5", "2", "--json", store=store).stdout)
    assert [step["step"] for step in forward["transitions"]] == [2, 3, 4] and forward["undone"] == []
    assert back["transitions"] == [] and back["undone"] == forward["transitions"]
    assert back["added"] == forward["removed"] and back["removed"] == forward["added"]
    text = cli("diff", run_id, "5", "2", store=store)
    assert text.returncode == 0, show(text)
    assert "undone (b comes before a: going back from a to b):" in text.stdout
    assert "transitions:" not in text.stdout


def test_a_running_run_whose_owner_died_says_so(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, APPROVAL)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    runs = Runs(f"sqlite:///{store}")
    try:  # a process took the run up, then died without a word
        asyncio.run(runs.store.acquire(run_id, f"{socket.gethostname()}:{dead}:1.000:gone", time.time() + 3600,
                                       now=time.time(), status="running"))
    finally:
        asyncio.run(runs.close())
    listed = cli("runs", store=store)
    assert "running (owner gone)" in listed.stdout, show(listed)
    assert runs_json(store)[0]["owner_gone"] is True
