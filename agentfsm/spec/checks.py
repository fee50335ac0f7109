"""Checks beyond the schema: references, the transition graph, and every template.

They run on a valid machine and, when the models refuse the document, on what `partial.py`
could read of it, so that one pass reports every problem that does not depend on another.
They never import user code and never render a template (templates are only compiled):
`validate` is static.

What "independent" means, rule by rule:

- A state the models refuse still exists: a way out naming it is no `unknown-target`, and
  `initial:` may name it.
- The parts of a refused state that can be read are checked as a valid state's are: each
  way out must name a state, each binding it names must be declared, each template must
  compile and read only names something provides, and each name it saves or sets is
  provided to the templates of the other states. The rules of a kind that need the whole
  state (a wait's events, a choice's default rule, `schema:` with `parse:`, the order of
  `retry`/`catch` rules, `next:` beside `transitions:`) wait until the state is valid.
- Graph checks run on whatever can be read, and never warn because of a piece that is not
  known (`graph.py`). A state counts as going anywhere when it picks its next state itself
  (`python`), when a way out of it is misspelled (`unknown-target`) or missing
  (`no-transition`, a choice without rules), or when a way out cannot be read at all; a way
  out that cannot be read but names states (`next: [b]`, rules under a misspelled key such
  as `on:`) counts as going to them. A state counts as a possible end when it may be a
  `final` or `fail` state (a misspelled `type:`, a state that is not a mapping). A state
  whose name is refused gets no graph warning (nothing can name it), and without a readable
  `initial:` that names a state there are no graph checks at all.
- `undefined-variable` needs every name the file gives. A part that gives names (`save:`,
  `as:`, `set:`, rules, a whole state, `inputs:`, `context:`) and cannot be read, or is
  required and missing, gives names no one can know: then no `undefined-variable` is
  reported. A key no model defines may be a misspelled one of those (`sav: answer`,
  `input: {task: ...}`): the name-like words in it count as provided.
- Bindings named by a state are not checked against a section that cannot be read (`llms:`
  written as a list); a binding the models refuse still declares its name.
- A problem is reported once: a part pydantic refused is not read, so nothing here reports
  on it again.
"""

from __future__ import annotations

import urllib.parse

from dataclasses import replace
from typing import Any

from jinja2 import TemplateSyntaxError

from agentfsm.spec.breakpoints import split_breakpoint, unknown_state_message
from agentfsm.spec.diagnostics import did_you_mean, dotted_path
from agentfsm.spec.expressions import RESERVED_NAMES, compile_guard, compile_template
from agentfsm.spec.graph import Exits, dead_ends
from agentfsm.spec.inputs import InputError, check_inputs
from agentfsm.spec.models import (
    Edge,
    InputSpec,
    MachineSpec,
    RoutedStateSpec,
    StateSpec,
)
from agentfsm.spec.partial import (
    PartialModel,
    Unreadable,
    fields_of,
    is_model,
    raw_of,
    read_refused,
    value_of,
    words,
)
from agentfsm.spec.network import sends_in_clear
from agentfsm.spec.problems import Problem, problem
from agentfsm.spec.sites import (
    TOOL_BINDING_NAMES,
    TemplateSite,
    assignment_sites,
    names_maybe_provided,
    provided_names,
    template_sites,
)
from agentfsm.spec.yamlsource import NodePath, SourceMap

EDGE_FIELDS = ("next", "transitions", "catch")
"""The fields `StateSpec.edges()` reads: `next:`, and the `to:` of each rule of the two lists."""

BINDING_FIELDS: dict[str, tuple[str, str, str]] = {
    "llm": ("llms", "unknown-llm", "LLM"),
    "tool": ("tools", "unknown-tool", "tool"),
    "tools": ("tools", "unknown-tool", "tool"),
}
"""State fields naming bindings: key -> (the section declaring them, the problem code, what they are)."""

class _Checker:
    def __init__(self, machine: MachineSpec | PartialModel, source_map: SourceMap, filename: str) -> None:
        self.machine = machine
        self.source_map = source_map
        self.filename = filename
        states = value_of(machine, "states")
        self.states_known = isinstance(states, dict)
        self.states: dict[str, Any] = states if isinstance(states, dict) else {}
        self.state_names = frozenset(self.states)
        self.exits: dict[str, Exits] = {}
        self.problems: list[Problem] = []

    def report(self, path: NodePath, code: str, message: str, *, key: bool = False, line_offset: int = 0) -> None:
        mark = self.source_map.mark(path, key=key)
        self.problems.append(problem(self.filename, mark.line + line_offset, mark.column, code, message))

    def run(self) -> list[Problem]:
        self.check_names()
        self.check_input_defaults()
        self.check_initial()
        self.check_breakpoints()
        for name, state in self.states.items():
            self.check_state(name, state)
        self.check_graph()
        self.check_templates()
        self.check_urls()
        return self.problems

    def check_urls(self) -> None:
        llms = value_of(self.machine, "llms")
        for name, binding in (llms.items() if isinstance(llms, dict) else ()):
            url = value_of(binding, "base_url")
            if url is not None and sends_in_clear(str(url)):
                self.report(("llms", name, "base_url"), "insecure-url",
                            f"llms.{name}.base_url: plain http to {urllib.parse.urlsplit(str(url)).hostname}, "
                            "a host that is not local: no API key or secret header is ever sent over it; use https")

    def check_names(self) -> None:
        for section in ("inputs", "context"):
            declared = value_of(self.machine, section)
            for name in declared if isinstance(declared, dict) else ():
                if name in RESERVED_NAMES:
                    self.report((section, name), "invalid-name",
                                f"{section}.{name}: '{name}' is reserved (templates see the current {name} under it)",
                                key=True)
        for state_name, state in self.states.items():
            for name, path in assignment_sites(state):
                if name in RESERVED_NAMES:
                    self.report(("states", state_name, *path), "invalid-name",
                                f"states.{state_name}: '{name}' is reserved and cannot be assigned", key=True)

    def check_input_defaults(self) -> None:
        inputs = value_of(self.machine, "inputs")
        for name, declared in inputs.items() if isinstance(inputs, dict) else ():
            if not isinstance(declared, InputSpec) or declared.default is None:
                continue
            try:
                check_inputs({name: declared}, {name: declared.default})
            except InputError as exc:
                self.report(("inputs", name, "default"), "invalid-value", f"inputs.{name}.default: {exc}")

    def check_initial(self) -> None:
        initial = value_of(self.machine, "initial")
        if isinstance(initial, str) and self.states_known and initial not in self.state_names:
            hint = did_you_mean(initial, self.state_names)
            self.report(("initial",), "unknown-initial", f"initial: no state named '{initial}'{hint}")

    def check_breakpoints(self) -> None:
        found = value_of(self.machine, "breakpoints")
        for index, text in enumerate(found if isinstance(found, list) and self.states_known else ()):
            if not isinstance(text, str):
                continue
            split = split_breakpoint(text, self.state_names)
            if split is None:
                self.report(("breakpoints", index), "unknown-breakpoint", f"breakpoints[{index}]: "
                            + unknown_state_message(text, self.state_names, str(value_of(self.machine, "name"))))
            elif split[1] is not None:
                try:
                    compile_guard(split[1])
                except TemplateSyntaxError as exc:
                    self.report(("breakpoints", index), "template-syntax",
                                f"breakpoints[{index}]: guard syntax error: {exc.message}")

    def check_state(self, name: str, state: Any) -> None:
        """A state's references, the rules of its kind once it is valid, and what the graph knows of its exits."""
        if not is_model(state):  # not even a mapping: it may be any kind and go anywhere
            self.exits[name] = Exits(frozenset(), anywhere=True, may_end=True)
            return
        if isinstance(state, StateSpec):
            edges = state.edges()
            exits = Exits(frozenset(), anywhere=state.routes_itself or _lacks_route(state), may_end=state.terminal)
        else:
            edges, exits = self.partial_exits(state)
        misspelled = self.check_targets(name, edges)
        self.exits[name] = replace(exits, targets=exits.targets | {edge.target for edge in edges},
                                   anywhere=exits.anywhere or misspelled)
        self.check_bindings(name, state)
        if isinstance(state, StateSpec):
            self.check_kind(name, state)

    def partial_exits(self, state: PartialModel) -> tuple[list[Edge], Exits]:
        """The readable ways out of a refused state, and what else the graph may assume of it."""
        edges, unread = _readable_edges(state)
        named = [words(raw) & self.state_names for raw in unread]
        guessed = [words(state.raw[key]) & self.state_names for key in state.unknown]
        anywhere = (
            not all(named)  # a way out that names no state could go to any
            or not state.missing.isdisjoint(EDGE_FIELDS)
            or any(issubclass(model, StateSpec) and model.routes_itself for model in state.models)
        )
        may_end = any(issubclass(model, StateSpec) and model.terminal for model in state.models)
        return edges, Exits(frozenset().union(*named, *guessed), anywhere, may_end)

    def check_targets(self, name: str, edges: list[Edge]) -> bool:
        """Report ways out naming no state; whether there was one."""
        where = ("states", name)
        misspelled = False
        for edge in edges:
            if edge.target not in self.state_names:
                misspelled = True
                hint = did_you_mean(edge.target, self.state_names)
                self.report((*where, *edge.path), "unknown-target",
                            f"{dotted_path((*where, *edge.path))}: no state named '{edge.target}'{hint}")
        return misspelled

    def check_bindings(self, name: str, state: Any) -> None:
        """Every binding a state names is declared (unless its section cannot be read)."""
        for key, value, _ in fields_of(state):
            if key not in BINDING_FIELDS or isinstance(value, Unreadable):
                continue
            section, code, noun = BINDING_FIELDS[key]
            declared = self.declared(section)
            if declared is None:
                continue
            if isinstance(value, str):
                named = [((key,), value)]
            else:  # a list of names, such as an llm state's `tools:`
                named = [((key, index), item) for index, item in enumerate(value) if isinstance(item, str)] \
                    if isinstance(value, list) else []
            for inside, binding in named:
                if binding not in declared:
                    path = ("states", name, *inside)
                    self.report(path, code, f"{dotted_path(path)}: no {noun} binding named '{binding}' "
                                            f"under {section}:{did_you_mean(binding, declared)}")

    def declared(self, section: str) -> frozenset[str] | None:
        """The names a section declares; None when it cannot be read."""
        value = value_of(self.machine, section)
        if isinstance(value, dict):
            return frozenset(value)
        return None if isinstance(value, Unreadable) else frozenset()

    def check_kind(self, name: str, state: StateSpec) -> None:
        """The rules of a state's kind, which need the whole state (each kind's model knows its own)."""
        state.check(name, self)

    def check_graph(self) -> None:
        initial = value_of(self.machine, "initial")
        if not isinstance(initial, str) or initial not in self.exits:
            return
        unreachable, stuck = dead_ends(initial, self.exits)
        refused = getattr(self.states, "refused_keys", frozenset())
        for name in self.states:
            if name in refused:  # its name is the problem, already reported; no rule can name it
                continue
            if name in unreachable:
                self.report(("states", name), "unreachable-state",
                            f"states.{name}: no path leads here from the initial state '{initial}'", key=True)
            elif name in stuck:
                self.report(("states", name), "no-way-out",
                            f"states.{name}: no final or fail state can be reached from here; the run would loop "
                            "until max_steps", key=True)

    def check_templates(self) -> None:
        known = provided_names(self.machine)
        unread = names_maybe_provided(self.machine)
        for site in template_sites(self.machine):
            try:
                compiled = compile_guard(site.source) if site.kind == "guard" else compile_template(site.source)
            except TemplateSyntaxError as exc:
                # Only a literal block keeps the file's lines; folded or quoted text was re-flowed by YAML.
                offset = (exc.lineno or 1) if self.source_map.is_literal_block(site.path) else 0
                self.report(site.path, "template-syntax",
                            f"{dotted_path(site.path)}: template syntax error: {exc.message}", line_offset=offset)
                continue
            if site.path[:1] == ("tools",):
                self.check_binding_names(site, compiled.names)
                continue
            if unread is None:  # a part that could not be read gives names no one can know
                continue
            for name in sorted(compiled.names - known - unread - site.sees):
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


def _lacks_route(state: StateSpec) -> bool:
    """A state that moves on by `next:` or rules, with neither (a Python state names its next state itself)."""
    return isinstance(state, RoutedStateSpec) and state.lacks_route


def _readable_edges(state: PartialModel) -> tuple[list[Edge], list[Any]]:
    """The ways out of a refused state that can be read, and (as written) the parts of ways out that cannot.

    Reads what `StateSpec.edges()` reads, the same way: `next:`, then the `to:` of each rule.
    """
    edges: list[Edge] = []
    unread: list[Any] = []
    for key in EDGE_FIELDS:
        value = state.fields.get(key)
        if isinstance(value, str):
            edges.append(Edge(value, (key,), ""))
        elif isinstance(value, list):
            for index, rule in enumerate(value):
                target = value_of(rule, "to")
                if isinstance(target, str):
                    edges.append(Edge(target, (key, index, "to"), ""))
                else:
                    unread.append(raw_of(rule))
        elif value is not None:
            unread.append(raw_of(value))
    return edges, unread


def check_machine(spec: MachineSpec, source_map: SourceMap, filename: str) -> list[Problem]:
    """Every reference, graph and template problem of a schema-valid machine."""
    return _Checker(spec, source_map, filename).run()


def check_refused(data: Any, source_map: SourceMap, filename: str) -> list[Problem]:
    """The reference, graph and template problems of a document the models refused, in the parts that can be read."""
    machine = read_refused(MachineSpec, data)
    if not isinstance(machine, PartialModel):
        return []
    return _Checker(machine, source_map, filename).run()
