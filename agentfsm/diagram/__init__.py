"""Diagrams of machines: a small model (states, arrows, what a run did) and its renderers (Mermaid, Graphviz dot,
and pictures through the local `dot`), independent of where the model was read from (a machine file's spec, a
machine built in Python, a recorded run's path)."""

from agentfsm.diagram.mermaid import escape_label, render, state_ids
from agentfsm.diagram.model import DiagramEdge, DiagramGraph, RunMarks

__all__ = ["DiagramEdge", "DiagramGraph", "RunMarks", "escape_label", "render", "state_ids"]
