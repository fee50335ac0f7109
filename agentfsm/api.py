"""The one-call entry points: load a machine file, run it (in memory, or recorded in a store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.service.machines import load_machine

__all__ = ["load_machine", "run"]


async def run(
    machine: str | Path | StateMachine,
    inputs: Mapping[str, Any] | None = None,
    *,
    observers: Iterable[object] = (),
    run_id: str | None = None,
    store: str | None = None,
) -> RunResult:
    """Run a machine (a file path or a `StateMachine`) to its end, in memory, or recorded in `store` when given
    (`"sqlite:///runs.db"`, `"memory://name"`; see `agentfsm.Runs` to resume, roll back and read recorded runs).
    Calls in one process that name the same store share its connection, and steps that are ready together
    are committed together.

    Raises `InputError` before any state runs when the inputs do not fit the machine.

    >>> import asyncio, agentfsm
    >>> result = asyncio.run(agentfsm.run("machines/hello.yaml", {"name": "Ada"}))
    >>> result.status, result.output
    ('succeeded', 'Hello, Ada!')
    """
    if not isinstance(machine, StateMachine):
        machine = load_machine(machine)
    if store is None:
        return await machine.run(inputs, observers=observers, run_id=run_id)
    from agentfsm.service.runs import Runs

    async with Runs(store) as runs:
        return await runs.start(machine, inputs, observers=observers, run_id=run_id)
