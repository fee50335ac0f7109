"""Reading a branch: which steps it sees (its own and those it inherits) and where a run stands at a point.

Point k of a branch is the moment just before its step k runs: the context after step
k-1, and step k-1's next state about to be entered. Point 1 is the start of the run.
Where a run stands is read from a bounded number of rows whatever the run's length: the
last step, the newest tally before the point and the steps after it, the newest context
snapshot and the patches after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentfsm.history.deltas import DamagedContext, ReplayCost, rebuild
from agentfsm.history.tally import Tally
from agentfsm.runtime.calls import Usage
from agentfsm.runtime.model import Event, StateTransition
from agentfsm.store.base import BranchRow, RunNotFound, StepRow, StoreError
from agentfsm.store.core import Store


@dataclass(frozen=True, slots=True)
class Segment:
    """Steps `first`..`last` (inclusive; `last` None: open-ended) recorded by `branch`."""

    branch: str
    first: int
    last: int | None

    def clipped(self, last: int | None) -> tuple[int, int | None] | None:
        """This segment's step range cut at `last` (None: nothing of it is at or below `last`)."""
        upper = self.last if last is None else (last if self.last is None else min(self.last, last))
        if upper is not None and upper < self.first:
            return None
        return self.first, upper


def lineage(branches: list[BranchRow], name: str) -> list[Segment]:
    """The segments a branch reads, newest first: its own steps, then its parent's below the fork, and so on."""
    by_name = {branch.name: branch for branch in branches}
    if name not in by_name:
        known = ", ".join(sorted(by_name))
        raise RunNotFound(f"no branch '{name}' (branches: {known})")
    segments: list[Segment] = []
    upper: int | None = None
    current: BranchRow | None = by_name[name]
    while current is not None:
        if upper is None or current.fork <= upper:
            segments.append(Segment(current.name, current.fork, upper))
            upper = current.fork - 1
        current = by_name.get(current.parent) if current.parent else None
    return segments


async def stream_branch(store: Store, run_id: str, segments: list[Segment], first: int = 0,
                        last: int | None = None) -> AsyncIterator[StepRow]:
    """Every step a branch sees from `first` to `last`, oldest first (step 0 included), a page at a time."""
    for segment in reversed(segments):
        clipped = segment.clipped(last)
        if clipped is None or (clipped[1] is not None and clipped[1] < first):
            continue
        async for row in store.stream_steps(run_id, segment.branch, max(first, clipped[0]), clipped[1]):
            yield row


async def branch_steps(store: Store, run_id: str, segments: list[Segment], last: int | None = None,
                       first: int = 0) -> list[StepRow]:
    """Every step a branch sees, oldest first (step 0 included), from `first` up to `last`."""
    return [row async for row in stream_branch(store, run_id, segments, first, last)]


async def step_at(store: Store, run_id: str, segments: list[Segment], step: int) -> StepRow | None:
    """Step `step` as the branch sees it (None when the branch has not reached it)."""
    for segment in segments:
        if segment.first <= step and (segment.last is None or step <= segment.last):
            rows = await store.steps(run_id, segment.branch, step, step)
            return rows[0] if rows else None
    return None


async def last_step(store: Store, run_id: str, segments: list[Segment]) -> StepRow:
    """The newest step a branch sees (its own newest, or the one it forked after)."""
    own = segments[0]
    newest = await store.newest_step(run_id, own.branch, own.first, own.last)
    if newest is not None:
        return newest
    found = await step_at(store, run_id, segments[1:], own.first - 1) if len(segments) > 1 else None
    if found is None:
        raise RunNotFound(f"branch '{own.branch}' of run {run_id} has no steps")
    return found


async def context_after(store: Store, run_id: str, segments: list[Segment], step: int
                        ) -> tuple[dict[str, Any], ReplayCost]:
    """The context as it was after `step` on this branch."""
    rows: list[StepRow] = []
    for segment in segments:  # newest first
        clipped = segment.clipped(step)
        if clipped is None:
            continue
        found = await store.context_rows(run_id, segment.branch, clipped[0], clipped[1] or 0)
        rows.extend(found)
        if found and found[-1].context_kind == "snapshot":
            break
    try:
        return rebuild(rows)
    except DamagedContext as exc:
        raise StoreError(f"{store.url} is damaged ({exc})") from None


async def tally_after(store: Store, run_id: str, segments: list[Segment], step: int) -> Tally:
    """Visits, usage and bindings of the path up to `step`: the newest stored tally, plus the steps after it."""
    base: StepRow | None = None
    for segment in segments:  # newest first: the first tally found is the newest
        clipped = segment.clipped(step)
        if clipped is None:
            continue
        base = await store.tally_row(run_id, segment.branch, clipped[0], clipped[1] or 0)
        if base is not None:
            break
    tally = Tally.from_json(base.tally if base is not None else None)
    start = 1 if base is None else base.step + 1
    if start <= step:
        tally.add([row async for row in stream_branch(store, run_id, segments, start, step)])
    return tally


@dataclass(slots=True)
class Position:
    """Where a run stands at a point: what a resumed run starts from."""

    branch: str
    point: int
    state: str | None
    """The state about to run; None when the run had ended before this point."""
    data: dict[str, Any]
    visits: dict[str, int]
    event: Event | None
    cost: ReplayCost = field(default_factory=ReplayCost)
    last: StepRow | None = None
    """The step just before the point (step 0 at the start)."""
    usage: Usage = field(default_factory=dict)
    """Token usage of the steps before the point."""
    bindings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What each binding remembered after its last call before the point (a scripted model's place)."""

    @property
    def step(self) -> int:
        """Steps completed before the point."""
        return self.point - 1


async def position(store: Store, run_id: str, branches: list[BranchRow], branch: str, point: int) -> Position:
    """The run's position at `point` of `branch` (step 0 names the initial state as its next state)."""
    segments = lineage(branches, branch)
    last = await step_at(store, run_id, segments, point - 1) if point >= 1 else None
    if last is None:
        newest = await last_step(store, run_id, segments)
        raise RunNotFound(f"branch '{branch}' of run {run_id} has no point {point} (it has {newest.step + 1} steps)")
    data, cost = await context_after(store, run_id, segments, point - 1)
    tally = await tally_after(store, run_id, segments, point - 1)
    event = None if point == 1 else Event(last.event or "done", last.event_data, last.result)
    return Position(branch, point, last.next_state, data, tally.visits, event, cost, last, tally.usage,
                    tally.bindings)


async def path_to(store: Store, run_id: str, branches: list[BranchRow], branch: str, point: int) -> list[StepRow]:
    """Every step that led to a point, step 0 first (what `diff` compares)."""
    return await branch_steps(store, run_id, lineage(branches, branch), point - 1)


def transition(row: StepRow) -> StateTransition:
    """A stored step as the runtime's history record."""
    details: dict[str, Any] = {"step": row.step, "duration": row.duration}
    if row.calls:
        details["calls"] = row.calls
    return StateTransition(row.state or "", row.next_state, row.event or "", row.started_at, details,
                           row.error is None, row.error)
