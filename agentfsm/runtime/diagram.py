"""A machine's diagram, read from its runtime objects (a machine built in Python, or compiled from YAML)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfsm.diagram.model import DiagramEdge, DiagramGraph

if TYPE_CHECKING:
    from agentfsm.runtime.machine import StateMachine


def graph_from_machine(machine: StateMachine) -> DiagramGraph:
    """States with their types, every transition rule and catch rule as an arrow."""
    graph = DiagramGraph(machine.initial)
    for name, state in machine.states.items():
        graph.kinds[name] = state.state_type.value
        if state.is_terminal:
            graph.terminals.append(name)
        for rule in machine.transitions_from(name):
            answers = (rule.trigger,) if isinstance(rule.trigger, str) else tuple(rule.trigger or ())
            graph.edges.append(DiagramEdge(name, rule.target, rule.label or _trigger_label(rule.trigger),
                                           answers=answers))
        for catch in state.catch:
            graph.edges.append(DiagramEdge(name, catch.target, "error: " + ", ".join(catch.errors), is_error=True,
                                           answers=tuple(catch.errors)))
    return graph


def _trigger_label(trigger: str | tuple[str, ...] | None) -> str:
    if trigger is None:
        return "done"
    return trigger if isinstance(trigger, str) else " | ".join(trigger)
