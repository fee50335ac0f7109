"""Kill -9 the process running a five-agent parallel team at a seeded moment, resume, compare with the expected
result: shared by tests/test_children_crash.py (a few points) and tests/stress/children_crash_stress.py (many)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests import crash_harness as harness

MACHINES = Path(__file__).resolve().parent / "machines" / "composition"
AGENTS = {"a": 0.05, "b": 0.1, "c": 0.15, "d": 0.2, "e": 0.3}
EXPECTED = {name: f"{name} did {name}-3" for name in AGENTS}


@dataclass
class Point:
    index: int
    delay: float
    outcome: str = ""
    finished_at_kill: int = -1
    """How many agents had finished when the run was killed (-1: it was not killed mid-run)."""


def plan(count: int, seed: int) -> list[Point]:
    """Kill moments after the run's first line, spread over the whole run (about 0.9 s of agent work)."""
    draw = random.Random(seed)
    return [Point(index, round(draw.uniform(0.0, 1.0), 3)) for index in range(count)]


def calls(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(entry["agent"], entry["step"]) for entry in map(json.loads, log.read_text().splitlines())]


def children(store: Path | str, run_id: str) -> dict[str, tuple[str, str]]:
    """Child name -> (run id, status)."""
    from agentfsm import Runs

    async def read() -> dict[str, tuple[str, str]]:
        async with Runs(harness.store_url(store)) as runs:
            return {row.child_name or "": (row.id, row.status) for row in await runs.list(parent=run_id)}

    return asyncio.run(read())


def run_point(point: Point, workdir: Path, store_url: str | None = None) -> str:
    """One kill point (on a store of its own, or the one at `store_url`); returns what happened, raises
    AssertionError with the evidence when it went wrong."""
    folder = workdir / f"point-{point.index}"
    folder.mkdir(parents=True)
    for name in ("crash_team.yaml", "worker.yaml", "steps.py"):
        shutil.copy(MACHINES / name, folder / name)
    store: Path | str = store_url or folder / "runs.db"
    log = folder / "calls.jsonl"
    env = harness.environment({"COMPOSITION_LOG": str(log)})
    killed = harness.spawn_and_kill(["run", folder / "crash_team.yaml", "--store", harness.store_url(store),
                                     "--json"], delay=point.delay, anchor="first line", env=env)
    first = killed.stderr.splitlines()[0] if killed.stderr else ""
    match = harness.RUN_LINE.match(first)
    if not killed.killed:
        assert killed.returncode == 0, killed.show()
        return harness.FINISHED
    if match is None:
        return harness.BEFORE_START
    run_id = match.group("id")
    before = children(store, run_id)
    point.finished_at_kill = sum(status == "succeeded" for _, status in before.values())
    calls_before = calls(log)
    evidence = f"point {point.index} (kill {point.delay}s after the first line)\n{killed.show()}"
    stored = {run["run_id"]: run for run in harness.stored_runs(store)}[run_id]
    if stored["status"] == "succeeded":  # killed while the process was exiting
        assert stored["output"] == EXPECTED, evidence
        return harness.FINISHED
    resumed = harness.agentfsm("resume", run_id, "--store", harness.store_url(store), "--json", env=env)
    evidence += f"\n{resumed.show()}"
    assert resumed.returncode == 0, evidence
    assert json.loads(resumed.stdout)["output"] == EXPECTED, evidence
    after = children(store, run_id)
    assert set(after) == set(AGENTS), evidence
    seen = calls(log)
    for name, (child_id, status) in after.items():
        assert status == "succeeded", evidence
        steps = harness.raw_step_numbers(store, child_id)
        assert steps == {"main": [0, 1, 2, 3, 4]}, f"{name}: {steps}\n{evidence}"  # no gap, no duplicate
        made = [step for agent, step in seen if agent == name]
        if before.get(name, ("", ""))[1] == "succeeded":  # finished before the kill: its tool is never called again
            assert made == [step for agent, step in calls_before if agent == name] == [1, 2, 3], evidence
        else:  # at most the step in flight at the kill runs twice
            assert sorted(set(made)) == [1, 2, 3] and len(made) <= 4, f"{name}: {made}\n{evidence}"
    return harness.MID_RUN
