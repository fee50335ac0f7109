"""Ctrl-C and SIGTERM, as a user (or a service manager) sends them to `agentfsm`.

`run` is held inside a tool call of tests/machines/crash_course.yaml (its tool waits for a gate
file), so the signal lands while the run is advancing, whatever the machine's speed; the tests
wait for lines the command prints, never for a length of time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CRASH_COURSE = ROOT / "tests" / "machines" / "crash_course.yaml"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}
    for name in ("FORCE_COLOR", "AGENTFSM_STORE", "CRASH_COURSE_TOOL_DELAY", "CRASH_COURSE_GATE"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=TIMEOUT, env=env or environment(),
                          stdin=subprocess.DEVNULL)


class Started:
    """A command running in the background; its stderr lines are collected as they come."""

    def __init__(self, args: list[object], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, encoding="utf-8")
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # the end: nobody waits for more
            self._changed.notify_all()

    def wait_for(self, text: str) -> str:
        """The first stderr line holding `text`, once printed (fails if the command ends without it)."""
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in line for line in self.lines) or self.ended(),
                                           timeout=TIMEOUT)
            line = next((line for line in self.lines if text in line), None)
        assert found and line is not None, self.shown()
        return line

    def ended(self) -> bool:
        return bool(self.lines) and self.lines[-1] == "" and self.process.poll() is not None

    def finish(self) -> tuple[int, str, str]:
        """Exit code, stdout, stderr, once the command has ended."""
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        code = self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        return code, out, "\n".join(self.lines).strip("\n")

    def shown(self) -> str:
        return "--- stderr so far\n" + "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The file that lets crash_course's tool calls go on: created at the end in any case."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def held_run(tmp_path: Path, gate: Path, *extra: object) -> tuple[Started, str]:
    """`agentfsm run` of crash_course (one round), held inside its first tool call; the process and the run id."""
    store = tmp_path / "runs.db"
    started = Started(["run", CRASH_COURSE, "-i", "rounds=1", "--store", store, *extra],
                      environment({"CRASH_COURSE_GATE": str(gate)}))
    header = started.wait_for("crash-course")  # `run ID  crash-course`: the run is recorded
    started.wait_for("ask --done--> work")  # step 2 is recorded: the run is inside the tool of step 3
    return started, header.split()[1]


def test_ctrl_c_leaves_the_run_paused_and_says_how_to_continue(tmp_path: Path, gate: Path) -> None:
    store = tmp_path / "runs.db"
    started, run_id = held_run(tmp_path, gate)
    try:
        started.process.send_signal(signal.SIGINT)
        code, out, err = started.finish()
    finally:
        started.stop()
    assert code == 130, err
    assert out == ""
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"interrupted: run {run_id} is paused; "
                                    f"continue with: agentfsm resume {run_id} --store {store}"), err
    [run] = json.loads(cli("runs", "--json", "--store", store).stdout)
    assert (run["run_id"], run["status"], run["steps"]) == (run_id, "paused", 2)

    # `resume` is interrupted the same way (held in the same tool call again)
    again = Started(["resume", run_id, "--store", store], environment({"CRASH_COURSE_GATE": str(gate)}))
    try:
        again.wait_for(f"run {run_id}  crash-course")
        again.process.send_signal(signal.SIGINT)
        code, out, err = again.finish()
    finally:
        again.stop()
    assert code == 130, err
    assert err.splitlines()[-1] == (f"interrupted: run {run_id} is paused; "
                                    f"continue with: agentfsm resume {run_id} --store {store}"), err

    gate.touch()
    resumed = cli("resume", run_id, "--json", "-q", "--store", store)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["output"]["rounds"] == 1


def test_ctrl_c_with_json_still_prints_one_object(tmp_path: Path, gate: Path) -> None:
    started, run_id = held_run(tmp_path, gate, "--json")
    try:
        started.process.send_signal(signal.SIGINT)
        code, out, err = started.finish()
    finally:
        started.stop()
    assert code == 130, err
    [line] = out.splitlines()
    document = json.loads(line)
    assert set(document) == {"run_id", "status", "output", "context", "steps", "error", "usage", "waiting"}
    assert (document["run_id"], document["status"], document["steps"]) == (run_id, "paused", 2)
    assert document["error"]["type"] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_worker_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    store = tmp_path / "runs.db"
    worker = Started(["worker", "--interval", "0.1", "--store", store], environment())
    try:
        worker.wait_for("Ctrl-C or SIGTERM stops it")  # printed once the worker listens for them
        worker.process.send_signal(signum)
        code, out, err = worker.finish()
    finally:
        worker.stop()
    assert code == 0, err
    assert out == ""
    assert "Traceback" not in err and "error" not in err, err
    assert err.splitlines()[-1] == "worker stopped", err
