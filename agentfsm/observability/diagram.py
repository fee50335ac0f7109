"""Mermaid diagrams of machine files and machines: the diagram read from a spec, rendered by `agentfsm.diagram`.

Any state name is safe (see `agentfsm.diagram.mermaid`).
"""

from __future__ import annotations

from typing import Any

from agentfsm.diagram import DiagramEdge, DiagramGraph, render
from agentfsm.runtime.diagram import graph_from_machine
from agentfsm.spec.models import MachineSpec

__all__ = ["graph_from_machine", "graph_from_spec", "mermaid_from_spec"]


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

