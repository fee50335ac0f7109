"""State kinds are plug-ins: the registry the language, the checks, the compiler and the diagrams read.

A kind is one module (`agentfsm/kinds/NAME.py`) holding everything about it: its spec model
(the fields of `type: NAME`, how they are checked, where the state leads for the graph and
the diagrams), its runtime `State` and how it compiles into one. The module registers a
`Kind` when it is imported. The language loads the kinds named in `BUILTIN_KINDS` the first
time it needs them (by module name, like any plug-in), so adding a kind is adding a module
and its name here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfsm.spec.models import StateSpec

BUILTIN_KINDS: tuple[str, ...] = ("set", "choice", "llm", "tool", "python", "wait", "final", "fail", "machine",
                                  "parallel", "team", "send", "receive", "memory", "map")
"""The kinds agentfsm ships, in the order the docs and the schema list them."""
KIND_MODULE = "agentfsm.kinds.{}"

Compile = Callable[[str, Any, Any], Any]
"""`compile(state_name, spec, env)`: the runtime `State` of one state of a machine (env: `agentfsm.compiler.env`)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A state kind: its name (the `type:` value), its spec model and its compile step."""

    name: str
    spec: type[StateSpec]
    compile: Compile


_REGISTERED: dict[str, Kind] = {}
_LOADED = False


def register(kind: Kind) -> Kind:
    """Make a kind known to the language (a kind module calls this when it is imported)."""
    existing = _REGISTERED.get(kind.name)
    if existing is not None and existing.spec is not kind.spec:
        raise ValueError(f"two state kinds are named '{kind.name}'")
    _REGISTERED[kind.name] = kind
    return kind


def kinds() -> Mapping[str, Kind]:
    """Every kind, by name, the built-in ones first in their documented order."""
    global _LOADED
    if not _LOADED:
        for name in BUILTIN_KINDS:
            importlib.import_module(KIND_MODULE.format(name))
        _LOADED = True
    ordered = {name: _REGISTERED[name] for name in BUILTIN_KINDS}
    ordered.update((name, kind) for name, kind in _REGISTERED.items() if name not in ordered)
    return ordered


def state_models() -> dict[str, type[StateSpec]]:
    """The spec model of each kind, by name."""
    return {name: kind.spec for name, kind in kinds().items()}

