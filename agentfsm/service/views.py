"""The JSON views of runs, steps, checkpoints and results: what `--json` prints and what the web UI serves.

One module builds them, so every front end shows the same shapes. Each view is a plain
JSON-ready dict (non-finite floats are left to the printer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfsm.runtime.loop import RunResult


def result_json(result: RunResult) -> dict[str, Any]:
    """How a run that was driven ended (`run`, `resume`, `send`, `rollback --resume`): the same keys whatever
    the status (`waiting` is null unless the run waits)."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "output": result.output,
        "context": result.context.data,
        "steps": result.steps,
        "error": result.error,
        "usage": result.usage,
        "waiting": result.waiting,
    }
