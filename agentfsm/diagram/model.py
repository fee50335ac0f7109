"""What a diagram shows, whatever it was read from: states with their kinds, arrows, the start and the ends,
and, for a run-aware diagram, what one run did (`RunMarks`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DiagramEdge:
    source: str
    target: str
    label: str
    is_error: bool = False
    answers: tuple[str, ...] = ()
    """The events the rule takes (for a catch arrow: the error types, by prefix); empty: any."""
    taken: int | None = None
    """Run-aware: how often the run took the arrow (None: the diagram shows no run)."""
    declared: bool = True
    """False for an arrow the machine does not declare, drawn because the run took it (a state that named its next
    state itself)."""


MARKS = ("current", "waiting", "paused", "failed", "cancelled", "ended")
"""How a run-aware diagram marks the state the run is in: advancing in it, waiting in it (an event or a timer),
paused before it, failed in it, cancelled there, ended in it."""


@dataclass(slots=True)
class RunMarks:
    """What one run did, drawn over its machine's diagram: states entered (with how often) and where it stands."""

    visits: dict[str, int] = field(default_factory=dict)
    current: str | None = None
    mark: str = "current"
    """One of `MARKS`: how the state `current` is marked."""
    counted: bool = True
    """False when `visits` only says which states were entered, not how often (no counts are shown)."""


@dataclass(slots=True)
class DiagramGraph:
    """What a diagram shows: states (name -> kind), arrows, the initial state and the terminal ones."""

    initial: str | None
    kinds: dict[str, str] = field(default_factory=dict)
    edges: list[DiagramEdge] = field(default_factory=list)
    terminals: list[str] = field(default_factory=list)
    regions: dict[str, list[tuple[str, DiagramGraph]]] = field(default_factory=dict)
    """Composite states: state name -> its regions (a nested machine, parallel branches, team agents), each a
    label and the graph drawn inside it (regions side by side are separated by `--`)."""
    labels: dict[str, str] = field(default_factory=dict)
    """A state's shown text when it is not its name (a map's, with its concurrency)."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """What a state's kind shows under its name: `llm: brain`, `waits for: approved`, `timer: 24h`."""
    choices: set[str] = field(default_factory=set)
    """States drawn as a choice node (they only route)."""
    run: RunMarks | None = None
    """Run-aware: what one run did (the arrows carry their `taken` counts)."""
