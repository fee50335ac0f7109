"""Breakpoints: a run pauses before entering a state (`run --break`, `breakpoints:` in YAML, `agentfsm break RUN
STATE`, `resume --break`), is stored `paused`, exits 3 saying how to continue, and `resume` goes on past it.

Runs are recorded in a real SQLite file; the command-line cases run `python -m agentfsm` as a user does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentfsm import InputError, Runs
from agentfsm.service import debugging

ROOT = Path(__file__).resolve().parent.parent
COUNTER = """\
agentfsm: 1
name: counter
context: {n: 0}
initial: start
states:
  start: {type: set, set: {n: 0}, next: count}
  count:
    type: set
    set: {n: "{{ n + 1 }}"}
    transitions:
      - {when: "n < 5", to: count}
      - {to: done}
  done: {type: final, output: "{{ n }}"}
"""
_ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    path = tmp_path / "counter.yaml"
    path.write_text(COUNTER, encoding="utf-8")
    return path


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """`agentfsm ARGS... --store STORE` in this process (what a subprocess would add is checked once, below)."""
    from agentfsm.cli.app import app
    from agentfsm.cli.usage import run

    def invoke(*args: object, store: Path) -> Ran:
        capsys.readouterr()
        code = run(app, [*map(str, args), "--store", str(store)])
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return invoke


def subprocess_cli(*args: object, store: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agentfsm", *map(str, args), "--store", str(store)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_ENV, stdin=subprocess.DEVNULL)


def kinds(trace: list[dict], *wanted: str) -> list[dict]:
    return [entry for entry in trace if entry["kind"] in wanted]


def test_a_guarded_breakpoint_pauses_only_when_its_guard_holds_and_resume_goes_past_it(runs: Runs,
                                                                                        counter: Path) -> None:
    async def scenario() -> None:
        result = await runs.start(counter, breakpoints=["count:n >= 3"])
        assert (result.status, result.paused["state"], result.context.data) == ("paused", "count", {"n": 3})
        run = await runs.get(result.run_id)
        assert (run.status, run.steps, run.breakpoints) == ("paused", 4, ["count:n >= 3"])
        again = await runs.resume(result.run_id)  # runs `count` once, then the guard holds again
        assert (again.status, again.steps, again.context.data) == ("paused", 5, {"n": 4})
        await debugging.remove_breakpoint(runs, result.run_id, "count")
        done = await runs.resume(result.run_id)
        assert (done.status, done.output) == ("succeeded", 5)
        trace = await runs.trace(result.run_id)
        hits = kinds(trace, "breakpoint")
        assert [(hit["state"], hit["breakpoint"], hit["guard"], hit["step"]) for hit in hits] == [
            ("count", "count:n >= 3", "n >= 3", 4), ("count", "count:n >= 3", "n >= 3", 5)]
        assert [entry["reason"] for entry in kinds(trace, "paused")] == ["breakpoint", "breakpoint"]
        assert [entry["seq"] for entry in trace] == list(range(1, len(trace) + 1))  # nothing lost around a pause

    asyncio.run(scenario())


def test_a_breakpoint_on_the_initial_state_pauses_before_any_step(runs: Runs, counter: Path) -> None:
    async def scenario() -> None:
        result = await runs.start(counter, breakpoints=["start"])
        assert (result.status, result.steps, result.paused["state"]) == ("paused", 0, "start")
        assert (await runs.history(result.run_id)) == []
        done = await runs.resume(result.run_id)
        assert (done.status, done.output) == ("succeeded", 5)

    asyncio.run(scenario())


def test_breakpoints_in_the_machine_file_pause_every_run(runs: Runs, tmp_path: Path) -> None:
    path = tmp_path / "declared.yaml"
    path.write_text(COUNTER.replace("initial: start", "breakpoints: [done]\ninitial: start"), encoding="utf-8")

    async def scenario() -> None:
        result = await runs.start(path)
        assert (result.status, result.paused["state"], result.context.data["n"]) == ("paused", "done", 5)
        assert await debugging.breakpoints_of(runs, result.run_id) == ["done"]
        assert (await runs.resume(result.run_id)).output == 5

    asyncio.run(scenario())


def test_a_breakpoint_set_from_another_process_stops_a_run_going_on(db: Path, tmp_path: Path) -> None:
    """The run reads its breakpoints again (at most once a second) at each step: `agentfsm break` takes effect."""
    path = tmp_path / "slow.yaml"
    path.write_text("""\
agentfsm: 1
name: slow
initial: pause
states:
  pause:
    type: wait
    timeout: 1.5s
    transitions: [{event: timeout, to: after}]
  after: {type: set, set: {x: 1}, next: done}
  done: {type: final}
""", encoding="utf-8")

    async def scenario() -> None:
        async with Runs(f"sqlite:///{db}") as running, Runs(f"sqlite:///{db}") as other:
            started = asyncio.create_task(running.start(path, run_id="slow-run-0000001"))
            while not await other.list():
                await asyncio.sleep(0.05)
            await debugging.set_breakpoint(other, "slow-run-0000001", "after")
            result = await started
            assert (result.status, result.paused["state"]) == ("paused", "after")

    asyncio.run(scenario())


def test_bad_breakpoints_are_refused_naming_the_known_states(runs: Runs, counter: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(InputError, match=r"has no state 'cuont' \(did you mean 'count'\?\); its states: "
                                             r"count, done, start"):
            await runs.start(counter, breakpoints=["cuont"])
        with pytest.raises(InputError, match="guard syntax error"):
            await runs.start(counter, breakpoints=["count:n >"])
        assert await runs.list() == []
        result = await runs.start(counter, breakpoints=["count"])
        with pytest.raises(InputError, match="has no state 'nope'"):
            await runs.resume(result.run_id, breakpoints=["nope"])
        with pytest.raises(InputError, match="has no breakpoint 'done'"):
            await debugging.remove_breakpoint(runs, result.run_id, "done")
        assert (await runs.get(result.run_id)).breakpoints == ["count"]

    asyncio.run(scenario())


def test_the_command_line_pauses_lists_and_removes_breakpoints(cli: Callable[..., Ran], tmp_path: Path,
                                                               counter: Path) -> None:
    store = tmp_path / "runs.db"
    paused = subprocess_cli("run", counter, "--break", "count:n >= 3", store=store)
    assert paused.returncode == 3, paused.stderr
    run_id = paused.stderr.split()[1]  # the progress's first line: `run ID  MACHINE`
    assert f"run {run_id} paused before state 'count' (breakpoint count:n >= 3) after 4 step(s)" in paused.stderr
    assert f"continue with: agentfsm resume {run_id} --store {store}" in paused.stderr
    assert cli("break", run_id, "done", store=store).returncode == 0
    listed = cli("break", run_id, "--json", store=store)
    assert json.loads(listed.stdout) == ["count:n >= 3", "done"]
    assert cli("break", run_id, "count", "--remove", store=store).returncode == 0
    resumed = cli("resume", run_id, "--break", "done", store=store)  # already kept: not twice
    assert resumed.returncode == 3 and "paused before state 'done' (breakpoint done)" in resumed.stderr
    assert cli("break", run_id, store=store).stdout == "done\n"
    finished = cli("resume", run_id, store=store)
    assert (finished.returncode, finished.stdout) == (0, "5\n")


def dump(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def test_bad_input_to_break_is_one_line_exit_2_and_changes_nothing(cli: Callable[..., Ran], tmp_path: Path,
                                                                   counter: Path) -> None:
    store = tmp_path / "runs.db"
    refused = cli("run", counter, "--break", "cuont", store=store)
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        "error: --break 'cuont': machine 'counter' has no state 'cuont' (did you mean 'count'?); "
        "its states: count, done, start"]
    assert not store.exists()
    stopped = json.loads(cli("run", counter, "--json", "--break", "done", store=store).stdout)
    assert (stopped["status"], stopped["paused"]) == ("paused", {"state": "done", "reason": "breakpoint",
                                                                 "detail": {"breakpoint": "done"}})
    run_id = stopped["run_id"]
    before = dump(store)
    for args in (("break", run_id, "nope"), ("break", run_id, "count:{{"), ("resume", run_id, "--break", "nope"),
                 ("break", run_id, "start", "--remove"), ("break", "no-such-run", "done")):
        bad = cli(*args, store=store)
        assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, (args, bad.stderr)
        assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert dump(store) == before


def test_a_run_that_moved_since_its_pause_is_stopped_at_the_breakpoint_again(runs: Runs, counter: Path) -> None:
    """Only the state a breakpoint paused the run before is let through once: a run rolled back to a state with a
    breakpoint stops there at once."""
    async def scenario() -> None:
        done = await runs.start(counter)
        await debugging.set_breakpoint(runs, done.run_id, "count")
        back = await runs.rollback(done.run_id, 2)
        assert back.state == "count"
        stopped = await runs.resume(done.run_id)
        assert (stopped.status, stopped.steps, stopped.paused["state"]) == ("paused", 1, "count")
        assert (await runs.resume(done.run_id)).steps == 2  # now it goes past, and stops at the next visit

    asyncio.run(scenario())
