"""Mermaid diagrams of machine files and machines: the diagram read from a spec, rendered by `agentfsm.diagram`.

Any state name is safe (see `agentfsm.diagram.mermaid`).
"""

from __future__ import annotations

from typing import Any

from agentfsm.diagram import DiagramEdge, DiagramGraph, render, state_ids
from agentfsm.runtime.diagram import graph_from_machine
from agentfsm.spec.models import MachineSpec

__all__ = ["graph_from_machine", "graph_from_spec", "mermaid_from_spec", "state_ids"]


def graph_from_spec(spec: MachineSpec) -> DiagramGraph:
    """States with their kinds and every way out of each (`next`, rules, catches) as an arrow."""
    graph = DiagramGraph(spec.initial)
    for name, state in spec.states.items():
        graph.kinds[name] = getattr(state, "type", "state")
        if state.is_terminal:
            graph.terminals.append(name)
        graph.edges.extend(DiagramEdge(name, e.target, e.label, e.is_error) for e in state.edges())
    return graph


def mermaid_from_spec(spec: MachineSpec, **options: Any) -> str:
    return render(graph_from_spec(spec), **options)



def mermaid_with_coverage(spec: MachineSpec, machine: dict[str, Any]) -> str:
    """The diagram of a machine with a test coverage report's counts (`agentfsm test --coverage`): the states the
    cases entered are highlighted, and each arrow says how often the cases took it (`never` when they did not)."""
    graph = graph_from_spec(spec)
    counts: dict[tuple[str, str, str], int] = {}
    for taken in machine.get("transitions", []):
        key = (str(taken.get("from")), str(taken.get("to")), str(taken.get("label")))
        counts[key] = counts.get(key, 0) + int(taken.get("taken") or 0)
    edges = []
    for edge in graph.edges:
        count = counts.get((edge.source, edge.target, edge.label))
        note = "" if count is None else (f" ({count}x)" if count else " (never)")
        edges.append(DiagramEdge(edge.source, edge.target, (edge.label + note).strip(), edge.is_error))
    graph.edges = edges
    entered = [name for name, count in (machine.get("states") or {}).items() if count]
    return render(graph, visited=entered)
