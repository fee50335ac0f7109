"""Kill -9 a five-agent parallel group at many seeded moments, resume each, check every agent ran exactly once.

    python tests/stress/children_crash_stress.py --points 40 --seed 1

Prints how many points landed before the run was stored, mid-run, or after it finished, and
the failures (with what reproduces them); exits 1 if any point failed.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import children_crash  # noqa: E402 - after the path is set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    outcomes: collections.Counter[str] = collections.Counter()
    failures = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentfsm-children-crash-") as workdir:
        for point in children_crash.plan(options.points, options.seed):
            try:
                outcomes[children_crash.run_point(point, Path(workdir))] += 1
            except AssertionError as exc:
                failures.append(f"point {point.index} (delay {point.delay}s): {str(exc)[:2000]}")
    print(f"{options.points} kill points (seed {options.seed}) in {time.monotonic() - started:.1f}s: "
          + ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
          + f", {len(failures)} failed")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
