"""`agentfsm run --step`: before each state a prompt on the terminal, driven here through a real pseudo-terminal
(pexpect), as a person types: step, show the context, set a value, add a breakpoint, show the last LLM exchange,
continue, quit (the run is left paused and resumable)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pexpect
import pytest

from agentfsm import Runs
from tests.cli_inprocess import Cli
from tests.test_breakpoints import COUNTER

ROOT = Path(__file__).resolve().parent.parent
PROMPT = r"\[Enter step, c, x, l, set, b, q, \?\] "


def spawn(tmp_path: Path, *args: object, command: str = "run") -> pexpect.spawn:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    argv = ["-m", "agentfsm", command, *map(str, args), "--step", "--store", f"sqlite:///{tmp_path / 'runs.db'}"]
    return pexpect.spawn(sys.executable, argv, cwd=str(tmp_path), env=env, encoding="utf-8", timeout=60,
                         dimensions=(40, 200))


def test_stepping_shows_and_sets_the_context_adds_a_breakpoint_and_quits_leaving_the_run_paused(
        tmp_path: Path) -> None:
    machine = tmp_path / "counter.yaml"
    machine.write_text(COUNTER, encoding="utf-8")
    child = spawn(tmp_path, machine)
    child.expect(r"run ([0-9a-z]{16})  counter")
    run_id = child.match.group(1)
    child.expect("before 'start' \\(step 1\\) " + PROMPT)
    child.sendline("x")
    child.expect('"n": 0')
    child.expect(PROMPT)
    child.sendline("")  # step: `start` runs
    child.expect("before 'count' \\(step 2\\) " + PROMPT)
    child.sendline("set n=4")
    child.expect("n = 4")
    child.sendline("set n={oops")
    child.expect("set n: not JSON")
    child.sendline("b dnoe")
    child.expect("has no state 'dnoe' \\(did you mean 'done'\\?\\)")
    child.sendline("b done")
    child.expect("breakpoint done")
    child.sendline("s")  # count makes n 5: on to done
    child.expect("before 'done' \\(step 3\\) " + PROMPT)
    child.sendline("q")
    child.expect(f"run {run_id} paused before state 'done' \\(stepping stopped\\) after 2 step\\(s\\)")
    child.expect(f"continue with: agentfsm resume {run_id}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3

    async def stored() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            run = await runs.get(run_id)
            assert (run.status, run.steps, run.breakpoints) == ("paused", 2, ["done"])

    asyncio.run(stored())
    resumed = spawn(tmp_path, run_id, command="resume")  # `done` runs first, the value set at the prompt kept
    resumed.expect("before 'done' \\(step 3\\) " + PROMPT)
    resumed.sendline("c")
    resumed.expect("5")
    resumed.expect(pexpect.EOF)
    resumed.close()
    assert resumed.exitstatus == 0


def test_stepping_shows_the_last_llm_exchange_then_continues_to_the_end(tmp_path: Path) -> None:
    child = spawn(tmp_path, ROOT / "machines" / "react_agent.yaml", "-i", "task=What is 17 * 23?")
    child.expect("before 'initial' \\(step 1\\) " + PROMPT)
    child.sendline("l")
    child.expect("no LLM call yet")
    child.sendline("s")
    child.expect("before 'thinking' \\(step 2\\) " + PROMPT)
    child.sendline("")
    child.expect("before 'acting' \\(step 3\\) " + PROMPT)
    child.sendline("l")
    child.expect("brain \\(scripted\\) in state 'thinking', step 2:")
    child.expect("asked: Task: What is 17 \\* 23\\?")
    child.expect('reply: .*"action"')
    child.sendline("c")
    child.expect("391")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_step_without_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    machine = tmp_path / "counter.yaml"
    machine.write_text(COUNTER, encoding="utf-8")
    done = Cli(monkeypatch, capsys)("run", machine, "--step", "--store", f"sqlite:///{tmp_path / 'runs.db'}")
    assert done.code == 2 and done.err.splitlines() == [
        "error: --step needs a terminal to ask on (stdin and stderr); use --break to pause a run instead"]
    assert not (tmp_path / "runs.db").exists()
