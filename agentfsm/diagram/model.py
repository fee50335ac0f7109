"""What a diagram shows, whatever it was read from: states with their kinds, arrows, the start and the ends."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DiagramEdge:
    source: str
    target: str
    label: str
    is_error: bool = False


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
