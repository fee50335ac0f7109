"""What a diagram writes for a state or an arrow, whichever renderer draws it: names, notes, run counts, marks."""

from __future__ import annotations

from agentfsm.diagram.model import DiagramGraph


def taken_label(label: str, taken: int | None) -> str:
    """An arrow's text in a run-aware diagram: its label and how often the run took it (`done (3x)`)."""
    return label if not taken else f"{label} ({taken}x)".strip()


def shown_name(graph: DiagramGraph, name: str) -> str:
    """A state's text: its label, and for a composite state of a run-aware diagram what the run did in it
    (Mermaid cannot style a composite state, so its text says it)."""
    label = graph.labels.get(name, name)
    if graph.run is None or name not in graph.regions:
        return label
    run = graph.run
    if name == run.current:
        return f"{label} ({run.mark})"
    visits = run.visits.get(name, 0)
    if not visits:
        return f"{label} (not visited)"
    return f"{label} (entered {visits}x)" if run.counted else f"{label} (visited)"


def state_notes(graph: DiagramGraph, name: str) -> list[str]:
    """The lines under a (simple) state's name: what its kind shows, then how often the run entered it."""
    notes = [note for note in graph.notes.get(name, ()) if note.strip()]
    if graph.run is not None and graph.run.counted and graph.run.visits.get(name):
        notes.append(f"entered {graph.run.visits[name]}x")
    return notes


def state_mark(graph: DiagramGraph, name: str) -> str | None:
    """How a state is drawn: without a run, final and fail states stand out; with one, the state the run is in by
    how it stands there (`MARKS`), the other states entered `visited`, those never entered `unvisited` (dimmed)."""
    run = graph.run
    if run is None:
        kind = graph.kinds.get(name)
        return kind if kind in ("final", "fail", "error") else None
    if name == run.current:
        return run.mark
    return "visited" if run.visits.get(name) else "unvisited"


def state_classes(graph: DiagramGraph) -> dict[str, str]:
    """The Mermaid class of each state that has one (composite states have none: Mermaid cannot style them)."""
    classes = {}
    for name in graph.kinds:
        mark = state_mark(graph, name) if name not in graph.regions else None
        if mark is not None:
            classes[name] = mark
    return classes
