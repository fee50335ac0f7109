"""SIGKILL the process running a parallel team of five agents, at seeded moments; `resume` finishes every agent exactly once.

More points: python tests/stress/children_crash_stress.py --points 40.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import children_crash

POINTS = children_crash.plan(4, seed=10)


@pytest.mark.parametrize("point", POINTS, ids=[f"kill-{p.index}-{p.delay}s" for p in POINTS])
def test_a_parallel_group_killed_at_any_moment_resumes_without_rerunning_finished_agents(
        point: children_crash.Point, tmp_path: Path) -> None:
    children_crash.run_point(point, tmp_path)
