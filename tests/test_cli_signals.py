"""Ctrl-C and SIGTERM, as a user (or a service manager) sends them to `agentfsm`; `agentfsm cancel` from
another process; and a reader that goes away before the output ends (`agentfsm runs | head -1`).

`run` is held inside a tool call of tests/machines/crash_course.yaml (its tool waits for a gate
file), so the signal lands while the run is advancing, whatever the machine's speed; the tests
wait for lines the command prints, never for a length of time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from agentfsm import Runs
from tests.crash_harness import environment

ROOT = Path(__file__).resolve().parent.parent
CRASH_COURSE = ROOT / "tests" / "machines" / "crash_course.yaml"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=TIMEOUT, env=env or environment(),
                          stdin=subprocess.DEVNULL)


def _as_from_a_terminal() -> None:
    """Ctrl-C as a terminal delivers it: a shell's background job (`pytest ... &`) starts with SIGINT ignored,
    and a Python started with SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Started:
    """A command running in the background; its stderr lines are collected as they come."""

    def __init__(self, args: list[object], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, encoding="utf-8", preexec_fn=_as_from_a_terminal)
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

    def interrupt(self, signal_number: int = signal.SIGINT) -> tuple[int, str, str]:
        """Send a signal and wait for the command to end: exit code, stdout, stderr."""
        try:
            self.process.send_signal(signal_number)
            return self.finish()
        finally:
            self.stop()

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
    code, out, err = started.interrupt()
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
    except BaseException:
        again.stop()
        raise
    code, out, err = again.interrupt()
    assert code == 130, err
    assert err.splitlines()[-1] == (f"interrupted: run {run_id} is paused; "
                                    f"continue with: agentfsm resume {run_id} --store {store}"), err

    gate.touch()
    resumed = cli("resume", run_id, "--json", "-q", "--store", store)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["output"]["rounds"] == 1


def test_ctrl_c_with_json_still_prints_one_object(tmp_path: Path, gate: Path) -> None:
    started, run_id = held_run(tmp_path, gate, "--json")
    code, out, err = started.interrupt()
    assert code == 130, err
    [line] = out.splitlines()
    document = json.loads(line)
    assert set(document) == {"run_id", "status", "output", "context", "steps", "error", "usage", "waiting", "paused"}
    assert (document["run_id"], document["status"], document["steps"]) == (run_id, "paused", 2)
    assert document["error"]["type"] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_worker_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    store = tmp_path / "runs.db"
    worker = Started(["worker", "--interval", "0.1", "--store", store], environment())
    try:
        worker.wait_for("Ctrl-C or SIGTERM stops it")  # printed once the worker listens for them
    except BaseException:
        worker.stop()
        raise
    code, out, err = worker.interrupt(signum)
    assert code == 0, err
    assert out == ""
    assert "Traceback" not in err and "error" not in err, err
    assert err.splitlines()[-1] == "worker stopped", err


def _lease_owner(store: Path, run_id: str) -> str | None:
    with closing(sqlite3.connect(store)) as db:
        row = db.execute("SELECT lease_owner FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else row[0]


def test_a_worker_stopped_mid_run_hands_the_run_to_the_next_worker(tmp_path: Path, gate: Path) -> None:
    store = tmp_path / "runs.db"
    started, run_id = held_run(tmp_path, gate)
    started.process.kill()  # kill -9 inside the tool call of step 3
    started.stop()
    worker = Started(["worker", "--interval", "0.1", "--store", store], environment({"CRASH_COURSE_GATE": str(gate)}))
    try:
        worker.wait_for("Ctrl-C or SIGTERM stops it")
        deadline = time.monotonic() + TIMEOUT  # a guard against a hang, not a timing assertion
        while f":{worker.process.pid}:" not in (_lease_owner(store, run_id) or ""):  # taken over, held in the tool
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.shown()
            time.sleep(0.05)
    except BaseException:
        worker.stop()
        raise
    code, _, err = worker.interrupt(signal.SIGTERM)
    assert code == 0 and err.splitlines()[-1] == "worker stopped", err
    [run] = json.loads(cli("runs", "--json", "--store", store).stdout)
    assert (run["status"], run["steps"]) == ("running", 2)  # handed back: due for the next worker at once
    assert _lease_owner(store, run_id) is None
    gate.touch()
    again = cli("worker", "--once", "--store", store, env=environment({"CRASH_COURSE_GATE": str(gate)}))
    assert again.returncode == 0, again.stderr
    assert f"run {run_id}: succeeded" in again.stderr


# --- a reader that goes away: `agentfsm ... | head -1` ------------------------------------------

try:
    from fcntl import F_SETPIPE_SZ, fcntl
except ImportError:  # not Linux: no way to make a pipe smaller than the output
    F_SETPIPE_SZ = None

PIPE_SIZE = 4096
"""The pipe is shrunk to one page, so an output several times as long is still being written when the test
closes the pipe: the command's next write finds no reader (as `head -1` leaves it), whatever its speed."""


def as_in_a_shell() -> dict[str, str]:
    """The environment of a user's shell: stdout buffered, as Python buffers a pipe, so the last write is Python's
    own flush at exit (whoever runs the tests may have set PYTHONUNBUFFERED)."""
    return {name: value for name, value in environment().items() if name != "PYTHONUNBUFFERED"}


def first_line_then_closed(args: list[object]) -> tuple[str, int, str]:
    """`agentfsm ARGS | head -1`: stdout's first line, then the pipe is closed; (that line, exit code, stderr)."""
    read_end, write_end = os.pipe()
    fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
    process = subprocess.Popen([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, env=as_in_a_shell(),
                               stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    line = b""
    with open(read_end, "rb", buffering=0) as reader:  # byte by byte: what is not read stays in the pipe
        while not line.endswith(b"\n") and (byte := reader.read(1)):
            line += byte
    assert process.stderr is not None
    err = process.stderr.read().decode()
    return line.decode(), process.wait(TIMEOUT), err


def closed_from_the_start(args: list[object]) -> tuple[int, str]:
    """`agentfsm ARGS` writing into a pipe nobody reads any more; (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, env=as_in_a_shell(),
                              stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE, timeout=TIMEOUT)
    finally:
        os.close(write_end)
    return done.returncode, done.stderr.decode()


LONG = "a_state_named_at_length_so_that_every_row_of_a_table_is_wide_"
WIDE = f"""\
agentfsm: 1
name: {"a-machine-named-at-length-" * 12}
context: {{n: 0}}
initial: {LONG}bump
states:
  {LONG}bump: {{type: set, set: {{n: "{{{{ n + 1 }}}}"}}, next: {LONG}check}}
  {LONG}check:
    type: choice
    transitions:
      - {{when: "n < 50", to: {LONG}bump}}
      - {{to: done}}
  done: {{type: final, output: "{{{{ n }}}}"}}
""" + "".join(f"  unused_{n}_{LONG}: {{type: set, set: {{x: 1}}, next: done}}\n" for n in range(100))
"""A machine whose tables, diagram and warnings (100 unreachable states) are many pages long."""


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """WIDE's file, and a store holding 40 of its runs (each 101 steps): (machine, store, a run id)."""
    folder = tmp_path_factory.mktemp("wide")
    machine, store = folder / "wide.yaml", folder / "runs.db"
    machine.write_text(WIDE, encoding="utf-8")
    runs = Runs(f"sqlite:///{store}")
    try:
        ids = [asyncio.run(runs.start(machine, {})).run_id for _ in range(40)]
    finally:
        asyncio.run(runs.close())
    return machine, store, ids[0]


def _reading(wide: tuple[Path, Path, str]) -> dict[str, list[object]]:
    machine, store, run_id = wide
    return {"runs": ["runs", "--limit", "100", "--store", store], "history": ["history", run_id, "--store", store],
            "schema": ["schema"], "diagram": ["diagram", machine], "validate": ["validate", machine]}


@pytest.mark.skipif(F_SETPIPE_SZ is None, reason="needs a pipe shorter than the output (Linux's F_SETPIPE_SZ)")
@pytest.mark.parametrize("command", ["runs", "history", "schema", "diagram", "validate"])
def test_a_reader_that_stops_after_one_line_ends_the_command_quietly(wide: tuple[Path, Path, str],
                                                                      command: str) -> None:
    args = _reading(wide)[command]
    whole = subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, env=as_in_a_shell(),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
    assert whole.returncode == 0, whole.stderr
    assert len(whole.stdout.encode()) > 3 * PIPE_SIZE  # still writing when the pipe closes

    line, code, err = first_line_then_closed(args)
    assert line == whole.stdout.splitlines(keepends=True)[0]
    assert code == 0, err
    # what it printed on stderr before it stopped, and nothing else: no error, traceback, "Exception ignored"
    assert whole.stderr.startswith(err), err


HELLO = ROOT / "machines" / "hello.yaml"
CLOSED_FROM_THE_START = {
    "runs": ["runs"], "runs --json": ["runs", "--json"], "history --json": ["history", "RUN", "--json"], "schema": ["schema"],
    "diagram": ["diagram", ROOT / "machines" / "react_agent.yaml"], "run": ["run", HELLO, "--quiet"],
    "run --json": ["run", HELLO, "--quiet", "--json"], "--help": ["--help"], "runs --help": ["runs", "--help"],
    "--version": ["--version"],
}


@pytest.mark.parametrize("case", list(CLOSED_FROM_THE_START))
def test_output_into_a_pipe_closed_from_the_start_ends_quietly(wide: tuple[Path, Path, str], case: str) -> None:
    _, store, run_id = wide
    args = [run_id if arg == "RUN" else arg for arg in CLOSED_FROM_THE_START[case]]
    if args[0] in ("runs", "history", "run") and "--help" not in args:
        args += ["--store", store]
    assert closed_from_the_start(args) == (0, "")


# --- `agentfsm cancel` from another process --------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_run_cancelled_while_it_advances_exits_1(tmp_path: Path, gate: Path, as_json: bool) -> None:
    """The exit code the docs give a cancelled run: `run` stops at its next step and exits 1, saying why."""
    store = tmp_path / "runs.db"
    started, run_id = held_run(tmp_path, gate, *(["--json"] if as_json else []))
    try:
        cancelled = cli("cancel", run_id, "--store", store)
        assert (cancelled.returncode, cancelled.stderr) == (0, f"run {run_id} cancelled\n")
        gate.touch()  # the tool call ends; the run's next step finds it cancelled
        code, out, err = started.finish()
    finally:
        started.stop()
    assert code == 1, err
    if as_json:
        document = json.loads(out)
        assert (document["run_id"], document["status"]) == (run_id, "cancelled")
    else:
        assert out == ""
        assert err.splitlines()[-1] == f"error: run {run_id} was cancelled", err
