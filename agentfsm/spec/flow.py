"""A valid machine as the static analysis reads it: each state's rules in order, what each way out assigns, and
which guards can never all be false.

Rules are read through the models (`StateSpec.edges()` and the rule lists), never per state kind. A guard is
compared with the others by its Jinja2 syntax tree: `x < 3` and `x >= 3`, `ok` and `not ok`, `a is defined` and
`a is not defined` are complements; a guard that is the constant `true` always holds. Anything subtler is left
alone (the analysis may then miss a problem, never invent one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from agentfsm.spec.expressions import ENVIRONMENT, RESERVED_NAMES, compile_guard, compile_template
from agentfsm.spec.models import MachineSpec, StateSpec
from agentfsm.spec.sites import TemplateSite, assignment_sites, template_sites
from agentfsm.spec.yamlsource import NodePath

EXIT_FIELDS = ("transitions", "catch", "on_exit")
"""Parts of a state read or run as it is left, after its work: they see what the state itself saved."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One way out of a state, in the order the runtime tries them."""

    target: str
    path: NodePath
    label: str
    events: frozenset[str] | None
    """The events it answers; None: any event."""
    guard: str | None
    assigns: frozenset[str]
    """Names taking the rule assigns (a rule's `set:`, a catch's `as:`)."""
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class StateFlow:
    """What the analysis knows of one state."""

    name: str
    spec: StateSpec
    rules: tuple[Rule, ...]
    assigns: frozenset[str]
    """Names the state's own work and actions assign (not its rules')."""
    entry_assigns: frozenset[str]
    """Names its `on_enter:` actions assign (done even when the work fails)."""
    live: frozenset[int]
    """Indexes of the rules that can be taken (the others are shadowed by earlier rules)."""
    shadowed_by: dict[int, tuple[int, ...]]
    """A dead rule -> the earlier rules that leave it no case (one unguarded rule, or complementary guards)."""

    @property
    def anywhere(self) -> bool:
        return self.spec.routes_itself

    def live_rules(self) -> Iterator[Rule]:
        return (rule for index, rule in enumerate(self.rules) if index in self.live)


def machine_flow(spec: MachineSpec) -> dict[str, StateFlow]:
    """Every state's flow, in file order."""
    return {name: _state_flow(name, state) for name, state in spec.states.items()}


def _state_flow(name: str, state: StateSpec) -> StateFlow:
    rules = tuple(_rules(state))
    own = set()
    entry = set()
    for assigned, path in assignment_sites(state):
        if path[0] in ("transitions", "catch"):
            continue
        own.add(assigned)
        if path[0] == "on_enter":
            entry.add(assigned)
    shadowed = _shadowed(rules)
    live = frozenset(index for index in range(len(rules)) if index not in shadowed)
    return StateFlow(name, state, rules, frozenset(own), frozenset(entry), live, shadowed)


def _rules(state: StateSpec) -> Iterator[Rule]:
    transitions = list(getattr(state, "transitions", ()) or ())
    catches = list(getattr(state, "catch", ()) or ())
    for edge in state.edges():
        kind, index = edge.path[0], edge.path[1] if len(edge.path) > 1 else None
        if kind == "next":
            yield Rule(edge.target, edge.path, edge.label, None, None, frozenset())
        elif kind == "transitions" and isinstance(index, int):
            rule = transitions[index]
            events = frozenset(rule.event) if rule.event else None
            yield Rule(edge.target, edge.path, edge.label, events, rule.when, frozenset(rule.set or ()))
        elif kind == "catch" and isinstance(index, int):
            catch = catches[index]
            names = frozenset({catch.as_}) if catch.as_ else frozenset()
            yield Rule(edge.target, edge.path, edge.label, None, None, names, is_error=True)


def _covers(earlier: Rule, later: Rule) -> bool:
    """Every event the later rule answers, the earlier one answers too (error rules only shadow error rules)."""
    if earlier.is_error != later.is_error:
        return False
    if earlier.events is None:
        return True
    return later.events is not None and later.events <= earlier.events


def _shadowed(rules: tuple[Rule, ...]) -> dict[int, tuple[int, ...]]:
    """Rules no event can reach: an earlier rule answering its events has no guard, or earlier guards on its
    events can never all be false."""
    found: dict[int, tuple[int, ...]] = {}
    for index, rule in enumerate(rules):
        if rule.is_error:
            continue  # catch rules are tried by error type: `catch-all-not-last` covers them
        before = [i for i in range(index) if i not in found and _covers(rules[i], rule)]
        unguarded = [i for i in before if rules[i].guard is None]
        if unguarded:
            found[index] = (unguarded[0],)
            continue
        pair = exhaustive([(i, rules[i].guard or "") for i in before])
        if pair is not None:
            found[index] = pair
    return found


# -- guards ----------------------------------------------------------------------------------

_COMPLEMENT = {"lt": ("lt", True), "gteq": ("lt", False), "gt": ("gt", True), "lteq": ("gt", False),
               "eq": ("eq", True), "ne": ("eq", False), "in": ("in", True), "notin": ("in", False)}


def _literal(node: nodes.Node, polarity: bool = True) -> tuple[str, bool]:
    """A guard as (atom, polarity): `x >= 3` is (`x lt 3`, False), `not ok` is (`ok`, False)."""
    if isinstance(node, nodes.Not):
        return _literal(node.node, not polarity)
    if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPLEMENT:
        op, sense = _COMPLEMENT[node.ops[0].op]
        return f"{node.expr!r} {op} {node.ops[0].expr!r}", sense == polarity
    if isinstance(node, nodes.Test) and node.name in ("defined", "undefined") and not node.args:
        return f"{node.node!r} is defined", (node.name == "defined") == polarity
    return repr(node), polarity


def _always_true(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and node.value is True


def guard_tree(source: str) -> nodes.Node | None:
    """A guard's expression tree, or None when it does not parse (reported elsewhere)."""
    try:
        template = ENVIRONMENT.parse("{{ " + source + " }}")
    except TemplateSyntaxError:
        return None
    body = template.body
    if len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1:
        return body[0].nodes[0]
    return None


def exhaustive(guards: list[tuple[int, str]]) -> tuple[int, ...] | None:
    """The indexes of guards that can never all be false (a constant `true`, or a guard and its complement)."""
    seen: dict[tuple[str, bool], int] = {}
    for index, source in guards:
        tree = guard_tree(source)
        if tree is None:
            continue
        if _always_true(tree):
            return (index,)
        atom, polarity = _literal(tree)
        other = seen.get((atom, not polarity))
        if other is not None:
            return (other, index)
        seen.setdefault((atom, polarity), index)
    return None


# -- what templates read ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Read:
    """A name a template reads without asking whether it is defined."""

    name: str
    site: TemplateSite

    @property
    def on_exit(self) -> bool:
        """Read as the state is left (rules, `on_exit`), so the state's own saves are visible."""
        return bool(self.site.path) and self.site.path[0] in EXIT_FIELDS


def state_reads(state: StateSpec) -> Iterator[Read]:
    """Every name the state's templates read, except those only read under `is defined` or `default(...)`."""
    for site in template_sites(state):
        try:
            compiled = compile_guard(site.source) if site.kind == "guard" else compile_template(site.source)
            tree: Any = guard_tree(site.source) if site.kind == "guard" else ENVIRONMENT.parse(site.source)
        except TemplateSyntaxError:
            continue
        tolerated = _tolerated(tree) if tree is not None else frozenset()
        for name in sorted(compiled.names - tolerated - RESERVED_NAMES):
            yield Read(name, site)


def _tolerated(tree: nodes.Node) -> frozenset[str]:
    """Names a template asks about before using: `x is defined`, `x | default(...)`."""
    names: set[str] = set()
    for test in tree.find_all(nodes.Test):
        if test.name in ("defined", "undefined"):
            names.update(_roots(test.node))
    for filter_ in tree.find_all(nodes.Filter):
        if filter_.name in ("default", "d") and filter_.node is not None:
            names.update(_roots(filter_.node))
    return frozenset(names)


def _roots(node: nodes.Node) -> Iterator[str]:
    """The variable an expression such as `review.comment` or `items[0]` starts from."""
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    if isinstance(node, nodes.Name):
        yield node.name
