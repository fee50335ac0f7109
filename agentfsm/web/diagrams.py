"""The Mermaid source the page draws: the one `agentfsm diagram` prints, with the ids of the states' nodes.

The page marks the current, visited and unvisited states itself (and again as the run moves), so the
source stays the plain diagram of the machine and is drawn once per page.
"""

from __future__ import annotations

from typing import Any

from agentfsm.observability.diagram import mermaid_from_spec, state_ids
from agentfsm.service.browse import MachineSpec, RunView


def machine_diagram(spec: MachineSpec | None) -> dict[str, Any]:
    """`{"diagram": source, "node_ids": {state: id}}` (both None for a machine that is not valid)."""
    if spec is None:
        return {"diagram": None, "node_ids": None}
    return {"diagram": mermaid_from_spec(spec), "node_ids": state_ids(spec.states)}


def run_diagram(view: RunView) -> dict[str, Any]:
    return machine_diagram(view.spec)
