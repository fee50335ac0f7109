"""`validate --paths`: the distinct paths from the initial state to each end (`final` or `fail`) state.

A path visits each state at most once (a loop shows as the states it passes, once), follows only the rules that
can be taken (`flow.py`), and has at most `max_length` states; at most `limit` paths are listed in all.
A state that picks its next state itself (`python`) is followed only along the ways out the file declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from agentfsm.spec.flow import machine_flow
from agentfsm.spec.models import MachineSpec

DEFAULT_MAX_LENGTH = 30
DEFAULT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class MachinePath:
    """One path: its states in order, and the label of each arrow taken between them."""

    states: tuple[str, ...]
    labels: tuple[str, ...]
    end_type: str

    @property
    def end(self) -> str:
        return self.states[-1]

    def __str__(self) -> str:
        parts = [self.states[0]]
        for label, state in zip(self.labels, self.states[1:], strict=True):
            parts.append(f"--{label}--> {state}")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {"end": self.end, "end_type": self.end_type, "states": list(self.states), "labels": list(self.labels)}


@dataclass(frozen=True, slots=True)
class PathListing:
    paths: tuple[MachinePath, ...]
    truncated: bool
    """More paths exist than `limit`, or some were cut by `max_length`."""


def machine_paths(spec: MachineSpec, *, max_length: int = DEFAULT_MAX_LENGTH,
                  limit: int = DEFAULT_LIMIT) -> PathListing:
    """The distinct simple paths from `initial` to every end state, shortest first, then in file order."""
    flow = machine_flow(spec)
    order = {name: index for index, name in enumerate(flow)}
    found: list[MachinePath] = []
    truncated = False
    # iterative depth-first search: (state, the path so far, its labels, the rules left to try)
    stack: list[tuple[tuple[str, ...], tuple[str, ...]]] = [((spec.initial,), ())]
    while stack:
        states, labels = stack.pop()
        current = flow[states[-1]]
        if current.spec.terminal:
            found.append(MachinePath(states, labels, current.spec.type))  # type: ignore[attr-defined]
            if len(found) >= limit:
                truncated = True
                break
            continue
        if len(states) >= max_length:
            truncated = truncated or any(True for _ in _onward(flow, states))
            continue
        stack.extend(reversed([(states + (target,), labels + (label,)) for target, label in _onward(flow, states)]))
    found.sort(key=lambda p: (order[p.end], len(p.states), [order[s] for s in p.states]))
    return PathListing(tuple(found), truncated)


def _onward(flow: dict, states: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for rule in flow[states[-1]].live_rules():
        if rule.target in flow and rule.target not in states and rule.target not in seen:
            seen.add(rule.target)
            yield rule.target, rule.label
