"""Compile a machine a state runs as a child run: a file next to the parent's, or states written inline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from agentfsm.bindings.imports import BindingError
from agentfsm.compiler.env import CompileEnv
from agentfsm.runtime.machine import StateMachine
from agentfsm.spec.nesting import NestedMachine, cycle_through, inline_document


def parent_document(env: CompileEnv) -> dict[str, Any]:
    """The parts of the parent's document an inline machine shares: its `llms:` and `tools:` (with `--llm`
    overrides applied)."""
    spec = env.loaded.spec
    return {section: {name: binding.model_dump(mode="json", by_alias=True, exclude_unset=True)
                      for name, binding in getattr(spec, section).items()}
            for section in ("llms", "tools")}


def compile_nested(ref: NestedMachine, name: str, env: CompileEnv, extra: Iterable[str] = ()) -> StateMachine:
    """The child machine `ref` names, compiled with the run's `--llm` overrides.

    An inline machine becomes a machine document of its own (its text is what its child runs keep, so a child
    can be resumed or read alone), standing for a file next to the parent's.
    """
    from agentfsm.compiler.build import compile_machine  # the compiler compiles the kinds that call this
    from agentfsm.spec.loader import load_spec, load_spec_text

    parent = env.loaded
    file = ref.file(env.base_dir)
    if file is None:
        document = inline_document(ref, name, parent_document(env), extra)
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        loaded = load_spec_text(text, parent.path, f"{parent.path}#{name}")
    else:
        cycle = cycle_through(file)
        if cycle is not None:
            raise BindingError(f"{name}: machine files include each other: {cycle}")
        loaded = load_spec(file)
    return compile_machine(loaded, env.overrides, env.used)
