"""Getting a machine ready to run: from a file, from the source a stored run keeps, with `--llm` overrides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agentfsm.compiler.build import compile_machine
from agentfsm.runtime.machine import StateMachine
from agentfsm.spec.loader import LoadedSpec, load_spec, load_spec_text
from agentfsm.spec.overrides import apply_llm_overrides


def compiled(loaded: LoadedSpec, llms: Mapping[str, str] | None = None) -> StateMachine:
    """A runnable machine from a validated spec, with its LLM bindings switched as `llms` says (in the machines
    it nests too); a name no machine has is refused."""
    if not llms:
        return compile_machine(loaded)
    used: set[str] = set()
    machine = compile_machine(loaded, llms, used)
    unknown = [name for name in llms if name not in used]
    if unknown:
        apply_llm_overrides(loaded.spec, {unknown[0]: llms[unknown[0]]})  # raises, naming this machine's bindings
    return machine


def load_machine(path: str | Path, *, llms: Mapping[str, str] | None = None) -> StateMachine:
    """Validate and compile a machine file.

    `llms` switches LLM bindings to another provider, as `agentfsm run --llm` does:
    `{"brain": "openai:gpt-4o-mini"}`, `{"brain": "ollama:llama3.1"}`.

    Raises `MachineFileError` (with every problem) when the file is invalid, `InputError`
    for a bad `llms` value, and `BindingError` when a binding cannot be set up (a Python
    module that does not import, an API key variable that is not set).
    """
    return compiled(load_spec(path), llms)


def machine_from_source(text: str, path: str | Path, *, llms: Mapping[str, str] | None = None) -> StateMachine:
    """Compile machine source text standing for the file at `path` (a stored run's machine)."""
    return compiled(load_spec_text(text, path), llms)


def loaded_source(machine: StateMachine) -> LoadedSpec | None:
    """The spec a machine was compiled from (None for one built in Python)."""
    return machine.source if isinstance(machine.source, LoadedSpec) else None
