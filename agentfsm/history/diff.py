"""What changed between two points of a run: context keys, the state, and the steps in between."""

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

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "a": self.a, "b": self.b, "added": self.added, "removed": self.removed,
                "changed": self.changed, "transitions": self.transitions}


def _describe(label: str, where: Position) -> dict[str, Any]:
    return {"point": label, "branch": where.branch, "step": where.point, "state": where.state}


def diff_positions(run_id: str, label_a: str, a: Position, label_b: str, b: Position,
                   between: list[StepRow]) -> RunDiff:
    """Compare two positions of one run; `between` are the steps leading from the earlier to the later one."""
    result = RunDiff(run_id, _describe(label_a, a), _describe(label_b, b))
    for key, value in b.data.items():
        if key not in a.data:
            result.added[key] = value
        elif a.data[key] != value or type(a.data[key]) is not type(value):
            result.changed[key] = {"old": a.data[key], "new": value}
    result.removed = {key: value for key, value in a.data.items() if key not in b.data}
    result.transitions = [
        {"step": row.step, "branch": row.branch, "state": row.state, "event": row.event, "next_state": row.next_state,
         "error": row.error}
        for row in between
    ]
    return result
