"""Mermaid diagrams of machine files and machines: the diagram read from a spec, rendered by `agentfsm.diagram`.

Any state name is safe (see `agentfsm.diagram.mermaid`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from agentfsm.diagram import DiagramEdge, DiagramGraph, render, state_ids
from agentfsm.diagram.model import RunMarks
from agentfsm.runtime.diagram import graph_from_machine
from agentfsm.spec.models import MachineSpec
from agentfsm.spec.nesting import NestedMachine, inline_document

__all__ = ["graph_from_machine", "graph_from_spec", "machine_graph", "mermaid_from_spec", "state_ids"]


def graph_from_spec(spec: MachineSpec) -> DiagramGraph:
    """States with their kinds and every way out of each (`next`, rules, catches) as an arrow; a state running
    machines (a nested machine, parallel branches, team agents) is a composite state holding them. Each kind
    says what it shows (its module's `diagram_label`, `diagram_notes`, `diagram_choice`)."""
    graph = DiagramGraph(spec.initial)
    for name, state in spec.states.items():
        graph.kinds[name] = getattr(state, "type", "state")
        label = state.diagram_label(name)
        if label != name:
            graph.labels[name] = label
        notes = state.diagram_notes()
        if notes:
            graph.notes[name] = notes
        if state.diagram_choice:
            graph.choices.add(name)
        if state.is_terminal:
            graph.terminals.append(name)
        graph.edges.extend(DiagramEdge(name, e.target, e.label, e.is_error, _answers(state, e.path))
                           for e in state.edges())
        nested = getattr(state, "nested", None)
        if nested is not None:
            graph.regions[name] = [_region(where, ref) for where, ref, _ in nested()]
    return graph


def _answers(state: Any, path: tuple[str | int, ...]) -> tuple[str, ...]:
    """The events a rule takes (a catch: its error types), so a run's transitions find their arrows."""
    if len(path) > 1 and path[0] in ("transitions", "catch") and isinstance(path[1], int):
        rule = getattr(state, str(path[0]))[path[1]]
        names = rule.event if path[0] == "transitions" else rule.errors
        return tuple(names or ())
    return ()


def _region(where: tuple[str | int, ...], ref: NestedMachine) -> tuple[str, DiagramGraph]:
    """One nested machine as a region: its own states when written inline, else one state naming its file."""
    label = str(where[-1]) if where else ""
    if ref.states is not None and ref.initial is not None:
        try:
            inner = MachineSpec.model_validate(inline_document(ref, label or "inline", {}, ref.inputs))
        except ValidationError:
            inner = None
        if inner is not None:
            return label, graph_from_spec(inner)
    shown = f"{label}: {ref.machine}" if ref.machine else label
    return "", DiagramGraph(shown, {shown: "machine"})


def machine_graph(machine: Any) -> DiagramGraph:
    """A compiled machine's diagram: read from its YAML spec when it was compiled from one (kinds visible), else
    from its runtime objects (a machine built in Python)."""
    spec = getattr(getattr(machine, "source", None), "spec", None)
    return graph_from_spec(spec) if spec is not None else graph_from_machine(machine)


def mermaid_from_spec(spec: MachineSpec, **options: Any) -> str:
    return render(graph_from_spec(spec), **options)


def graph_with_coverage(spec: MachineSpec, machine: dict[str, Any]) -> DiagramGraph:
    """The diagram of a machine with a test coverage report's counts (`agentfsm test --coverage`): each arrow
    says how often the cases took it (`never` when they did not), the states they never entered are dimmed."""
    graph = graph_from_spec(spec)
    counts: dict[tuple[str, str, str], int] = {}
    for taken in machine.get("transitions", []):
        key = (str(taken.get("from")), str(taken.get("to")), str(taken.get("label")))
        counts[key] = counts.get(key, 0) + int(taken.get("taken") or 0)
    edges = []
    for edge in graph.edges:
        count = counts.get((edge.source, edge.target, edge.label))
        if count == 0:
            edge = DiagramEdge(edge.source, edge.target, f"{edge.label} (never)".strip(), edge.is_error, edge.answers)
        edges.append(replace(edge, taken=count or None))
    graph.edges = edges
    entered = {name: int(count) for name, count in (machine.get("states") or {}).items() if count}
    graph.run = RunMarks(entered, None)
    return graph


def mermaid_with_coverage(spec: MachineSpec, machine: dict[str, Any]) -> str:
    return render(graph_with_coverage(spec, machine))
