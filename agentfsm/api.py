"""The documented Python entry points: load a machine file, run it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agentfsm.compiler.build import compile_machine
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.spec.loader import load_spec
from agentfsm.spec.overrides import apply_llm_overrides


def load_machine(path: str | Path, *, llms: Mapping[str, str] | None = None) -> StateMachine:
    """Validate and compile a machine file.

    `llms` switches LLM bindings to another provider, as `agentfsm run --llm` does:
    `{"brain": "openai:gpt-4o-mini"}`, `{"brain": "ollama:llama3.1"}`.

    Raises `MachineFileError` (with every problem) when the file is invalid, `InputError`
    for a bad `llms` value, and `BindingError` when a binding cannot be set up (a Python
    module that does not import, an API key variable that is not set).
    """
    loaded = load_spec(path)
    if llms:
        loaded = dataclasses.replace(loaded, spec=apply_llm_overrides(loaded.spec, llms))
    return compile_machine(loaded)


async def run(
    machine: str | Path | StateMachine,
    inputs: Mapping[str, Any] | None = None,
    *,
    observers: Iterable[object] = (),
    run_id: str | None = None,
    store: str | None = None,
) -> RunResult:
    """Run a machine (a file path or a `StateMachine`) to its end, in memory, or recorded in `store` when given
    (`"sqlite:///runs.db"`; see `agentfsm.Runs` to resume, roll back and read recorded runs).

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
    from agentfsm.history.runs import Runs

    runs = Runs(store)
    try:
        return await runs.start(machine, inputs, observers=observers, run_id=run_id)
    finally:
        runs.close()
