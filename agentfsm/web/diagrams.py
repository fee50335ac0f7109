"""The Mermaid source the page draws: the one `agentfsm diagram` prints, with the ids of the states' nodes.

A run's diagram carries how often the run took each arrow (`agentfsm diagram RUN`); the page marks the current,
visited and unvisited states itself (and again as the run moves), so the source leaves the states unmarked.
"""

from __future__ import annotations

from typing import Any

from agentfsm.observability.diagram import mermaid_from_spec, state_ids
from agentfsm.service.browse import MachineSpec, RunView
from agentfsm.service.diagrams import run_diagram as counted_diagram
from agentfsm.service.runs import Runs


def machine_diagram(spec: MachineSpec | None) -> dict[str, Any]:
    """`{"diagram": source, "node_ids": {state: id}}` (both None for a machine that is not valid)."""
    if spec is None:
        return {"diagram": None, "node_ids": None}
    return {"diagram": mermaid_from_spec(spec), "node_ids": state_ids(spec.states)}


async def run_diagram(runs: Runs, view: RunView) -> dict[str, Any]:
    """The run's machine with the branch's transition counts on its arrows."""
    if view.spec is None:
        return {"diagram": None, "node_ids": None}
    source = await counted_diagram(runs, view.run.id, branch=view.branch, marks=False)
    return {"diagram": source, "node_ids": state_ids(view.spec.states)}
