"""Kill -9 a five-agent parallel group at many seeded moments, resume each, check every agent ran exactly once.

    python tests/stress/children_crash_stress.py --points 40 --seed 1

Prints how many points landed before the run was stored, mid-run, or after it finished, and
the failures (with what reproduces them); exits 1 if any point failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import children_crash  # noqa: E402 - after the path is set
from tests import crash_harness as harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    points = [(point.index, point.delay) for point in children_crash.plan(options.points, options.seed)]
    return harness.count_kill_points(
        points, lambda index, delay, workdir: children_crash.run_point(children_crash.Point(index, delay), workdir),
        seed=options.seed, prefix="agentfsm-children-crash-")

if __name__ == "__main__":
    sys.exit(main())
