"""Which states and transitions the cases took (`agentfsm test --coverage`), per machine file.

A transition is one way out a machine file declares (`StateSpec.edges()`: `next:`, each rule, each catch),
counted when a run took it. The report is JSON (`coverage_report`), read back by `agentfsm diagram FILE
--coverage REPORT` to draw what was taken and what was not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentfsm.spec.models import MachineSpec
from agentfsm.testing.runner import FileResult

COVERAGE_VERSION = 1


@dataclass(slots=True)
class MachineCoverage:
    """One machine's states and transitions, and how often the cases took each."""

    machine: str
    states: dict[str, int]
    transitions: list[dict[str, Any]]
    cases: int = 0
    unknown: list[tuple[str, str]] = field(default_factory=list)

    def percent(self) -> tuple[float, float]:
        states = sum(n > 0 for n in self.states.values()) / max(1, len(self.states))
        edges = sum(t["taken"] > 0 for t in self.transitions) / max(1, len(self.transitions))
        return 100 * states, 100 * edges


def _empty(machine: str, spec: MachineSpec) -> MachineCoverage:
    transitions = [{"from": name, "to": edge.target, "label": edge.label, "index": index, "error": edge.is_error,
                    "taken": 0}
                   for name, state in spec.states.items() for index, edge in enumerate(state.edges())]
    return MachineCoverage(machine, dict.fromkeys(spec.states, 0), transitions)


def _edge(coverage: MachineCoverage, spec: MachineSpec, source: str, target: str, rule: int | None,
          caught: bool) -> dict[str, Any] | None:
    """The declared way out a runtime transition took: rules keep their order (`next:` first, then
    `transitions:`); a caught error took the first catch rule going to its target."""
    candidates = [t for t in coverage.transitions if t["from"] == source and t["to"] == target]
    if caught:
        return next((t for t in candidates if t["error"]), None)
    if rule is not None:
        return next((t for t in candidates if t["index"] == rule and not t["error"]), None)
    return candidates[0] if candidates else None


def collect(results: Sequence[FileResult]) -> list[MachineCoverage]:
    """The coverage of every machine the results' cases ran, merged across files naming the same machine."""
    by_machine: dict[str, MachineCoverage] = {}
    for result in results:
        if result.loaded is None:
            continue
        spec = result.loaded.machine.spec
        name = result.machine or result.file
        coverage = by_machine.setdefault(name, _empty(name, spec))
        for case in result.cases:
            coverage.cases += 1
            for state in case.trail.path:
                if state in coverage.states:
                    coverage.states[state] += 1
            for source, target, rule, caught in case.trail.taken:
                edge = _edge(coverage, spec, source, target, rule, caught)
                if edge is None:
                    coverage.unknown.append((source, target))
                else:
                    edge["taken"] += 1
    return list(by_machine.values())


def coverage_report(coverages: Sequence[MachineCoverage]) -> dict[str, Any]:
    """The JSON coverage report."""
    return {"agentfsm_coverage": COVERAGE_VERSION, "machines": [
        {"machine": c.machine, "cases": c.cases, "states": c.states,
         "transitions": [{k: v for k, v in t.items() if k != "index"} | {"rule": t["index"]} for t in c.transitions]}
        for c in coverages]}


def render_coverage(coverages: Sequence[MachineCoverage]) -> str:
    """A table per machine: the share of states and transitions taken, and what was never taken."""
    lines = ["coverage: machine  states  transitions"]
    for c in coverages:
        states, edges = c.percent()
        lines.append(f"  {c.machine}  {states:.0f}%  {edges:.0f}%")
        never = [name for name, n in c.states.items() if n == 0]
        if never:
            lines.append(f"    states never entered: {', '.join(never)}")
        missed = [f"{t['from']} --{t['label']}--> {t['to']}" for t in c.transitions if t["taken"] == 0]
        if missed:
            lines.append(f"    transitions never taken: {'; '.join(missed)}")
    return "\n".join(lines) + "\n"
