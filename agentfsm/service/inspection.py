"""Looking into one stored run: the context at a point (`show`), its branches (`branches`), and the one screen
that tells its story (`inspect`): where it went, where it stands, what went wrong, what it cost.

    async with agentfsm.Runs(URL) as runs:
        at = await context_at(runs, run_id, "state:review")   # a PointContext
        story = await inspect_run(runs, run_id)                 # an Inspection; views.inspection_json(story)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfsm.history.lineage import last_step, lineage, stream_branch
from agentfsm.history.rewrite import ended_status
from agentfsm.history.trace_read import entries_of, resolve
from agentfsm.service.costs import Cost, run_cost
from agentfsm.service.masking import masked_context
from agentfsm.service.runs import Runs
from agentfsm.store.base import BranchRow, CheckpointRow, RunFilter, RunRow, StepRow


@dataclass(frozen=True, slots=True)
class PointContext:
    """The context just before step `point` of `branch` runs (`state` about to run; None: the run had ended)."""

    run_id: str
    label: str
    branch: str
    point: int
    state: str | None
    context: dict[str, Any]
    visits: dict[str, int]


async def context_at(runs: Runs, run_id: str, text: str) -> PointContext:
    """The whole context at a point as `rollback --to` and `diff` read it: a step number (just before that step),
    a checkpoint name, `state:NAME` (just before its latest visit), `start`, `head`, or `BRANCH@POINT`."""
    point = await runs.point(run_id, text)
    where = await runs.position(run_id, point)
    run = await runs.get(run_id)
    return PointContext(run.id, point.label, point.branch, point.point, where.state, where.data, where.visits)


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """One branch of a run: where it forked, how far it went, and how it stands."""

    name: str
    parent: str | None
    fork: int | None
    """The point of `parent` it starts at (None for `main`)."""
    last: int
    """Its newest step (its own, or the one it forked after)."""
    state: str | None
    """The state it is about to run, or ended in."""
    status: str
    """The run's status for the head branch; else `succeeded`/`failed` when it ended, `open` when it did not."""
    head: bool
    created_at: float


async def branch_list(runs: Runs, run_id: str) -> list[BranchInfo]:
    """Every branch of the run, oldest first."""
    run = await runs.get(run_id)
    branches = await runs.store.branches(run.id)
    found = []
    for branch in sorted(branches, key=lambda row: (row.created_at, row.name)):
        last = await last_step(runs.store, run.id, lineage(branches, branch.name))
        ended = ended_status(last)
        status = run.status if branch.name == run.head else ended or "open"
        found.append(BranchInfo(branch.name, branch.parent, branch.fork if branch.parent else None, last.step,
                                last.next_state or last.state, status, branch.name == run.head,
                                branch.created_at))
    return found


@dataclass(frozen=True, slots=True)
class PathMark:
    """A point on the path worth a mark: a checkpoint, or a branch that forks there (a rollback point)."""

    point: int
    kind: str
    """`checkpoint` or `fork`."""
    name: str


@dataclass(slots=True)
class Inspection:
    """What `inspect` shows of one run."""

    run: RunRow
    branch: str
    path: list[dict[str, Any]]
    """The states of the head branch's steps, in order, folded (`folded_path`), with checkpoints and forks."""
    checkpoints: list[CheckpointRow]
    branches: list[BranchInfo]
    current: str | None
    """The state the run is about to run, waits in, or ended in."""
    context: dict[str, Any]
    """The context at the head, long values cut and secret-looking ones masked."""
    last_error: dict[str, Any] | None
    """`{step, state, error, caught}` of the newest step with an error (or the run's own error)."""
    last_llm: dict[str, Any] | None
    """The newest LLM call's trace entry (request and reply whole)."""
    cost: Cost
    children: list[RunRow] = field(default_factory=list)
    paused: dict[str, Any] | None = None
    """For a paused or waiting run: `{state, reason}` or what it waits for."""


CYCLE = 4
"""The longest run of states folded as a repeated cycle (`(inc -> check) x5000`)."""


def _cycles(states: list[str], first: int) -> list[dict[str, Any]]:
    """`states` (step `first` on) as pieces `{states, times, step}`: the longest repeats folded, the rest joined."""
    pieces: list[dict[str, Any]] = []
    at, count = 0, len(states)
    while at < count:
        period, times = 1, 1
        for size in range(1, CYCLE + 1):
            unit = states[at:at + size]
            repeats = 1
            while states[at + repeats * size:at + (repeats + 1) * size] == unit:
                repeats += 1
            if repeats > 1 and repeats * size > period * times:
                period, times = size, repeats
        unit = states[at:at + period]
        if times == 1 and pieces and pieces[-1]["times"] == 1:
            pieces[-1]["states"].extend(unit)
        else:
            pieces.append({"states": list(unit), "times": times, "step": first + at})
        at += period * times
    return pieces


def folded_path(path: list[str], marks: list[PathMark]) -> list[dict[str, Any]]:
    """The path as `inspect` shows it: repeats folded, and each mark (`{mark, name, point}`) where it falls."""
    pieces: list[dict[str, Any]] = []
    start = 0
    for mark in marks:
        end = max(start, min(mark.point - 1, len(path)))
        pieces += _cycles(path[start:end], start + 1)
        pieces.append({"mark": mark.kind, "name": mark.name, "point": mark.point})
        start = end
    return pieces + _cycles(path[start:], start + 1)


async def inspect_run(runs: Runs, run_id: str) -> Inspection:
    """Read everything `inspect` shows: one pass over the head branch's steps, and a few bounded reads."""
    run = await runs.get(run_id)
    store = runs.store
    branches = await store.branches(run.id)
    segments = lineage(branches, run.head)
    path: list[str] = []
    last_error: dict[str, Any] | None = None
    llm_row: StepRow | None = None
    newest: StepRow | None = None
    async for row in stream_branch(store, run.id, segments, first=1):
        newest = row
        path.append(row.state or "")
        if row.error is not None:
            last_error = {"step": row.step, "state": row.state, "error": row.error,
                          "caught": row.next_state is not None, "next_state": row.next_state}
        if any(isinstance(call, dict) and call.get("kind") == "llm" for call in row.calls or ()):
            llm_row = row
    if run.error is not None and (last_error is None or last_error["error"] != run.error):
        last_error = {"step": run.steps, "state": run.error.get("state"), "error": run.error, "caught": False,
                      "next_state": None}
    checkpoints = await store.checkpoints(run.id)
    where = await runs.position(run.id, await runs.point(run.id, "head"))
    current = where.state or (newest.state if newest is not None else None)
    return Inspection(
        run, run.head, folded_path(path, _marks(run, branches, checkpoints, len(path))), checkpoints,
        await branch_list(runs, run.id), current, masked_context(where.data),
        last_error, await _last_llm(runs, run.id, llm_row), await run_cost(store, run.id),
        await store.list_runs(RunFilter(parent_run=run.id, limit=100)), await _paused(runs, run, current))


def _marks(run: RunRow, branches: list[BranchRow], checkpoints: list[CheckpointRow], steps: int) -> list[PathMark]:
    """Checkpoints and forks on the head branch's path (their points fall within its steps)."""
    on_path = {segment.branch for segment in lineage(branches, run.head)}
    marks = [PathMark(checkpoint.point, "checkpoint", checkpoint.name) for checkpoint in checkpoints
             if checkpoint.branch in on_path and checkpoint.point <= steps + 1]
    marks += [PathMark(branch.fork, "fork", branch.name) for branch in branches
              if branch.parent in on_path and branch.name != run.head and branch.fork <= steps + 1]
    return sorted(marks, key=lambda mark: (mark.point, mark.kind, mark.name))


async def _last_llm(runs: Runs, run_id: str, row: StepRow | None) -> dict[str, Any] | None:
    """The newest LLM call entry of that step's trace (the step that recorded it keeps it)."""
    if row is None:
        return None
    entries = [entry for stored in await runs.store.step_trace(run_id, row.branch, row.step)
               for entry in entries_of(run_id, stored) if entry["kind"] == "llm_call"]
    return (await resolve(runs.store, run_id, entries[-1:]))[0] if entries else None


async def _paused(runs: Runs, run: RunRow, current: str | None) -> dict[str, Any] | None:
    """Where a waiting or paused run stands, and why (the newest `paused` entry of its last step's trace)."""
    if run.status == "waiting":
        return {"state": (run.waiting or {}).get("state", current), "reason": "waiting",
                "events": (run.waiting or {}).get("events", []), "deadline": (run.waiting or {}).get("deadline")}
    if run.status != "paused":
        return None
    reason = None
    for stored in await runs.store.step_trace(run.id, run.head, run.steps):
        for entry in entries_of(run.id, stored):
            if entry["kind"] == "paused":
                reason = entry.get("reason")
    return {"state": current, "reason": reason or "rolled back or switched here"}
