"""Crash safety: `agentfsm run` killed with SIGKILL at random moments, then resumed, ends exactly like
an uninterrupted run (same state path, same final context and output, steps 1..N without gaps or
duplicates); and a second process cannot advance a run another live process holds.

The machine is tests/machines/crash_course.yaml (61 steps of set, scripted llm, python tool and
choice states; its checksum depends on every step). The harness is tests/crash_harness.py, shared
with tests/stress/crash_stress.py, which runs hundreds of kill points:

    python tests/stress/crash_stress.py --points 200 --seed 1 --jobs 4

A failure names its seed, point, delay and anchor, and shows each process's exit code and stderr.
Set CRASH_SEED to run this test with other kill points.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfsm import Runs
from tests import crash_harness as harness

SEED = int(os.environ.get("CRASH_SEED", "20240611"))
POINTS = 24
JOBS = 3


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> harness.Reference:
    return harness.reference_run(tmp_path_factory.mktemp("crash-reference"))


@pytest.fixture(scope="module")
def outcomes(reference: harness.Reference, tmp_path_factory: pytest.TempPathFactory) -> list[harness.Outcome]:
    points = harness.plan(POINTS, SEED, reference)
    return harness.run_points(points, reference, tmp_path_factory.mktemp("crash-points"), JOBS)


def test_the_reference_run_is_long_enough_and_deterministic(reference: harness.Reference) -> None:
    assert 40 <= len(reference.states) <= 80
    assert {"bump", "ask", "work", "fold", "check", "done"} == set(reference.states)
    assert reference.output["words"].split()[:3] == ["alpha", "bravo", "charlie"]
    # every set step's own step number is in the context, so a doubled or lost step shows
    assert reference.context["steps_seen"] == [step for step, state in enumerate(reference.states, 1)
                                               if state in ("bump", "fold")]


def test_every_kill_point_resumes_to_the_reference(outcomes: list[harness.Outcome]) -> None:
    assert len(outcomes) >= 20
    failed = [outcome for outcome in outcomes if not outcome.ok]
    assert not failed, f"CRASH_SEED={SEED}\n{harness.summary(outcomes)}"


def test_the_kills_landed_in_the_middle_of_runs(outcomes: list[harness.Outcome]) -> None:
    """Not a timing assertion on the product: it checks the harness killed runs that had started
    (five points in ten count from step 1's progress line, which the run commits before it prints)."""
    mid_run = [outcome for outcome in outcomes if outcome.kind == harness.MID_RUN]
    assert len(mid_run) >= POINTS // 3, harness.summary(outcomes)
    assert any(outcome.steps_at_kill for outcome in mid_run), harness.summary(outcomes)


# -- a second live process ------------------------------------------------------------------------

@pytest.fixture
def gated_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path, list[str], threading.Event]]:
    """`agentfsm run` of crash_course.yaml (one round) held inside its first tool call until the test
    creates the gate file; yields the process, the gate, the store, its stderr lines (growing), and an
    event set once step 2 (the llm state before the tool) has been printed."""
    gate = tmp_path / "gate"
    store = tmp_path / "runs.db"
    env = harness.environment({"CRASH_COURSE_GATE": str(gate)})
    process = subprocess.Popen(
        [sys.executable, "-m", "agentfsm", "run", harness.MACHINE, "-i", "rounds=1", "--json",
         "--store", harness.store_url(store)],
        cwd=harness.ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: list[str] = []
    in_tool = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if "ask --done--> work" in line:
                in_tool.set()
        in_tool.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield process, gate, store, lines, in_tool
    finally:
        gate.touch()
        try:
            process.wait(harness.TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)


def test_a_second_process_cannot_resume_a_run_being_advanced(
        gated_run: tuple[subprocess.Popen[bytes], Path, Path, list[str], threading.Event]) -> None:
    process, gate, store, lines, in_tool = gated_run
    assert in_tool.wait(harness.TIMEOUT)
    assert process.poll() is None, "".join(lines)
    run_id = harness.RUN_LINE.match(lines[0]).group("id")  # type: ignore[union-attr]
    before = harness.stored_runs(store)
    assert [(run["run_id"], run["status"], run["steps"]) for run in before] == [(run_id, "running", 2)]

    for extra in (["--json"], []):
        refused = harness.agentfsm("resume", run_id, *extra, "--store", harness.store_url(store))
        shown = f"{''.join(lines)}\n{refused.show()}"
        assert refused.returncode == 2, shown
        assert refused.stdout == "", shown
        assert len(refused.stderr.strip().splitlines()) == 1, shown
        assert "being advanced by" in refused.stderr and run_id in refused.stderr, shown
        assert "Traceback" not in refused.stderr, shown
        assert process.poll() is None, shown
    assert harness.stored_runs(store) == before  # the refusal changed nothing

    gate.touch()
    process.wait(harness.TIMEOUT)
    assert process.stdout is not None
    result = json.loads(process.stdout.read())
    assert process.returncode == 0, "".join(lines)
    assert result["status"] == "succeeded" and result["output"]["rounds"] == 1
    history = harness.agentfsm("history", run_id, "--json", "--store", harness.store_url(store))
    steps = json.loads(history.stdout)
    assert [row["step"] for row in steps] == [1, 2, 3, 4, 5, 6]
    assert [row["state"] for row in steps] == ["bump", "ask", "work", "fold", "check", "done"]
    assert harness.final_context(store, run_id) == result["context"]
    assert [run["status"] for run in harness.stored_runs(store)] == ["succeeded"]


def test_a_run_killed_inside_a_tool_call_is_taken_over_at_once(tmp_path: Path) -> None:
    """The lease of a SIGKILLed run names a dead process: resume takes over without waiting for it
    to expire (30 s), and the step in flight (the tool call) runs again from its start."""
    gate = tmp_path / "gate"
    store = tmp_path / "runs.db"
    env = harness.environment({"CRASH_COURSE_GATE": str(gate)})
    held = harness.spawn_and_kill(["run", harness.MACHINE, "--json", "--store", harness.store_url(store)],
                                  delay=0.2, anchor="first step", env=env)
    assert held.killed, held.show()
    [run] = harness.stored_runs(store)
    assert (run["status"], run["steps"]) == ("running", 2), held.show()
    runs = Runs(harness.store_url(store))
    try:
        lease = asyncio.run(runs.get(run["run_id"]))
    finally:
        asyncio.run(runs.close())
    assert lease.lease_owner and lease.lease_expires is not None
    resumed = harness.agentfsm("resume", run["run_id"], "--json", "--store", harness.store_url(store))
    assert resumed.returncode == 0, resumed.show()
    # The resume ended while the dead process's lease was still valid: it took the run over at once.
    assert time.time() < lease.lease_expires, resumed.show()
    result = json.loads(resumed.stdout)
    reference = json.loads(harness.agentfsm("run", harness.MACHINE, "--json", "--quiet", "--store",
                                            harness.store_url(tmp_path / "reference.db")).stdout)
    assert result["status"] == "succeeded"
    assert (result["output"], result["context"]) == (reference["output"], reference["context"])
