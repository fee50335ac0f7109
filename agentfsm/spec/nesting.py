"""Machines inside machines: how a state names one (a file, or states written inline), and how `validate`
checks them fully, each problem in its own file with its own line, and a machine that includes itself named.

A kind whose states run child machines (`machine`, `parallel`, `team`) lists them through its
spec's `nested()` method: `(path in the document, NestedMachine, extra input names)`. An
inline machine is checked as the machine document it stands for (`inline_document`), with
the parent's `llms:` and `tools:` and an input for each key its reference passes; a file is
checked as a file of its own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from agentfsm.spec.fields import VALUE_TEMPLATE, Identifier, LanguageModel, StateName
from agentfsm.spec.problems import Problem, problem
from agentfsm.spec.yamlsource import NodePath, SourceMap

NestedRef = tuple[NodePath, "NestedMachine", frozenset[str]]


class NestedMachine(LanguageModel):
    """A machine run as a child run: a file (`machine:`) or states written inline (`initial:` and `states:`)."""

    machine: str | None = Field(None, description="A machine file, relative to this file's folder.")
    initial: StateName | None = Field(None, description="Inline machine: its first state.")
    states: dict[str, Any] | None = Field(
        None, description="Inline machine: its states, written as a machine file's are (it shares this file's "
        "`llms:` and `tools:`).")
    context: dict[Identifier, Any] = Field(default_factory=dict, description="Inline machine: initial data.")
    inputs: dict[Identifier, Any] = Field(
        default_factory=dict, description="The child's inputs: name -> value template over this run's context.",
        json_schema_extra=VALUE_TEMPLATE)

    def problems(self) -> list[tuple[NodePath, str]]:
        """(where, message) for a reference that is neither a file nor an inline machine, or both."""
        inline = self.states is not None or self.initial is not None
        if self.machine is not None and inline:
            return [(("machine",), "give either machine: (a file) or initial: and states: (inline), not both")]
        if self.machine is None and not inline:
            return [((), "give machine: (a file) or initial: and states: (an inline machine)")]
        if self.machine is None and (self.states is None or self.initial is None):
            missing = "states" if self.states is None else "initial"
            return [((), f"an inline machine needs {missing}:")]
        return []

    def file(self, base_dir: Path) -> Path | None:
        return None if self.machine is None else (base_dir / self.machine).resolve()


def inline_document(ref: NestedMachine, name: str, parent: dict[str, Any], extra: Iterable[str] = ()) -> dict[str, Any]:
    """The machine document an inline machine stands for: its states, the parent's bindings, its inputs."""
    names = sorted({*ref.inputs, *extra})
    document: dict[str, Any] = {"agentfsm": 1, "name": name, "initial": ref.initial, "states": ref.states}
    for section in ("llms", "tools"):
        if parent.get(section):
            document[section] = parent[section]
    if names:
        document["inputs"] = {key: {"type": "any"} for key in names}
    if ref.context:
        document["context"] = ref.context
    return document


class PrefixedSourceMap(SourceMap):
    """The parent file's source map seen from a part of it (an inline machine), so its problems point into
    the parent file."""

    __slots__ = ("_inner", "_prefix")

    def __init__(self, inner: SourceMap, prefix: NodePath) -> None:
        super().__init__({})
        self._inner, self._prefix = inner, tuple(prefix)

    def value(self, path: NodePath) -> Any:
        return self._inner.value(self._outer(path))

    def key(self, path: NodePath) -> Any:
        return self._inner.key(self._outer(path))

    def nearest(self, path: NodePath) -> Any:
        return self._inner.nearest(self._outer(path))

    def is_block_scalar(self, path: NodePath) -> bool:
        return self._inner.is_block_scalar(self._outer(path))

    def is_literal_block(self, path: NodePath) -> bool:
        return self._inner.is_literal_block(self._outer(path))

    def _outer(self, path: NodePath) -> NodePath:
        """A path of the inline document in the parent's: `states`/`initial`/`context` live under the reference,
        `llms`/`tools` are the parent's own."""
        path = tuple(path)
        if path[:1] in (("llms",), ("tools",)):
            return path
        if path[:1] == ("inputs",):
            return (*self._prefix, "inputs", *path[1:2])
        if path[:1] in (("states",), ("initial",), ("context",)):
            return (*self._prefix, *path)
        return self._prefix


_INCLUDING: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("agentfsm_including", default=())


def including() -> tuple[Path, ...]:
    """The machine files being checked or compiled, outermost first (to name a cycle)."""
    return _INCLUDING.get()


class Including:
    """`with Including(path):` while a file's nested machines are checked or compiled."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.token: contextvars.Token[tuple[Path, ...]] | None = None

    def __enter__(self) -> Including:
        self.token = _INCLUDING.set((*_INCLUDING.get(), self.path))
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.token is not None
        _INCLUDING.reset(self.token)


def cycle_through(path: Path) -> str | None:
    """`a.yaml -> b.yaml -> a.yaml` when including `path` now closes a cycle; None otherwise."""
    stack = including()
    if path not in stack:
        return None
    loop = [*stack[stack.index(path):], path]
    return " -> ".join(p.name for p in loop)


def check_nested(spec: Any, data: Any, source_map: SourceMap, filename: str, path: Path) -> list[Problem]:
    """Every problem of the machines a valid machine's states run: files in their own name, inline ones in this
    file, a cycle of files at the reference that closes it."""
    from agentfsm.spec.kinds import kinds  # the kinds' modules build on the spec

    problems: list[Problem] = []
    registry = kinds()
    with Including(path):
        for state_name, state in spec.states.items():
            nested = getattr(registry[state.type].spec, "nested", None)
            if nested is None:
                continue
            for where, ref, extra in state.nested():
                at = ("states", state_name, *where)
                problems.extend(_check_ref(ref, at, extra, data, source_map, filename, path))
    return problems


def _check_ref(ref: NestedMachine, at: NodePath, extra: frozenset[str], data: Any, source_map: SourceMap,
               filename: str, path: Path) -> Iterator[Problem]:
    def here(where: NodePath, code: str, message: str) -> Problem:
        mark = source_map.mark((*at, *where))
        return problem(filename, mark.line, mark.column, code, message)

    for where, message in ref.problems():
        yield here(where, "nested-machine", f"{'.'.join(str(p) for p in at)}: {message}")
    if ref.problems():
        return
    file = ref.file(path.resolve().parent)
    if file is None:
        yield from _check_inline(ref, at, extra, data, source_map, filename, path)
        return
    cycle = cycle_through(file)
    if cycle is not None:
        yield here(("machine",), "nested-cycle", f"machine files include each other: {cycle}")
        return
    from agentfsm.spec.loader import validate_file

    shown = str(Path(filename).parent / ref.machine) if ref.machine else None
    report = validate_file(file, shown)
    if report.errors:
        count = len(report.errors)
        yield here(("machine",), "nested-machine",
                   f"{'.'.join(str(p) for p in at)}.machine: '{ref.machine}' has {count} error{'s' * (count != 1)} "
                   "(reported under its own name)")
    yield from report.problems


def _check_inline(ref: NestedMachine, at: NodePath, extra: frozenset[str], data: Any, source_map: SourceMap,
                  filename: str, path: Path) -> Iterator[Problem]:
    from agentfsm.spec.checks import check_machine
    from agentfsm.spec.diagnostics import validation_problems
    from agentfsm.spec.models import MachineSpec

    document = inline_document(ref, str(at[-1]), data if isinstance(data, dict) else {}, extra)
    inner = PrefixedSourceMap(source_map, at)
    try:
        spec = MachineSpec.model_validate(document)
    except ValidationError as exc:
        yield from validation_problems(exc, document, inner, filename)
        return
    yield from check_machine(spec, inner, filename)
    yield from check_nested(spec, document, inner, filename, path)
