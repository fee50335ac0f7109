"""Kill -9 `agentfsm run` at many random moments, resume each run, and compare with an uninterrupted run.

    python tests/stress/crash_stress.py --points 200 --seed 1 --jobs 4

The same harness as tests/test_crash_recovery.py (tests/crash_harness.py), with more points. It
prints a summary (points, killed before the start, killed mid-run, already finished, failures
with what reproduces them) and exits 1 if any point failed. Not collected by pytest (its name
does not start with `test_`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import crash_harness as harness  # noqa: E402 - after the path is set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200, help="how many kill points (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill delays (default 1)")
    parser.add_argument("--jobs", type=int, default=4, help="kill points run at once (default 4)")
    parser.add_argument("--keep", type=Path, help="keep the stores in this folder (default: a temporary one)")
    options = parser.parse_args(argv)
    if options.points < 1 or options.jobs < 1:
        parser.error("--points and --jobs must be 1 or more")

    with tempfile.TemporaryDirectory(prefix="agentfsm-crash-") as temporary:
        workdir = options.keep or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        reference = harness.reference_run(workdir)
        print(f"reference: {len(reference.states)} steps, {reference.wall:.2f}s wall, "
              f"steps run for {reference.stepping:.3f}s after the run line", flush=True)
        points = harness.plan(options.points, options.seed, reference)
        outcomes = harness.run_points(points, reference, workdir, options.jobs)
        print(f"seed: {options.seed}, jobs: {options.jobs}, took {time.monotonic() - started:.1f}s")
        print(harness.summary(outcomes))
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
