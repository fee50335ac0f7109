"""Diagrams of machines: a small model (states, arrows) and its Mermaid renderer, independent of where the
model was read from (a machine file's spec, a machine built in Python, a recorded run's path)."""

from agentfsm.diagram.mermaid import escape_label, render, state_ids
from agentfsm.diagram.model import DiagramEdge, DiagramGraph

__all__ = ["DiagramEdge", "DiagramGraph", "escape_label", "render", "state_ids"]
