"""A live owner keeps its lease while its event loop is blocked, so no other process runs the step again
(issue 9). Before, a `type: python` state calling `time.sleep` past the lease's expiry stopped the renewals;
`worker --once` in another process took the run over, and both processes executed the state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.crash_harness import environment

ROOT = Path(__file__).resolve().parent.parent

BLOCKING_STATE = """\
    import os, time
    from agentfsm import State

    class Work(State):
        async def execute(self, context):
            with open(os.environ["WORK_MARKS"], "a") as marks:
                marks.write(f"{os.getpid()}\\n")
            time.sleep(float(os.environ["WORK_BLOCKS_FOR"]))  # synchronous: the event loop stands still
            return None
    """

MACHINE = """\
    agentfsm: 1
    name: blocking
    initial: work
    states:
      work: {type: python, call: "blocking_work:Work", next: done}
      done: {type: final, output: ok}
    """

OWNER = """\
import asyncio, sys
from agentfsm import Runs

async def main():
    async with Runs(sys.argv[1], lease_seconds=float(sys.argv[3])) as runs:
        result = await runs.start(sys.argv[2], run_id="blocked-run")
        print(result.status)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
def test_a_blocked_event_loop_keeps_its_lease_and_the_step_runs_once(tmp_path: Path) -> None:
    (tmp_path / "blocking_work.py").write_text(textwrap.dedent(BLOCKING_STATE), encoding="utf-8")
    machine = tmp_path / "blocking.yaml"
    machine.write_text(textwrap.dedent(MACHINE), encoding="utf-8")
    marks = tmp_path / "marks"
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    lease = 1.0
    env = environment({"PYTHONPATH": os.pathsep.join((str(tmp_path), str(ROOT))), "WORK_MARKS": str(marks), "WORK_BLOCKS_FOR": str(3 * lease)})
    owner = subprocess.Popen([sys.executable, "-c", OWNER, store, str(machine), str(lease)], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (marks.exists() and marks.read_text()) and owner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marks.exists() and marks.read_text().count("\n") == 1, owner.communicate()
        time.sleep(1.5 * lease)  # past the lease's expiry, had nothing renewed it
        worker = subprocess.run([sys.executable, "-m", "agentfsm", "worker", "--once", "--store", store],
                                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        out, err = owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    assert owner.returncode == 0 and out.strip() == "succeeded", err
    assert worker.returncode == 0, worker.stderr
    assert marks.read_text().splitlines() == [str(owner.pid)], "the state ran in two processes"
    listed = subprocess.run([sys.executable, "-m", "agentfsm", "runs", "--json", "--store", store], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    [run] = json.loads(listed.stdout)
    assert (run["status"], run["steps"]) == ("succeeded", 2)
    assert os.path.exists(tmp_path / "runs.db")
