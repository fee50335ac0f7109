"""The documented Python entry points: load a machine file, run it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agentfsm.compiler.build import compile_machine
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.spec.loader import load_spec


def load_machine(path: str | Path) -> StateMachine:
    """Validate and compile a machine file.

    Raises `MachineFileError` (with every problem) when the file is invalid, and
    `BindingError` when a binding cannot be set up (a Python module that does not import).
    """
    return compile_machine(load_spec(path))


async def run(
    machine: str | Path | StateMachine,
    inputs: Mapping[str, Any] | None = None,
    *,
    hooks: Iterable[object] = (),
    run_id: str | None = None,
) -> RunResult:
    """Run a machine (a file path or a `StateMachine`) to its end.

    Raises `InputError` before any state runs when the inputs do not fit the machine.

    >>> import asyncio, agentfsm
    >>> result = asyncio.run(agentfsm.run("machines/hello.yaml", {"name": "Ada"}))
    >>> result.status, result.output
    ('succeeded', 'Hello, Ada!')
    """
    if not isinstance(machine, StateMachine):
        machine = load_machine(machine)
    return await machine.run(inputs, hooks=hooks, run_id=run_id)
