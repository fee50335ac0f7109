"""Static analysis of a valid machine, for `agentfsm validate`: what a demanding author wants to know before a run.

Each finding has a stable code (`problems.CODES`), the place in the file and one line saying why. They are
warnings (`validate --strict` makes them errors), and run only in `validate`, not on every load:

- `shadowed-rule`: a rule no event can reach, because an earlier rule on its events has no guard, or the
  earlier rules' guards can never all be false (`flow.exhaustive`).
- `trap-state`: a state from which no final or fail state can be reached once shadowed rules are discounted
  (the plain graph case is `no-way-out`, reported by every load).
- `unbounded-cycle`: a cycle with no `max_visits` on any state in it, no wait in it, and no guard in it reading
  a value the cycle changes: only `max_steps` ends it.
- `wait-without-timeout`: a wait with no timer waits for ever when nobody sends the event.
- `child-never-ends`: a nested machine, a parallel branch or a team's agent whose machine can reach no final
  state: the join can never complete, the team never ends.
- `maybe-undefined`: a template reads a context key that some path from the initial state to it never
  assigns (no input, no initial context, no state on the way); the path is named.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentfsm.spec.diagnostics import dotted_path
from agentfsm.spec.flow import Rule, StateFlow, machine_flow, state_reads
from agentfsm.spec.graph import Exits, dead_ends
from agentfsm.spec.models import MachineSpec
from agentfsm.spec.problems import Problem, problem
from agentfsm.spec.yamlsource import NodePath, SourceMap


class _Analysis:
    def __init__(self, spec: MachineSpec, source_map: SourceMap, filename: str, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self.spec = spec
        self.source_map = source_map
        self.filename = filename
        self.flow = machine_flow(spec)
        self.problems: list[Problem] = []

    def report(self, path: NodePath, code: str, message: str, *, key: bool = False) -> None:
        mark = self.source_map.mark(path, key=key)
        self.problems.append(problem(self.filename, mark.line, mark.column, code, message))

    def run(self) -> list[Problem]:
        self.children()
        self.shadowed_rules()
        self.waits()
        reachable = self.traps()
        self.cycles(reachable)
        self.undefined_on_paths(reachable)
        return self.problems

    def children(self) -> None:
        """A child machine (a nested machine, a parallel branch, a team's agent) that can reach no final state
        means the state running it can never complete: a join that never completes, a team that never ends."""
        for name, state in self.flow.items():
            nested = getattr(state.spec, "nested", None)
            for where, ref, extra in nested() if nested is not None else ():
                child = _child_spec(ref, f"{name}.child", extra, self.base_dir)
                if child is None or _can_succeed(child):
                    continue
                path = ("states", name, *where)
                self.report(path, "child-never-ends",
                            f"{dotted_path(path)}: its machine can reach no final state from '{child.initial}', "
                            "so this state can never complete")

    def shadowed_rules(self) -> None:
        for name, state in self.flow.items():
            for index, by in state.shadowed_by.items():
                rule = state.rules[index]
                where = ("states", name, *rule.path[:2])
                earlier = " and ".join(f"{dotted_path(('states', name, *state.rules[i].path[:2]))}" for i in by)
                if len(by) > 1:
                    why = f"rules {earlier} have guards that can never both be false"
                elif state.rules[by[0]].guard is None:
                    why = f"rule {earlier} has no guard"
                else:
                    why = f"rule {earlier} has a guard that always holds"
                self.report(where, "shadowed-rule",
                            f"{dotted_path(where)}: can never be taken: the earlier {why}, on the same events")

    def waits(self) -> None:
        for name, state in self.flow.items():
            timers = (getattr(state.spec, "timeout", None), getattr(state.spec, "until", None))
            if state.spec.suspends and timers == (None, None):
                self.report(("states", name), "wait-without-timeout",
                            f"states.{name}: waits with no timeout; if the event never comes the run waits for ever "
                            "(add 'timeout:' and a rule for the event 'timeout')", key=True)

    def exits(self, *, live: bool) -> dict[str, Exits]:
        return {
            name: Exits(frozenset(rule.target for rule in (state.live_rules() if live else state.rules)),
                        anywhere=state.anywhere, may_end=state.spec.terminal)
            for name, state in self.flow.items()
        }

    def traps(self) -> set[str]:
        """Report states trapped only by shadowed rules; return the states a run can reach."""
        live = self.exits(live=True)
        _, stuck_before = dead_ends(self.spec.initial, self.exits(live=False))
        unreachable, stuck = dead_ends(self.spec.initial, live)
        for name in self.flow:
            if name in stuck and name not in stuck_before:
                self.report(("states", name), "trap-state",
                            f"states.{name}: no final or fail state can be reached from here: the rules that "
                            "would lead there can never be taken (see shadowed-rule)", key=True)
        return set(self.flow) - unreachable

    def cycles(self, reachable: set[str]) -> None:
        successors = {name: {rule.target for rule in state.live_rules() if rule.target in self.flow}
                      for name, state in self.flow.items() if name in reachable}
        for component in _strong_components(successors):
            members = [name for name in self.flow if name in component]
            first = members[0]
            if len(members) == 1 and first not in successors[first]:
                continue
            if self.bounded(component):
                continue
            loop = " -> ".join([*members, first])
            self.report(("states", first), "unbounded-cycle",
                        f"states.{first}: the cycle {loop} has no bound: no state in it has max_visits, none "
                        f"waits, and no guard in it reads a value it changes; only max_steps "
                        f"({self.spec.max_steps}) ends it", key=True)

    def bounded(self, component: set[str]) -> bool:
        states = [self.flow[name] for name in component]
        if any(s.spec.max_visits is not None or s.spec.suspends or s.spec.assigns_freely or s.anywhere
               for s in states):
            return True
        changed = {"result", "event"}
        for state in states:
            changed |= state.assigns
            changed |= {n for rule in state.live_rules() if rule.target in component for n in rule.assigns}
        return any(rule.guard is not None and _reads_changed(rule.guard, changed)
                   for state in states for rule in state.live_rules())

    def undefined_on_paths(self, reachable: set[str]) -> None:
        base = frozenset(self.spec.inputs) | frozenset(self.spec.context)
        provided = _everything(self.flow, base)
        entering = _definitely_assigned(self.flow, self.spec.initial, base)
        for name, state in self.flow.items():
            if name not in reachable or name not in entering:
                continue
            for read in state_reads(state.spec):
                known = entering[name] | (state.assigns if read.on_exit else state.entry_assigns)
                if read.name in known or read.name not in provided:  # never provided: `undefined-variable`
                    continue
                path = self.witness(name, read.name, base)
                if path is None:
                    continue
                where = ("states", name, *read.site.path)
                self.report(where, "maybe-undefined",
                            f"{dotted_path(where)}: '{read.name}' may not be set here: nothing assigns it "
                            f"on the path {' -> '.join(path)}")

    def witness(self, target: str, name: str, base: frozenset[str]) -> list[str] | None:
        """A shortest path from the initial state to `target` on which nothing assigns `name`."""
        if name in base:
            return None
        start = self.spec.initial
        previous: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            if current == target:
                path = []
                node: str | None = current
                while node is not None:
                    path.append(node)
                    node = previous[node]
                return path[::-1]
            state = self.flow[current]
            if state.spec.assigns_freely:
                continue
            for rule in state.live_rules():
                if rule.target not in self.flow or rule.target in previous:
                    continue
                if name in rule.assigns or name in (state.entry_assigns if rule.is_error else state.assigns):
                    continue
                previous[rule.target] = current
                queue.append(rule.target)
        return None


def _reads_changed(guard: str, changed: set[str]) -> bool:
    from agentfsm.spec.expressions import compile_guard

    try:
        return bool(compile_guard(guard).names & changed)
    except Exception:  # noqa: BLE001 - a guard that does not compile is reported by the checks
        return True


def _out(state: StateFlow, rule: Rule, entering: frozenset[str]) -> frozenset[str]:
    """What is surely assigned after leaving `state` by `rule`: a failed state's saves did not happen."""
    done = state.entry_assigns if rule.is_error else state.assigns
    return entering | done | rule.assigns


def _everything(flow: dict[str, StateFlow], base: frozenset[str]) -> frozenset[str]:
    """Every name the machine provides (what a Python state may have assigned)."""
    return base.union(*(s.assigns for s in flow.values()), *(r.assigns for s in flow.values() for r in s.rules))


def _definitely_assigned(flow: dict[str, StateFlow], initial: str, base: frozenset[str]) -> dict[str, frozenset[str]]:
    """For each state a run reaches, the names assigned on every path from the initial state into it."""
    entering: dict[str, frozenset[str]] = {initial: base}
    queue = deque([initial])
    queued = {initial}
    while queue:
        name = queue.popleft()
        queued.discard(name)
        state = flow[name]
        for rule in state.live_rules():
            if rule.target not in flow:
                continue
            out = _everything(flow, base) if state.spec.assigns_freely else _out(state, rule, entering[name])
            old = entering.get(rule.target)
            new = out if old is None else old & out
            if new != old:
                entering[rule.target] = new
                if rule.target not in queued:
                    queued.add(rule.target)
                    queue.append(rule.target)
    return entering


def _strong_components(successors: dict[str, set[str]]) -> Iterator[set[str]]:
    """Tarjan's strongly connected components, iteratively (a long chain of states must not hit recursion limits)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in successors:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(successors[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in successors:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component


def _child_spec(ref: Any, name: str, extra: frozenset[str], base_dir: Path | None) -> MachineSpec | None:
    """The machine a nested reference runs, when it can be read (its own problems are reported elsewhere)."""
    from agentfsm.spec.nesting import inline_document

    try:
        if ref.machine is None:
            return MachineSpec.model_validate(inline_document(ref, name, {}, extra))
        if base_dir is None:
            return None
        from agentfsm.spec.loader import validate_file

        report = validate_file(base_dir / ref.machine)
        return report.spec if report.ok else None
    except Exception:  # noqa: BLE001 - an unreadable child is the checks' problem, not the analysis's
        return None


def _can_succeed(spec: MachineSpec) -> bool:
    """Whether some path from the initial state reaches a `final` state (a state that picks its next state
    itself may go anywhere)."""
    flow = machine_flow(spec)
    seen = {spec.initial}
    queue = deque([spec.initial])
    while queue:
        state = flow.get(queue.popleft())
        if state is None:
            continue
        if state.spec.succeeds:
            return True
        targets = flow if state.anywhere else [rule.target for rule in state.rules]
        for target in targets:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return False


def analyse(spec: MachineSpec, source_map: SourceMap, filename: str, base_dir: Path | None = None) -> list[Problem]:
    """Every analysis finding of a valid machine, in file order (`base_dir`: where its nested machine files are
    found)."""
    found = _Analysis(spec, source_map, filename, base_dir).run()
    return sorted(found, key=lambda p: (p.line, p.column))
