"""The transition graph: which states no path reaches, and which can reach no end.

The checks give each state its `Exits`, what is known of its ways out. Where that is not
all (a Python state picks its next state itself; a way out is misspelled or could not be
read), the state counts as going anywhere, so a missing piece never yields a warning.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Exits:
    """What the graph checks know of one state's ways out."""

    targets: frozenset[str]
    anywhere: bool = False
    """It may go to any state: it picks its next state itself, or some way out of it is not known."""
    may_end: bool = False
    """It is, or may be, a `final` or `fail` state."""


def dead_ends(initial: str, exits: Mapping[str, Exits]) -> tuple[set[str], set[str]]:
    """(states no path from `initial` reaches, reached states from which no end can be reached)."""
    everything = frozenset(exits)

    def targets(name: str) -> frozenset[str]:
        exit_ = exits[name]
        return everything if exit_.anywhere else exit_.targets & everything

    reachable = _closure([initial], targets)
    sources: dict[str, set[str]] = {name: set() for name in exits}
    for name in exits:
        for target in targets(name):
            sources[target].add(name)
    can_end = _closure((name for name, exit_ in exits.items() if exit_.may_end), sources.__getitem__)
    return set(everything - reachable), reachable - can_end


def _closure(start: Iterable[str], step: Callable[[str], Iterable[str]]) -> set[str]:
    seen = set(start)
    queue = deque(seen)
    while queue:
        for target in step(queue.popleft()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen
