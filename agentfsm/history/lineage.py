"""Reading a branch: which steps it sees (its own and those it inherits) and where a run stands at a point.

Point k of a branch is the moment just before its step k runs: the context after step
k-1, and step k-1's next state about to be entered. Point 1 is the start of the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentfsm.history.deltas import DamagedContext, ReplayCost, rebuild
from agentfsm.runtime.calls import Usage, add_usage
from agentfsm.runtime.model import Event, StateTransition
from agentfsm.store.base import BranchRow, RunNotFound, StepRow, Store, StoreError


@dataclass(frozen=True, slots=True)
class Segment:
    """Steps `first`..`last` (inclusive; `last` None: open-ended) recorded by `branch`."""

    branch: str
    first: int
    last: int | None


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


def branch_steps(store: Store, run_id: str, segments: list[Segment], last: int | None = None) -> list[StepRow]:
    """Every step a branch sees, oldest first (step 0 included), up to `last`."""
    steps: list[StepRow] = []
    for segment in reversed(segments):
        upper = segment.last if last is None else (last if segment.last is None else min(segment.last, last))
        if upper is not None and upper < segment.first:
            continue
        steps.extend(store.steps(run_id, segment.branch, segment.first, upper))
    return steps


def context_after(store: Store, run_id: str, segments: list[Segment], step: int) -> tuple[dict[str, Any], ReplayCost]:
    """The context as it was after `step` on this branch."""
    rows: list[StepRow] = []
    for segment in segments:  # newest first
        upper = step if segment.last is None else min(segment.last, step)
        if upper < segment.first:
            continue
        found = store.context_rows(run_id, segment.branch, segment.first, upper)
        rows.extend(found)
        if found and found[-1].context_kind == "snapshot":
            break
    try:
        return rebuild(rows)
    except DamagedContext as exc:
        raise StoreError(f"{store.url} is damaged ({exc})") from None


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
    history: list[StateTransition] = field(default_factory=list)
    cost: ReplayCost = field(default_factory=ReplayCost)
    last: StepRow | None = None
    """The step just before the point (step 0 at the start)."""
    path: list[StepRow] = field(default_factory=list)
    """Every step that led to the point, step 0 first (what `diff` compares)."""
    usage: Usage = field(default_factory=dict)
    """Token usage of the steps before the point."""
    bindings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What each binding remembered after its last call before the point (a scripted model's place)."""

    @property
    def step(self) -> int:
        """Steps completed before the point."""
        return self.point - 1


def position(store: Store, run_id: str, branches: list[BranchRow], branch: str, point: int) -> Position:
    """The run's position at `point` of `branch` (step 0 names the initial state as its next state)."""
    segments = lineage(branches, branch)
    steps = branch_steps(store, run_id, segments, point - 1)
    data, cost = context_after(store, run_id, segments, point - 1)
    ran = [row for row in steps if row.step >= 1]
    visits = Counter(row.state for row in ran if row.state is not None)
    if len(steps) < point:
        raise RunNotFound(f"branch '{branch}' of run {run_id} has no point {point} (it has {len(steps)} steps)")
    last = steps[-1]
    usage: Usage = {}
    bindings: dict[str, dict[str, Any]] = {}
    for row in ran:
        add_usage(usage, row.calls)
        for call in row.calls:
            if call.get("kind") == "llm" and isinstance(call.get("script"), dict):
                bindings[call.get("binding", "?")] = call["script"]
    if point == 1:
        return Position(branch, point, last.next_state, data, {}, None, [], cost, last, steps)
    event = Event(last.event or "done", last.event_data, last.result)
    history = [transition(row) for row in ran if row.next_state is not None]
    return Position(branch, point, last.next_state, data, dict(visits), event, history, cost, last, steps, usage,
                    bindings)


def transition(row: StepRow) -> StateTransition:
    """A stored step as the runtime's history record."""
    details: dict[str, Any] = {"step": row.step, "duration": row.duration}
    if row.calls:
        details["calls"] = row.calls
    return StateTransition(row.state or "", row.next_state, row.event or "", row.started_at, details,
                           row.error is None, row.error)
