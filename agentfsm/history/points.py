"""Points of a run as users write them: a step number, a checkpoint name, `state:NAME`, `start` or `head`.

Any of them may name a branch first (`rollback-1@4`, `main@state:review`); without one they
are read on the run's head branch. A checkpoint is found on whichever branch it was named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentfsm.history.lineage import Segment, last_step, lineage, stream_branch
from agentfsm.store.base import BranchRow, RunNotFound, RunRow
from agentfsm.store.core import Store

_RUN_PREFIX = re.compile(r"^([0-9a-z]{4,16}):(.+)$")


class PointNotFound(RunNotFound):
    """The text names no point of the run."""


@dataclass(frozen=True, slots=True)
class Point:
    """Just before step `point` of `branch` runs; `label` is how the user wrote it."""

    branch: str
    point: int
    label: str


KEYWORDS = ("start", "head")
"""Points every run has: `start` (before its first step) and `head` (its current point)."""


_NUMBER = re.compile(r"-?[0-9]+")


def is_point_syntax(text: str) -> bool:
    """Whether `text` reads as a point by its form (a number, `state:NAME`, a keyword), whatever the checkpoints."""
    return _NUMBER.fullmatch(text) is not None or text.startswith("state:") or text in KEYWORDS


async def resolve_point(store: Store, run: RunRow, branches: list[BranchRow], text: str) -> Point:
    """The point `text` names on `run`; raises PointNotFound (or RunNotFound for an unknown branch).

    A number, `state:NAME` and the keywords are read by their form first, then a whole checkpoint name
    (a state's checkpoint may hold `@`), then `BRANCH@POINT`.
    """
    text = text.strip()
    target = await _strip_run(store, run, text)
    checkpoints = await store.checkpoints(run.id)
    if not is_point_syntax(target):
        for checkpoint in checkpoints:
            if checkpoint.name == target:
                return Point(checkpoint.branch, checkpoint.point, text)
    branch, at, rest = target.rpartition("@")
    if not at:
        branch, rest = run.head, target
    segments = lineage(branches, branch)
    last = (await last_step(store, run.id, segments)).step
    if _NUMBER.fullmatch(rest):
        number = int(rest)
        if not 1 <= number <= last + 1:
            have = f"its steps are 1 to {last}; {last + 1} is" if last else "it has no steps yet; 1 is"
            raise PointNotFound(f"run {run.id} has no step {number} on branch '{branch}' ({have} its current point)")
        return Point(branch, number, text)
    if rest.startswith("state:"):
        return await _latest_visit(store, run, segments, branch, rest.removeprefix("state:"), text)
    if rest == "start":
        return Point(branch, 1, text)
    if rest == "head":
        return Point(branch, last + 1, text)
    for checkpoint in checkpoints if at else ():
        if checkpoint.name == rest:
            if _recorder(segments, checkpoint.point - 1) != _recorder(lineage(branches, checkpoint.branch),
                                                                    checkpoint.point - 1):
                raise PointNotFound(f"checkpoint '{rest}' of run {run.id} is on branch '{checkpoint.branch}', "
                                    f"which branch '{branch}' does not pass through at step {checkpoint.point}")
            return Point(branch, checkpoint.point, text)
    names = ", ".join(checkpoint.name for checkpoint in checkpoints) or "none"
    raise PointNotFound(f"run {run.id} has no checkpoint '{rest}' (checkpoints: {names}); "
                        "a point is a checkpoint name, a step number, state:NAME, start or head")


async def _latest_visit(store: Store, run: RunRow, segments: list[Segment], branch: str, state: str,
                        text: str) -> Point:
    """Just before the latest step of `state` on the branch."""
    latest: int | None = None
    seen: dict[str, None] = {}
    async for row in stream_branch(store, run.id, segments):
        if row.step >= 1 and row.state:
            seen.setdefault(row.state, None)
            if row.state == state:
                latest = row.step
    if latest is None:
        names = ", ".join(seen) or "none yet"
        raise PointNotFound(f"run {run.id} never entered state '{state}' on branch '{branch}' (states: {names})")
    return Point(branch, latest, text)


def _recorder(segments: list[Segment], step: int) -> str | None:
    """The branch that recorded `step` as these segments see it: two branches that agree on it share all before."""
    for segment in segments:
        if segment.first <= step and (segment.last is None or step <= segment.last):
            return segment.branch
    return None


async def _strip_run(store: Store, run: RunRow, text: str) -> str:
    """`RUN:POINT` names a point of another run only to refuse it: points are compared within one run."""
    found = _RUN_PREFIX.match(text)
    if found is None or found.group(1) == "state":
        return text
    prefix = found.group(1)
    try:
        other = (await store.get_run(prefix)).id
    except RunNotFound as exc:
        if "matches several runs" in str(exc):
            raise PointNotFound(f"point '{text}': {exc}") from None
        return text  # not a run id after all: perhaps a checkpoint name with a colon
    if other == run.id:
        return found.group(2)
    raise PointNotFound(f"point '{text}' is on run {other}, not run {run.id}: both points must be on one run")
