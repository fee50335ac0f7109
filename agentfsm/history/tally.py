"""Tallies: what a run's path adds up to (visits per state, token usage, what bindings remember).

A resumed run needs them, and they depend on every step before it. So the recorder writes
the running totals into a step row now and then (`TALLY_EVERY` steps, and with every
context snapshot), and a position is read from the newest tally before it plus the few
steps after it: reading where a run stands costs the same after ten steps as after a
hundred thousand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentfsm.runtime.calls import Usage, add_usage, merge_usage
from agentfsm.store.base import StepRow

TALLY_EVERY = 64
"""A step whose number is a multiple of this carries the tally of the run's path up to it."""


@dataclass(slots=True)
class Tally:
    """Visits per state, usage per LLM binding and what each binding remembers, after some step."""

    visits: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=dict)
    bindings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"visits": dict(self.visits), "usage": self.usage, "bindings": self.bindings}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Tally:
        tally = cls()
        if value:
            tally.visits = {str(k): int(v) for k, v in (value.get("visits") or {}).items()}
            merge_usage(tally.usage, value.get("usage") or {})
            tally.bindings = {str(k): dict(v) for k, v in (value.get("bindings") or {}).items()}
        return tally

    def add(self, rows: Iterable[StepRow]) -> Tally:
        """The tally after `rows` too (steps in order, none of them counted yet)."""
        for row in rows:
            if row.step < 1 or row.state is None:
                continue
            self.visits[row.state] = self.visits.get(row.state, 0) + 1
            add_usage(self.usage, row.calls)
            for call in row.calls:
                if call.get("kind") == "llm" and isinstance(call.get("script"), dict):
                    self.bindings[call.get("binding", "?")] = call["script"]
        return self


def tally_due(step: int, snapshot: bool) -> bool:
    """Whether step `step` carries the tally."""
    return snapshot or step % TALLY_EVERY == 0
