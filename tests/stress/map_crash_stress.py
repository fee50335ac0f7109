"""Kill -9 a run in the middle of a `map` (six items, two at once) at many seeded moments, resume it, and check
that the items finished before the kill are never run again and the outputs come back whole, in item order.

    python tests/stress/map_crash_stress.py --points 30 --seed 1

Prints how many points landed before the run was stored, mid-run, or after it finished, and the failures;
exits 1 if any point failed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import crash_harness as harness  # noqa: E402 - after the path is set
from tests.test_map import children_status, copy_machines, logged  # noqa: E402

ITEMS = 6


def run_point(index: int, delay: float, workdir: Path) -> str:
    folder = workdir / f"point-{index}"
    folder.mkdir()
    fanout = copy_machines(folder)
    store, log = folder / "runs.db", folder / "calls.jsonl"
    env = harness.environment({"MAP_LOG": str(log), "PYTHONPATH": str(folder)})
    docs = json.dumps([f"d{i}" for i in range(ITEMS)])
    killed = harness.spawn_and_kill(["run", fanout, "--store", harness.store_url(store), "-i", f"docs={docs}",
                                     "-i", "delay=0.2"], delay=delay, anchor="first line", env=env)
    if not killed.killed:
        assert killed.returncode == 0, killed.show()
        return harness.FINISHED
    lines = killed.stderr.splitlines()
    match = harness.RUN_LINE.match(lines[0]) if lines else None
    if match is None:
        return harness.BEFORE_START
    run_id = match.group("id")
    before, finished = logged(log, "index"), children_status(store, run_id)
    outputs = [f"D{i}#{i}" for i in range(ITEMS)]
    stored = {run["run_id"]: run for run in harness.stored_runs(store)}[run_id]
    if stored["status"] == "succeeded":  # killed while the process was exiting
        assert stored["output"] == outputs, killed.show()
        return harness.FINISHED
    resumed = harness.agentfsm("resume", run_id, "--store", harness.store_url(store), "--json", env=env)
    evidence = f"point {index} (kill {delay}s after the first line)\n{killed.show()}\n{resumed.show()}"
    assert resumed.returncode == 0, evidence
    assert json.loads(resumed.stdout)["output"] == outputs, evidence
    after = logged(log, "index")
    for name, status in finished.items():
        if status == "succeeded":
            item = int(name.split("[")[1].rstrip("]"))
            assert after.count(item) == before.count(item) == 1, f"{name}: {before} -> {after}\n{evidence}"
    assert sorted(set(after)) == list(range(ITEMS)) and all(after.count(i) <= 2 for i in range(ITEMS)), evidence
    return harness.MID_RUN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    draw = random.Random(options.seed)
    points = [(index, round(draw.uniform(0.0, 0.8), 3)) for index in range(options.points)]
    return harness.count_kill_points(points, run_point, seed=options.seed, prefix="agentfsm-map-crash-")

if __name__ == "__main__":
    sys.exit(main())
