"""What changed between two points of a run: context keys, the state, and the steps in between.

Two points of one run are either on one path (one is where the other came from) or on two
branches that went separate ways at a fork. Going from A to B, the steps from A back to
where the paths meet are undone, and the steps from there to B are taken: when B comes
after A only steps are taken, when B comes before A (`diff RUN 5 2`) only steps are undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfsm.history.lineage import Position
from agentfsm.store.base import StepRow


@dataclass(slots=True)
class RunDiff:
    """`agentfsm diff RUN A B`: context keys added, removed and changed (old and new values), states, steps between."""

    run_id: str
    a: dict[str, Any]
    b: dict[str, Any]
    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    """The steps taken going from A to B: from where the paths meet to B."""
    fork: dict[str, Any] | None = None
    """Where the paths to A and B part (`{"branch", "step"}`: the point both share), when neither point is on
    the other's path."""
    undone: list[dict[str, Any]] = field(default_factory=list)
    """The steps undone going from A to B: from where the paths meet to A (the way B does not go), in step
    order. Set when B comes before A on one path, or the two are on branches that parted."""

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)



def _describe(label: str, where: Position) -> dict[str, Any]:
    return {"point": label, "branch": where.branch, "step": where.point, "state": where.state}


def _step(row: StepRow) -> dict[str, Any]:
    return {"step": row.step, "branch": row.branch, "state": row.state, "event": row.event,
            "next_state": row.next_state, "error": row.error}


def compare_data(old: dict[str, Any], new: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """Keys added, removed and changed ({"old", "new"}) from `old` to `new`; a value of another JSON type is a
    change too (`1` and `true` differ)."""
    added: dict[str, Any] = {}
    changed: dict[str, dict[str, Any]] = {}
    for key, value in new.items():
        if key not in old:
            added[key] = value
        elif old[key] != value or type(old[key]) is not type(value):
            changed[key] = {"old": old[key], "new": value}
    return added, {key: value for key, value in old.items() if key not in new}, changed


def diff_positions(run_id: str, label_a: str, a: Position, path_a: list[StepRow], label_b: str, b: Position,
                   path_b: list[StepRow]) -> RunDiff:
    """Compare two positions of one run: their contexts, and the steps that led to each (`path_*`, step 0 first)."""
    result = RunDiff(run_id, _describe(label_a, a), _describe(label_b, b))
    result.added, result.removed, result.changed = compare_data(a.data, b.data)
    shared = 0  # a step row is one branch's own: the same row on both paths means the same past
    for row_a, row_b in zip(path_a, path_b, strict=False):
        if (row_a.branch, row_a.step) != (row_b.branch, row_b.step):
            break
        shared += 1
    only_a, only_b = path_a[shared:], path_b[shared:]
    if only_a and only_b:
        result.fork = {"branch": path_a[shared - 1].branch, "step": shared}
    result.undone = [_step(row) for row in only_a]
    result.transitions = [_step(row) for row in only_b]
    return result
