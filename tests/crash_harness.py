"""Kill -9 an `agentfsm run` at a chosen moment, resume it, and compare with an uninterrupted run.

Shared by tests/test_crash_recovery.py (a few dozen kill points in CI) and
tests/stress/crash_stress.py (hundreds). Every process is a real `python -m agentfsm`
subprocess started with an argv list; every kill point has its own SQLite store file.

A kill point is reproducible from its seed and index: `plan(count, seed, reference)` draws
the same delays again (the moment a SIGKILL lands still depends on the machine's speed,
which is why every failure message carries the delay, the anchor and the stderr seen).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MACHINE = ROOT / "tests" / "machines" / "crash_course.yaml"
TIMEOUT = 120.0
"""Seconds any one subprocess may take before it counts as hung (a failure, never a wall-clock assertion)."""

RUN_LINE = re.compile(r"^run (?P<id>[0-9a-z]{16})  \S+$")
"""The first line `run` prints (`run ID  MACHINE`, once the run is recorded)."""

# The outcomes of a kill point, by where the SIGKILL landed.
BEFORE_START = "killed before the start"
MID_RUN = "killed mid-run"
FINISHED = "already finished"


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a subprocess: no colours, no store from the environment."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}
    for name in ("FORCE_COLOR", "AGENTFSM_STORE", "CRASH_COURSE_TOOL_DELAY", "CRASH_COURSE_GATE"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def store_url(store: Path | str) -> str:
    """A store URL for a SQLite file's path (a URL, a PostgreSQL one, is kept as it is)."""
    return store if isinstance(store, str) else f"sqlite:///{store}"


@dataclass
class Finished:
    """A subprocess that ended (by itself or by our SIGKILL)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    killed: bool = False
    first_line_at: float | None = None
    """Seconds from the start to the first stderr line (None: it never printed one)."""
    elapsed: float = 0.0
    line_times: list[float] = field(default_factory=list)
    """Seconds from the start to each stderr line."""

    def show(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}{' (SIGKILLed by the test)' if self.killed else ''}"
                f"\n--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")


def agentfsm(*args: object, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Finished:
    """Run `python -m agentfsm ARGS...` to its end."""
    argv = [sys.executable, "-m", "agentfsm", *map(str, args)]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                              env=env or environment(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return Finished(argv, -999, _text(exc.stdout), _text(exc.stderr) + f"\nTIMED OUT after {timeout}s")
    return Finished(argv, done.returncode, done.stdout, done.stderr, elapsed=time.monotonic() - started)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


ANCHORS: dict[str, re.Pattern[str] | None] = {
    "spawn": None,
    "first line": re.compile(r""),
    "first step": re.compile(r"^\s*1\s.*(?:-->|\(end\))"),
}
"""What a kill's delay counts from: the spawn, the first stderr line (`run <id>` for `run`, the
progress header for `resume`), or the progress line of step 1 (the run is stored by then)."""


def spawn_and_kill(args: Sequence[object], *, delay: float | None, anchor: str = "spawn",
                   env: dict[str, str] | None = None) -> Finished:
    """Start `python -m agentfsm ARGS...` and SIGKILL it `delay` seconds after `anchor` (a key of
    ANCHORS; if the process ends before the anchor shows, it is not killed); `delay` None lets it run."""
    pattern = ANCHORS[anchor]
    argv = [sys.executable, "-m", "agentfsm", *map(str, args)]
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env or environment())
    lines: list[bytes] = []
    anchored = threading.Event()
    anchor_at: list[float] = []
    line_times: list[float] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            line_times.append(time.monotonic() - started)
            lines.append(line)
            if pattern is not None and not anchor_at and pattern.search(line.decode("utf-8", "replace")):
                anchor_at.append(line_times[-1])
                anchored.set()
        anchored.set()  # EOF: the process ended before the anchor

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    killed = False
    if delay is not None:
        if pattern is not None:
            anchored.wait(TIMEOUT)
        start = started + anchor_at[0] if anchor_at else (started if pattern is None else None)
        if start is not None:
            pause = start + delay - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        if start is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed = True
    try:
        process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        lines.append(f"\nTIMED OUT after {TIMEOUT}s: killed by the harness\n".encode())
    elapsed = time.monotonic() - started
    assert process.stdout is not None
    stdout = process.stdout.read().decode("utf-8", "replace")
    process.stdout.close()
    reader.join(10)
    assert process.stderr is not None
    process.stderr.close()
    # A SIGKILL that lands while the process exits on its own is not a kill: the exit code says which.
    killed = killed and process.returncode == -signal.SIGKILL
    return Finished(argv, process.returncode, stdout, b"".join(lines).decode("utf-8", "replace"), killed,
                    line_times[0] if line_times else None, elapsed, line_times)


# -- reading a store ------------------------------------------------------------------------------

def stored_runs(store: Path | str) -> list[dict[str, Any]]:
    """The runs in a store, as `agentfsm runs --json` lists them (read in this process: it is faster)."""
    from agentfsm import Runs

    runs = Runs(store_url(store))
    try:
        return [{"run_id": run.id, "status": run.status, "steps": run.steps, "output": run.output}
                for run in asyncio.run(runs.list())]
    finally:
        asyncio.run(runs.close())


def final_context(store: Path | str, run_id: str) -> dict[str, Any]:
    """The context at the run's head, rebuilt from the store by the Python API (read only)."""
    from agentfsm import Runs

    runs = Runs(store_url(store))
    try:
        return asyncio.run(runs.position(run_id, asyncio.run(runs.point(run_id, "head")))).data
    finally:
        asyncio.run(runs.close())


def raw_step_numbers(store: Path | str, run_id: str) -> dict[str, list[int]]:
    """Every step row the store holds for the run, per branch (step 0 included)."""
    from agentfsm import Runs

    runs = Runs(store_url(store))
    try:
        return {branch.name: [row.step for row in asyncio.run(runs.store.steps(run_id, branch.name))]
                for branch in asyncio.run(runs.branches(run_id))}
    finally:
        asyncio.run(runs.close())


# -- the reference run ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """The uninterrupted run everything is compared with."""

    run_id: str
    states: list[str]
    context: dict[str, Any]
    output: Any
    wall: float
    """Seconds from the start of the process to its exit."""
    run_line_at: float
    """Seconds from the start of the process to the `run <id>` line."""
    last_step_at: float
    """Seconds from the start of the process to the progress line of its last step."""

    @property
    def stepping(self) -> float:
        """Seconds between the `run <id>` line and the last step's progress line: when the steps run."""
        return max(self.last_step_at - self.run_line_at, 0.05)


def reference_run(workdir: Path, repeats: int = 2) -> Reference:
    """Run the machine uninterrupted (`repeats` times, in separate stores: it must come out the same) and read it."""
    found: list[Reference] = []
    for index in range(repeats):
        store = workdir / f"reference-{index}.db"
        done = spawn_and_kill(["run", MACHINE, "--json", "--store", store_url(store)], delay=None)
        if done.returncode != 0 or done.first_line_at is None:
            raise AssertionError(f"the reference run failed\n{done.show()}")
        result = json.loads(done.stdout)
        history = agentfsm("history", result["run_id"], "--json", "--store", store_url(store))
        if history.returncode != 0:
            raise AssertionError(f"cannot read the reference's history\n{history.show()}")
        steps = json.loads(history.stdout)
        assert [row["step"] for row in steps] == list(range(1, len(steps) + 1)), history.show()
        assert result["status"] == "succeeded" and result["steps"] == len(steps), done.show()
        assert final_context(store, result["run_id"]) == result["context"], "the stored context is not the result's"
        lines = done.stderr.splitlines()
        last = max(i for i, line in enumerate(lines) if re.search(r"\b\d+\s.*\(end\)", line))
        found.append(Reference(result["run_id"], [row["state"] for row in steps], result["context"],
                               result["output"], done.elapsed, done.first_line_at, done.line_times[last]))
    first = found[0]
    for other in found[1:]:
        assert (other.states, other.context, other.output) == (first.states, first.context, first.output), \
            "two uninterrupted runs of the machine differ: it is not deterministic"
    return Reference(first.run_id, first.states, first.context, first.output,
                     max(r.wall for r in found), max(r.run_line_at for r in found),
                     max(r.last_step_at for r in found))


# -- kill points ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KillPoint:
    """Where to SIGKILL `agentfsm run` (and perhaps the first `agentfsm resume` too)."""

    seed: int
    index: int
    delay: float
    anchor: str
    """What `delay` counts from (a key of ANCHORS)."""
    resume_delay: float | None = None
    """Also SIGKILL the first resume this long after its first stderr line (None: let it finish)."""

    def describe(self) -> str:
        resume = "" if self.resume_delay is None else \
            f", the first resume killed {self.resume_delay:.4f}s after its first line"
        return f"seed {self.seed} point {self.index}: SIGKILL {self.delay:.4f}s after the {self.anchor}{resume}"


def plan(count: int, seed: int, reference: Reference) -> list[KillPoint]:
    """`count` kill points drawn from `random.Random(seed)`, spread over the reference's wall time.

    Of every 10 points: one is killed right at the `run <id>` line (before or while the run is
    created), one at a moment counted from the spawn (over 1.2x the whole wall time: during the
    start-up, the steps, or after the run ended), three counted from the `run <id>` line and five
    from step 1's progress line (over 1.15x the time the steps take, so a few land after the end).
    One in 4 also kills the first resume."""
    rng = random.Random(seed)
    points = []
    for index in range(count):
        kind = index % 10
        if kind == 0:
            delay, anchor = 0.0, "first line"
        elif kind == 5:
            delay, anchor = rng.uniform(0.0, 1.2 * reference.wall), "spawn"
        elif kind in (1, 4, 7):
            delay, anchor = rng.uniform(0.0, 1.15 * reference.stepping), "first line"
        else:
            delay, anchor = rng.uniform(0.0, 1.15 * reference.stepping), "first step"
        resume_delay = rng.uniform(0.0, reference.stepping) if index % 4 == 3 else None
        points.append(KillPoint(seed, index, delay, anchor, resume_delay))
    return points


@dataclass
class Outcome:
    point: KillPoint
    kind: str = ""
    run_id: str | None = None
    steps_at_kill: int | None = None
    resumes: int = 0
    resume_killed: bool = False
    steps_at_resume_kill: int | None = None
    problems: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        head = f"{self.point.describe()} -> {self.kind or '?'}"
        if self.run_id:
            head += f" (run {self.run_id}, {self.steps_at_kill} steps committed at the kill"
            if self.resume_killed:
                head += f", {self.steps_at_resume_kill} when the first resume was killed"
            head += ")"
        return "\n".join([head, *(f"  PROBLEM: {p}" for p in self.problems), *self.transcript])


def run_point(point: KillPoint, reference: Reference, workdir: Path) -> Outcome:
    """Kill a run at `point`, resume it until it ends, and compare it with the reference."""
    outcome = Outcome(point)
    try:
        _run_point(point, reference, workdir, outcome)
    except Exception as exc:  # noqa: BLE001 - any surprise is this point's failure, with its transcript
        outcome.problems.append(f"the harness raised {type(exc).__name__}: {exc}")
    return outcome


def _run_point(point: KillPoint, reference: Reference, workdir: Path, outcome: Outcome) -> None:
    store = workdir / f"point-{point.seed}-{point.index}.db"
    url = store_url(store)
    first = spawn_and_kill(["run", MACHINE, "--json", "--store", url], delay=point.delay, anchor=point.anchor)
    outcome.transcript.append(first.show())
    complete = first.stderr.split("\n")[:-1]  # lines the process finished writing before it was killed
    printed = RUN_LINE.match(complete[0]) if complete else None
    if complete and printed is None:
        outcome.problems.append(f"the first line of stderr does not name the run: {complete[0]!r}")
    if not first.killed and first.returncode != 0:
        outcome.problems.append(f"the run ended by itself with exit {first.returncode}")
        return

    try:
        found = stored_runs(store) if store.exists() else []
    except Exception as exc:  # noqa: BLE001
        outcome.problems.append(f"cannot read the store the killed run left: {type(exc).__name__}: {exc}")
        return
    if len(found) > 1:
        outcome.problems.append(f"the store holds {len(found)} runs after one `agentfsm run`")
        return
    if not found:
        outcome.kind = BEFORE_START
        if not first.killed:
            outcome.problems.append("the run finished but the store holds no run")
        return
    run = found[0]
    outcome.run_id = run["run_id"]
    outcome.steps_at_kill = run["steps"]
    if printed is not None and printed.group("id") != run["run_id"]:
        outcome.problems.append(f"stderr named run {printed.group('id')}, the store holds {run['run_id']}")
    if not first.killed:
        result = json.loads(first.stdout)
        if result["status"] != "succeeded" or result["context"] != reference.context:
            outcome.problems.append("the uninterrupted run differs from the reference")

    # Resume until the run is complete (a killed resume is resumed again).
    outcome.kind = FINISHED if run["status"] == "succeeded" else MID_RUN
    resume_delay = point.resume_delay
    result: dict[str, Any] | None = None
    for attempt in range(1, 6):
        resumed = spawn_and_kill(["resume", run["run_id"], "--json", "--store", url], delay=resume_delay,
                                 anchor="first line")
        outcome.resumes = attempt
        outcome.transcript.append(resumed.show())
        if resumed.killed:
            outcome.resume_killed = True
            outcome.steps_at_resume_kill = next(
                (found["steps"] for found in stored_runs(store) if found["run_id"] == run["run_id"]), None)
            resume_delay = None
            continue
        status = _status(store, run["run_id"])
        if resumed.returncode == 2 and status == "succeeded":
            lines = [line for line in resumed.stderr.splitlines() if line.strip()]
            if len(lines) != 1 or "nothing to resume" not in lines[0] or "Traceback" in resumed.stderr:
                outcome.problems.append("resuming a finished run was not refused with one clear line")
            if attempt == 1 and outcome.kind == MID_RUN:
                outcome.problems.append("the run was still running at the kill but resume says it has finished")
            break
        if resumed.returncode != 0:
            outcome.problems.append(f"resume exited {resumed.returncode} (run status {status})")
            return
        result = json.loads(resumed.stdout)
        if outcome.kind == FINISHED and attempt == 1:
            outcome.problems.append("resume advanced a run that had already finished")
        break
    else:
        outcome.problems.append("the run was not complete after 5 resumes")
        return
    _compare(store, run["run_id"], reference, result, outcome)


def _status(store: Path, run_id: str) -> str | None:
    return next((run["status"] for run in stored_runs(store) if run["run_id"] == run_id), None)


def _compare(store: Path, run_id: str, reference: Reference, result: dict[str, Any] | None,
             outcome: Outcome) -> None:
    if result is not None:
        if result["status"] != "succeeded":
            outcome.problems.append(f"the resumed run ended {result['status']}: {result.get('error')}")
        if result["output"] != reference.output:
            outcome.problems.append(f"resume's output {result['output']!r} is not the reference's {reference.output!r}")
        if result["context"] != reference.context:
            outcome.problems.append(f"resume's final context differs: {_context_diff(result['context'], reference)}")
    run = next((run for run in stored_runs(store) if run["run_id"] == run_id), None)
    if run is None or run["status"] != "succeeded" or run["output"] != reference.output:
        outcome.problems.append(f"the stored run is not a success with the reference's output: {run}")
    history = agentfsm("history", run_id, "--json", "--store", store_url(store))
    if history.returncode != 0:
        outcome.transcript.append(history.show())
        outcome.problems.append("`agentfsm history` failed")
        return
    steps = json.loads(history.stdout)
    numbers = [row["step"] for row in steps]
    if numbers != list(range(1, len(numbers) + 1)):
        outcome.problems.append(f"step numbers are not 1..N without gaps or duplicates: {numbers}")
    states = [row["state"] for row in steps]
    if states != reference.states:
        outcome.problems.append(f"state path differs from the reference's: {_first_difference(states, reference.states)}")
    if {row["branch"] for row in steps} != {"main"}:
        outcome.problems.append(f"steps on other branches than main: {sorted({row['branch'] for row in steps})}")
    errors = [row for row in steps if row["error"]]
    if errors:
        outcome.problems.append(f"steps with errors: {errors}")
    raw = raw_step_numbers(store, run_id)
    if raw != {"main": list(range(len(reference.states) + 1))}:
        outcome.problems.append(f"the store's step rows are not 0..N on one branch: {raw}")
    context = final_context(store, run_id)
    if context != reference.context:
        outcome.problems.append(f"the stored final context differs: {_context_diff(context, reference)}")


def _first_difference(got: list[Any], want: list[Any]) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"step {index + 1}: {a!r} instead of {b!r} ({len(got)} steps, reference {len(want)})"
    return f"{len(got)} steps, reference {len(want)}"


def _context_diff(context: dict[str, Any], reference: Reference) -> str:
    keys = sorted(set(context) | set(reference.context))
    return "; ".join(f"{key}: {context.get(key, '<missing>')!r} != {reference.context.get(key, '<missing>')!r}"
                     for key in keys if context.get(key) != reference.context.get(key))


# -- many points ----------------------------------------------------------------------------------

def run_points(points: Sequence[KillPoint], reference: Reference, workdir: Path, jobs: int) -> list[Outcome]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda point: run_point(point, reference, workdir), points))


def summary(outcomes: Sequence[Outcome]) -> str:
    kinds = {kind: sum(o.kind == kind for o in outcomes) for kind in (BEFORE_START, MID_RUN, FINISHED)}
    failed = [o for o in outcomes if not o.ok]
    lines = [
        f"points: {len(outcomes)}",
        *(f"{kind}: {count}" for kind, count in kinds.items()),
        f"first resume also killed: {sum(o.resume_killed for o in outcomes)} (steps committed then: "
        f"{sorted(o.steps_at_resume_kill for o in outcomes if o.steps_at_resume_kill is not None)})",
        f"steps committed at the kill (mid-run): "
        f"{sorted(o.steps_at_kill for o in outcomes if o.kind == MID_RUN and o.steps_at_kill is not None)}",
        f"failures: {len(failed)}",
    ]
    lines.extend(f"\n{o.report()}" for o in failed)
    return "\n".join(lines)


def count_kill_points(points: Sequence[tuple[int, float]], run_one: Callable[[int, float, Path], str], *,
                      seed: int, prefix: str) -> int:
    """Run `run_one(index, delay, workdir)` at each kill point, print a one-line tally and the failures;
    return the exit status (1 if any point failed). The stress scripts of child runs and maps share it."""
    import collections
    import tempfile

    outcomes: collections.Counter[str] = collections.Counter()
    failures = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        for index, delay in points:
            try:
                outcomes[run_one(index, delay, Path(workdir))] += 1
            except AssertionError as exc:
                failures.append(f"point {index} (delay {delay}s): {str(exc)[:2000]}")
    print(f"{len(points)} kill points (seed {seed}) in {time.monotonic() - started:.1f}s: "
          + ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
          + f", {len(failures)} failed")
    for failure in failures:
        print(failure)
    return 1 if failures else 0
