"""Problems found while loading or validating a machine file, and their stable codes.

Every problem carries the file, line and column it is about. Codes are part of the
public contract (scripts match on them), so a code is never renamed or reused;
`CODES` is the registry the table in `docs/reference.md` is generated from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]

# code -> (severity, what it means). `python -m agentfsm.reference` regenerates the docs from it.
CODES: dict[str, tuple[Severity, str]] = {
    # reading the file
    "file-not-found": ("error", "The path does not exist."),
    "not-a-file": ("error", "The path is a directory or another non-regular file."),
    "file-too-large": ("error", "The file is larger than 5 MB."),
    "file-encoding": ("error", "The file is not valid UTF-8 text."),
    # YAML
    "yaml-syntax": ("error", "The file is not valid YAML."),
    "yaml-duplicate-key": ("error", "A mapping has the same key twice."),
    "yaml-alias-bomb": ("error", "Anchors and aliases expand to an excessive document (a 'billion laughs' attack)."),
    "yaml-tag": ("error", "A YAML tag (such as !!python/object) that safe loading refuses."),
    "yaml-empty": ("error", "The file holds no YAML document."),
    "yaml-multiple-documents": ("error", "The file holds more than one YAML document."),
    "not-a-mapping": ("error", "The document, or a value that must be a mapping, is something else."),
    # the language's shape (from the pydantic models)
    "version": ("error", "`agentfsm:` is missing or names a language version this release does not read."),
    "on-key": ("error", "A key `on:` (YAML 1.1 reads it as `true`); transitions are written under `transitions:`."),
    "unknown-field": ("error", "A key the language does not define at this place."),
    "missing-field": ("error", "A required key is absent."),
    "unknown-state-type": ("error", "`type:` of a state names no state kind."),
    "unknown-provider": ("error", "`provider:` of an LLM binding names no provider."),
    "invalid-value": ("error", "A value has the wrong type or is out of range."),
    "invalid-name": ("error", "A state, input, binding or context key name is empty, reserved or malformed."),
    # references and graph
    "unknown-initial": ("error", "`initial:` names no state."),
    "unknown-breakpoint": ("error", "`breakpoints:` names a state the machine does not have."),
    "nested-machine": ("error", "A nested machine, branch or agent names neither a file nor inline states, or its "
                       "file has errors (each reported in that file, with its line)."),
    "nested-cycle": ("error", "Machine files include each other (directly or through others); the cycle is named."),
    "team-config": ("error", "A team's strategy lacks what it needs (agents, a supervisor, a score or judge) or "
                    "has an option its strategy does not use."),
    "unknown-agent": ("error", "A `send` of a team's agent names an agent the team does not have."),
    "join-too-many": ("error", "`join: N` of a parallel state asks for more branches than it has."),
    "unknown-target": ("error", "A transition, `next:` or `catch` goes to a state that does not exist."),
    "unknown-llm": ("error", "An `llm` state names an LLM binding not declared under `llms:`."),
    "unknown-tool": ("error", "A `tool` state names a tool binding not declared under `tools:`."),
    "no-transition": ("error", "A non-terminal state has neither `next:` nor `transitions:`."),
    "next-and-transitions": ("error", "A state has both `next:` and `transitions:`; use one."),
    "choice-without-default": ("error", "The last rule of a `choice` has a `when:` or `event:`; a choice must end with a default rule."),
    "catch-all-not-last": ("error", "A `retry` or `catch` rule matching `*` is followed by other rules that can never match."),
    "wait-unknown-event": ("error", "A `wait` state's rule routes an event the wait does not list (nor `timeout`)."),
    "wait-duplicate-event": ("error", "A `wait` state lists the same event twice."),
    "wait-two-timers": ("error", "A `wait` state has both `timeout:` and `until:`; a wait has one timer."),
    "wait-without-trigger": ("error", "A `wait` state has no `event:` and no timer (`timeout:` or `until:`)."),
    "wait-timeout-without-timer": ("error", "A `wait` state's rule routes `timeout`, but the wait has no `timeout:`."),
    "wait-timeout-unhandled": ("warning", "A `wait` state has a `timeout:` but no rule takes the event `timeout`; "
                               "the run would fail with `transition.none` when the timer runs out."),
    "unreachable-state": ("warning", "No path leads from `initial` to this state."),
    "no-way-out": ("warning", "No `final` or `fail` state can be reached from this state."),
    "insecure-url": ("warning", "An LLM binding's `base_url` is plain `http://` to a host that is not local: no API "
                     "key or secret header is sent over it (the run refuses to start if one would be); use https."),
    # static analysis (`agentfsm validate` only; errors with `--strict`)
    "shadowed-rule": ("warning", "A rule can never be taken: an earlier rule on the same event has no guard, or the "
                      "earlier rules' guards can never all be false (such as `n < 3` and `n >= 3`)."),
    "trap-state": ("warning", "No `final` or `fail` state can be reached from this state once the rules that can "
                   "never be taken are discounted."),
    "unbounded-cycle": ("warning", "A cycle with no `max_visits` on any of its states, no `wait` in it, and no guard "
                        "in it reading a value the cycle changes: only `max_steps` ends it."),
    "wait-without-timeout": ("warning", "A `wait` state has no `timeout:`; if the event never comes the run waits "
                             "for ever."),
    "child-never-ends": ("warning", "A nested machine, a `parallel` branch or a team's agent runs a machine that "
                         "can reach no `final` state: the join can never complete, the team never ends."),
    "maybe-undefined": ("warning", "A template reads a context key that some path from the initial state to it "
                        "never assigns (the message names the path); guard it with `is defined` or `default()`."),
    # test files (`*.test.yaml`, `agentfsm test`)
    "test-duplicate-case": ("error", "Two cases of a test file have the same name."),
    "test-unknown-binding": ("error", "A case gives replies or stubs for a binding the machine does not have."),
    "test-live-binding": ("error", "A case leaves an LLM binding that calls a real provider without scripted replies."),
    "test-unknown-state": ("error", "A case's expectations name a state the machine does not have."),
    # templates and guards
    "template-syntax": ("error", "A template or guard is not valid Jinja2."),
    "undefined-variable": ("warning", "A template uses a name that no input, context key, `save`, `set` or `as` provides."),
}

ANALYSIS_CODES = frozenset({"shadowed-rule", "trap-state", "unbounded-cycle", "wait-without-timeout", "maybe-undefined",
                            "child-never-ends"})
"""Codes only `agentfsm validate` reports (its static analysis, `agentfsm.spec.analysis`), not every load."""
TEST_CODES = frozenset({"test-duplicate-case", "test-unknown-binding", "test-live-binding", "test-unknown-state"})
"""Codes only test files (`agentfsm test`) have (tests/test_machine_tests.py has their cases)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a machine file, printed as `file:line:col: severity code message`."""

    file: str
    line: int
    column: int
    code: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity} {self.code} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def problem(file: str, line: int, column: int, code: str, message: str) -> Problem:
    """Build a Problem whose severity comes from the code registry."""
    severity, _ = CODES[code]
    return Problem(file=file, line=line, column=column, code=code, message=message, severity=severity)


class MachineFileError(Exception):
    """A machine file has errors; `problems` lists every one of them (errors and warnings)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        first = str(errors[0]) if errors else "invalid machine"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class InputError(ValueError):
    """A run's inputs (or another value a person gave) do not fit; the message names the input."""
