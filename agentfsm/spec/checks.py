"""Checks beyond the schema: references, the transition graph, and every template.

They run on a machine that passed the schema, never import user code and never call
anything: `validate` is static.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, TypeAdapter, ValidationError

from agentfsm.spec.diagnostics import did_you_mean, dotted_path
from agentfsm.spec.expressions import RESERVED_NAMES, compile_guard, compile_template, is_template
from agentfsm.spec.inputs import InputError, check_inputs
from agentfsm.spec.models import (
    TEMPLATE_KEY,
    WAIT_TIMEOUT_EVENT,
    ActiveStateSpec,
    AnyStateSpec,
    CatchSpec,
    ChoiceStateSpec,
    LlmStateSpec,
    MachineSpec,
    PythonStateSpec,
    RetrySpec,
    RoutedStateSpec,
    SetAction,
    SetStateSpec,
    StateSpec,
    ToolStateSpec,
    WaitStateSpec,
)
from agentfsm.spec.problems import Problem, problem
from agentfsm.spec.yamlsource import NodePath, SourceMap


@dataclass(frozen=True, slots=True)
class TemplateSite:
    """One template in the document: where it is, its text, and how it is used."""

    path: NodePath
    source: str
    kind: str  # "value" | "text" | "guard"


def template_sites(model: BaseModel, path: NodePath = ()) -> Iterator[TemplateSite]:
    """Every template in a validated model, found through the fields marked in `models.py`."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        key = field.alias or name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        kind = extra.get(TEMPLATE_KEY)
        if kind is not None and value is not None:
            if kind == "value":
                yield from _value_sites(value, (*path, key))
            elif isinstance(value, str):
                yield TemplateSite((*path, key), value, str(kind))
        elif isinstance(value, BaseModel):
            yield from template_sites(value, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from template_sites(item, (*path, key, index))
        elif isinstance(value, dict):
            for item_key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from template_sites(item, (*path, key, item_key))


def _value_sites(value: Any, path: NodePath) -> Iterator[TemplateSite]:
    if isinstance(value, str):
        if is_template(value):
            yield TemplateSite(path, value, "value")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _value_sites(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _value_sites(item, (*path, index))


TOOL_BINDING_NAMES = frozenset({"args"})
"""The only name templates inside `tools:` see (besides Jinja's globals): the tool state's rendered `args`."""


def provided_names(spec: MachineSpec) -> set[str]:
    """Every name a template may read: inputs, context keys, saves, set keys, catch `as`, and the reserved ones."""
    names = set(spec.inputs) | set(spec.context) | set(RESERVED_NAMES)
    for state in spec.states.values():
        names.update(name for name, _ in _assignment_sites(state))
    return names


class _Checker:
    def __init__(
        self, spec: MachineSpec, source_map: SourceMap, filename: str, salvaged: Salvage | None = None
    ) -> None:
        self.spec = spec
        self.source_map = source_map
        self.filename = filename
        self.salvaged = salvaged
        self.state_names = salvaged.state_names if salvaged else frozenset(spec.states)
        self.problems: list[Problem] = []

    def report(self, path: NodePath, code: str, message: str, *, key: bool = False, line_offset: int = 0) -> None:
        mark = self.source_map.mark(path, key=key)
        self.problems.append(problem(self.filename, mark.line + line_offset, mark.column, code, message))

    def run(self) -> list[Problem]:
        self.check_names()
        self.check_input_defaults()
        self.check_initial()
        for name, state in self.spec.states.items():
            self.check_state(name, state)
        if self.salvaged is None:  # on a partial machine the graph and the names provided are incomplete
            self.check_graph()
        self.check_templates()
        return self.problems

    def check_names(self) -> None:
        for section in ("inputs", "context"):
            for name in getattr(self.spec, section):
                if name in RESERVED_NAMES:
                    self.report((section, name), "invalid-name",
                                f"{section}.{name}: '{name}' is reserved (templates see the current {name} under it)",
                                key=True)
        for state_name, state in self.spec.states.items():
            for name, path in _assignment_sites(state):
                if name in RESERVED_NAMES:
                    self.report(("states", state_name, *path), "invalid-name",
                                f"states.{state_name}: '{name}' is reserved and cannot be assigned", key=True)

    def check_input_defaults(self) -> None:
        for name, declared in self.spec.inputs.items():
            if declared.default is None:
                continue
            try:
                check_inputs({name: declared}, {name: declared.default})
            except InputError as exc:
                self.report(("inputs", name, "default"), "invalid-value", f"inputs.{name}.default: {exc}")

    def check_initial(self) -> None:
        if self.salvaged is not None and "initial" in self.salvaged.dropped:
            return
        if self.spec.initial not in self.state_names:
            hint = did_you_mean(self.spec.initial, self.state_names)
            self.report(("initial",), "unknown-initial", f"initial: no state named '{self.spec.initial}'{hint}")

    def check_state(self, name: str, state: StateSpec) -> None:
        where = ("states", name)
        for edge in state.edges():
            if edge.target not in self.state_names:
                hint = did_you_mean(edge.target, self.state_names)
                self.report((*where, *edge.path), "unknown-target",
                            f"{dotted_path((*where, *edge.path))}: no state named '{edge.target}'{hint}")
        if isinstance(state, RoutedStateSpec):
            if state.next is not None and state.transitions:
                self.report((*where, "next"), "next-and-transitions",
                            f"states.{name}: has both next: and transitions:; use one", key=True)
            if state.next is None and not state.transitions and not isinstance(state, PythonStateSpec):
                self.report(where, "no-transition",
                            f"states.{name}: no next: or transitions:; say where the run goes after this state",
                            key=True)
        if isinstance(state, WaitStateSpec):
            self.check_wait(name, state)
        if isinstance(state, ActiveStateSpec):
            self.check_catch_all_last(name, "retry", state.retry)
            self.check_catch_all_last(name, "catch", state.catch)
        if isinstance(state, ChoiceStateSpec):
            last = state.transitions[-1]
            if last.when is not None or last.event is not None:
                self.report((*where, "transitions", len(state.transitions) - 1), "choice-without-default",
                            f"states.{name}: a choice must end with a default rule (only 'to:'), "
                            "taken when no guard holds")
        if isinstance(state, LlmStateSpec) and state.llm not in self.spec.llms and not self._dropped("llms"):
            hint = did_you_mean(state.llm, self.spec.llms)
            self.report((*where, "llm"), "unknown-llm", f"states.{name}.llm: no LLM binding named '{state.llm}' "
                                                         f"under llms:{hint}")
        if isinstance(state, LlmStateSpec):
            self.check_reply_schema(name, state)
            for index, tool in enumerate(state.tools):
                if tool not in self.spec.tools and not self._dropped("tools"):
                    hint = did_you_mean(tool, self.spec.tools)
                    self.report((*where, "tools", index), "unknown-tool",
                                f"states.{name}.tools[{index}]: no tool binding named '{tool}' under tools:{hint}")
        if isinstance(state, ToolStateSpec) and state.tool not in self.spec.tools and not self._dropped("tools"):
            hint = did_you_mean(state.tool, self.spec.tools)
            self.report((*where, "tool"), "unknown-tool",
                        f"states.{name}.tool: no tool binding named '{state.tool}' under tools:{hint}")

    def check_wait(self, name: str, state: WaitStateSpec) -> None:
        """The events a wait lists are distinct and not `timeout`; its rules route only events it can produce."""
        where = ("states", name)
        seen: set[str] = set()
        for index, event in enumerate(state.event):
            path = (*where, "event", index)
            if event == WAIT_TIMEOUT_EVENT:
                self.report(path, "invalid-name",
                            f"states.{name}.event: '{WAIT_TIMEOUT_EVENT}' is reserved for the wait's timer; "
                            f"set 'timeout:' and route the event '{WAIT_TIMEOUT_EVENT}' instead")
            elif event in seen:
                self.report(path, "wait-duplicate-event", f"states.{name}.event: '{event}' is listed twice")
            seen.add(event)
        produced = seen | {WAIT_TIMEOUT_EVENT}
        for index, rule in enumerate(state.transitions):
            for position, event in enumerate(rule.event or ()):
                path = (*where, "transitions", index, "event", position)
                if event == WAIT_TIMEOUT_EVENT and state.timeout is None:
                    self.report(path, "wait-timeout-without-timer",
                                f"states.{name}.transitions[{index}]: routes '{WAIT_TIMEOUT_EVENT}', but the wait "
                                "has no timer; add 'timeout:' (such as 24h) or drop the rule")
                elif event not in produced:
                    hint = did_you_mean(event, seen)
                    self.report(path, "wait-unknown-event",
                                f"states.{name}.transitions[{index}]: the wait never receives '{event}'; it waits "
                                f"for {', '.join(repr(e) for e in state.event)}{hint}")
        if state.timeout is not None and not _takes_timeout(state):
            self.report((*where, "timeout"), "wait-timeout-unhandled",
                        f"states.{name}: no rule takes the event '{WAIT_TIMEOUT_EVENT}'; when the timer runs out "
                        f"the run fails with transition.none (add {{event: {WAIT_TIMEOUT_EVENT}, to: ...}})",
                        key=True)

    def check_reply_schema(self, name: str, state: LlmStateSpec) -> None:
        """`schema:` and `parse_retries:` need `parse: json`; an inline schema must be a valid JSON Schema."""
        where = ("states", name)
        for field, value in (("schema", state.schema_), ("parse_retries", state.parse_retries)):
            if value is not None and state.parse != "json":
                self.report((*where, field), "invalid-value",
                            f"states.{name}.{field}: needs 'parse: json' (this state parses '{state.parse}')", key=True)
        if not isinstance(state.schema_, dict):
            return
        from jsonschema import validators
        from jsonschema.exceptions import SchemaError

        try:
            validators.validator_for(state.schema_, default=validators.Draft202012Validator).check_schema(state.schema_)
        except SchemaError as exc:
            inside = tuple(exc.path)
            message = exc.message
            if inside[-1:] == ("type",) and exc.validator == "anyOf" and not isinstance(exc.instance, list | dict):
                message = f"{exc.instance!r} is not a JSON Schema type ({', '.join(JSON_TYPES)})"
            place = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in inside)
            self.report((*where, "schema", *inside), "invalid-value",
                        f"states.{name}.schema{place}: not a valid JSON Schema: {_short(message)}")

    def _dropped(self, section: str) -> bool:
        return self.salvaged is not None and section in self.salvaged.dropped

    def check_catch_all_last(self, name: str, field: str, rules: list[RetrySpec] | list[CatchSpec]) -> None:
        for index, rule in enumerate(rules[:-1]):
            if "*" in rule.errors:
                self.report(("states", name, field, index, "errors"), "catch-all-not-last",
                            f"states.{name}.{field}[{index}]: matches every error ('*'), so the rules after it "
                            "never apply; move it last")

    def check_graph(self) -> None:
        states = self.spec.states
        if self.spec.initial not in states:
            return
        edges = {name: self._targets(state) for name, state in states.items()}
        reachable = _closure([self.spec.initial], edges)
        for name in states:
            if name not in reachable:
                self.report(("states", name), "unreachable-state",
                            f"states.{name}: no path leads here from the initial state '{self.spec.initial}'",
                            key=True)
        reverse: dict[str, set[str]] = {name: set() for name in states}
        for source, targets in edges.items():
            for target in targets:
                reverse[target].add(source)
        ends = [name for name, state in states.items() if state.is_terminal]
        can_end = _closure(ends, reverse)
        for name in states:
            if name in reachable and name not in can_end:
                self.report(("states", name), "no-way-out",
                            f"states.{name}: no final or fail state can be reached from here; the run would loop "
                            "until max_steps", key=True)

    def _targets(self, state: StateSpec) -> set[str]:
        if isinstance(state, PythonStateSpec):
            return set(self.spec.states)  # a Python state may return any state's name
        return {edge.target for edge in state.edges() if edge.target in self.spec.states}

    def check_templates(self) -> None:
        known = provided_names(self.spec)
        for site in template_sites(self.spec):
            try:
                compiled = compile_guard(site.source) if site.kind == "guard" else compile_template(site.source)
            except TemplateSyntaxError as exc:
                # Only a literal block keeps the file's lines; folded or quoted text was re-flowed by YAML.
                offset = (exc.lineno or 1) if self.source_map.is_literal_block(site.path) else 0
                self.report(site.path, "template-syntax",
                            f"{dotted_path(site.path)}: template syntax error: {exc.message}", line_offset=offset)
                continue
            if self.salvaged is not None:
                continue
            if site.path[:1] == ("tools",):
                self.check_binding_names(site, compiled.names)
                continue
            for name in sorted(compiled.names - known):
                hint = did_you_mean(name, known - RESERVED_NAMES)
                self.report(site.path, "undefined-variable",
                            f"{dotted_path(site.path)}: '{name}' is not an input, a context key, or saved by any "
                            f"state{hint}")

    def check_binding_names(self, site: TemplateSite, names: frozenset[str]) -> None:
        """A tool binding is rendered with the calling state's `args` alone, never the run's context."""
        for name in sorted(names - TOOL_BINDING_NAMES):
            self.report(site.path, "undefined-variable",
                        f"{dotted_path(site.path)}: '{name}' is not visible here; a tool binding's templates see "
                        "only 'args' (the tool state's rendered args), such as '{{ args." + name + " }}'")


def _assignment_sites(state: StateSpec) -> Iterator[tuple[str, NodePath]]:
    for field in ("on_enter", "on_exit"):
        for index, action in enumerate(getattr(state, field)):
            assert isinstance(action, SetAction)
            for key in action.set:
                yield key, (field, index, "set", key)
    if isinstance(state, SetStateSpec):
        for key in state.set:
            yield key, ("set", key)
    if isinstance(state, LlmStateSpec | ToolStateSpec | WaitStateSpec) and state.save:
        yield state.save, ("save",)
    if isinstance(state, RoutedStateSpec | ChoiceStateSpec):
        for index, rule in enumerate(state.transitions):
            for key in rule.set or {}:
                yield key, ("transitions", index, "set", key)
    if isinstance(state, ActiveStateSpec):
        for index, catch in enumerate(state.catch):
            if catch.as_:
                yield catch.as_, ("catch", index, "as")


def _takes_timeout(state: WaitStateSpec) -> bool:
    """Whether some way out of the wait accepts the timer's event: `next:`, a rule without `event:`, or one naming it."""
    if state.next is not None:
        return True
    return any(rule.event is None or WAIT_TIMEOUT_EVENT in rule.event for rule in state.transitions)


JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _closure(start: list[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(start)
    queue = deque(start)
    while queue:
        for target in edges.get(queue.popleft(), ()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def check_machine(spec: MachineSpec, source_map: SourceMap, filename: str) -> list[Problem]:
    """Every reference, graph and template problem of a schema-valid machine."""
    return _Checker(spec, source_map, filename).run()


@dataclass(frozen=True, slots=True)
class Salvage:
    """The schema-valid parts of an invalid machine, so their problems are reported in the same pass."""

    spec: MachineSpec
    state_names: frozenset[str]
    dropped: frozenset[str]


_STATE_ADAPTER: TypeAdapter[Any] | None = None


def salvage(data: Any) -> Salvage | None:
    """A machine made of the valid states and sections of `data`, or None when too little is valid."""
    global _STATE_ADAPTER
    if not isinstance(data, dict) or not isinstance(data.get("states"), dict) or not data["states"]:
        return None
    if _STATE_ADAPTER is None:
        _STATE_ADAPTER = TypeAdapter(AnyStateSpec)
    states = {}
    for name, raw in data["states"].items():
        try:
            states[name] = _STATE_ADAPTER.validate_python(raw)
        except ValidationError:
            continue
    if not states:
        return None
    candidate = {key: data[key] for key in ("inputs", "context", "llms", "tools", "initial") if key in data}
    dropped: set[str] = set()
    for _ in range(len(candidate) + 1):
        try:
            spec = MachineSpec.model_validate(
                {"agentfsm": 1, "name": "salvaged", "initial": "", **candidate, "states": states}
            )
        except ValidationError as exc:
            failing = {str(error["loc"][0]) for error in exc.errors() if error["loc"]} & set(candidate)
            if not failing:
                return None
            dropped |= failing
            for key in failing:
                del candidate[key]
            continue
        if "initial" not in candidate:
            dropped.add("initial")
        return Salvage(spec, frozenset(str(name) for name in data["states"]), frozenset(dropped))
    return None


def check_salvaged(salvaged: Salvage, source_map: SourceMap, filename: str) -> list[Problem]:
    """Reference and template problems of the valid parts of an invalid machine (no graph checks)."""
    return _Checker(salvaged.spec, source_map, filename, salvaged).run()
