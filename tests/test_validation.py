"""`agentfsm.validate_file`: every stable problem code, where it points, and what it says.

Each case is a small machine file written to tmp_path; the test checks that the
expected code is reported at the expected line and column with the severity the
registry (`agentfsm.spec.problems.CODES`) gives it. A registry code without a case
here fails `test_every_code_has_a_case`, so a new code cannot land untested.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import agentfsm
from agentfsm.spec.problems import ANALYSIS_CODES, CODES, TEST_CODES, Problem

HEAD = "agentfsm: 1\nname: t\n"
"""Lines 1-2 of most cases; so in a case's text, line 3 is the first line after HEAD."""


def machine(body: str) -> str:
    return HEAD + textwrap.dedent(body)


@dataclass(frozen=True)
class Case:
    id: str
    content: str | bytes | Callable[[Path], Path]
    """The file's text or bytes, or a function making the path to validate in a folder."""
    code: str
    line: int
    column: int


def _missing(folder: Path) -> Path:
    return folder / "nope.yaml"


def _self_including(folder: Path) -> Path:
    target = folder / "self.yaml"
    target.write_text(machine("""\
        initial: a
        states:
          a: {type: machine, machine: self.yaml, next: b}
          b: {type: final}
        """), encoding="utf-8")
    return target


def _directory(folder: Path) -> Path:
    target = folder / "adir.yaml"
    target.mkdir()
    return target


def _too_large(folder: Path) -> Path:
    target = folder / "big.yaml"
    target.write_text(HEAD + "# " + "x" * (5 * 1024 * 1024) + "\n", encoding="utf-8")
    return target


CASES = [
    # --- reading the file -----------------------------------------------------------
    Case("file-not-found", _missing, "file-not-found", 1, 1),
    Case("not-a-file", _directory, "not-a-file", 1, 1),
    Case("file-too-large", _too_large, "file-too-large", 1, 1),
    Case("file-encoding", b"agentfsm: 1\nname: caf\xe9\n", "file-encoding", 1, 1),
    # --- YAML -------------------------------------------------------------------------
    Case(
        "yaml-syntax-unclosed-flow",
        machine("""\
            initial: a
            states:
              a: {type: final
              b: x
            """),
        "yaml-syntax", 6, 4,
    ),
    Case("yaml-syntax-tab", machine("initial: a\nstates:\n\ta: {type: final}\n"), "yaml-syntax", 5, 1),
    Case(
        "yaml-duplicate-key",
        machine("""\
            initial: a
            states:
              a: {type: final}
              a: {type: final}
            """),
        "yaml-duplicate-key", 6, 3,
    ),
    Case(
        "yaml-alias-bomb",
        "".join(
            f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
            for name, prev in zip("abcdefghi", ['"lol"', "*a", "*b", "*c", "*d", "*e", "*f", "*g", "*h"], strict=True)
        ),
        "yaml-alias-bomb", 6, 8,
    ),
    Case(
        "yaml-alias-recursive",
        machine("initial: a\nstates:\n  a: &x {type: final, more: [*x]}\n"),
        "yaml-alias-bomb", 5, 30,
    ),
    Case(
        "yaml-tag",
        machine("initial: a\nstates:\n  a: !!python/object/apply:os.system [echo hi]\n"),
        "yaml-tag", 5, 6,
    ),
    Case("yaml-empty", "# only a comment\n", "yaml-empty", 1, 1),
    Case("yaml-empty-file", "", "yaml-empty", 1, 1),
    Case(
        "yaml-multiple-documents",
        machine("initial: a\nstates:\n  a: {type: final}\n---\nx: 1\n"),
        "yaml-multiple-documents", 6, 1,
    ),
    Case("not-a-mapping", "- agentfsm\n- 1\n", "not-a-mapping", 1, 1),
    Case("not-a-mapping-scalar", "just text\n", "not-a-mapping", 1, 1),
    # --- the language's shape -------------------------------------------------------
    Case("version-wrong", "agentfsm: 2\nname: t\ninitial: a\nstates:\n  a: {type: final}\n", "version", 1, 11),
    Case("version-missing", "name: t\ninitial: a\nstates:\n  a: {type: final}\n", "version", 1, 1),
    Case(
        "on-key",
        machine("""\
            initial: a
            states:
              a:
                type: set
                set: {x: 1}
                on:
                  - {to: b}
              b: {type: final}
            """),
        "on-key", 8, 5,
    ),
    Case(
        "unknown-field-in-state",
        machine("""\
            llms:
              m: {provider: scripted}
            initial: a
            states:
              a:
                type: llm
                llm: m
                prompt: hi
                promt: hi
                next: b
              b: {type: final}
            """),
        "unknown-field", 11, 5,
    ),
    Case("unknown-field-top", machine("initial: a\nstate:\n  a: {type: final}\n"), "unknown-field", 4, 1),
    Case("missing-field-initial", machine("states:\n  a: {type: final}\n"), "missing-field", 1, 1),
    Case(
        "missing-field-prompt",
        machine("""\
            llms:
              m: {provider: scripted}
            initial: a
            states:
              a: {type: llm, llm: m, next: b}
              b: {type: final}
            """),
        "missing-field", 7, 3,
    ),
    Case("missing-field-type", machine("initial: a\nstates:\n  a: {next: b}\n  b: {type: final}\n"),
         "missing-field", 5, 3),
    Case(
        "unknown-state-type",
        machine("initial: a\nstates:\n  a: {type: llmm, next: b}\n  b: {type: final}\n"),
        "unknown-state-type", 5, 13,
    ),
    Case(
        "unknown-provider",
        machine("llms:\n  m: {provider: openia}\ninitial: a\nstates:\n  a: {type: final}\n"),
        "unknown-provider", 4, 17,
    ),
    Case("invalid-value-type", machine("max_steps: many\ninitial: a\nstates:\n  a: {type: final}\n"),
         "invalid-value", 3, 12),
    Case("invalid-value-range", machine("max_steps: 0\ninitial: a\nstates:\n  a: {type: final}\n"),
         "invalid-value", 3, 12),
    Case(
        "invalid-value-duration",
        machine("""\
            tools:
              c: {builtin: calculator}
            initial: a
            states:
              a: {type: tool, tool: c, timeout: 5 minutes, next: b}
              b: {type: final}
            """),
        "invalid-value", 7, 37,
    ),
    Case(
        "invalid-value-enum",
        machine("inputs:\n  x: {type: str}\ninitial: a\nstates:\n  a: {type: final}\n"),
        "invalid-value", 4, 13,
    ),
    Case(
        "invalid-value-python-ref",
        machine("tools:\n  c: {python: notaref}\ninitial: a\nstates:\n  a: {type: final}\n"),
        "invalid-value", 4, 15,
    ),
    Case("invalid-value-states-list", machine("initial: a\nstates: [1, 2]\n"), "invalid-value", 4, 9),
    Case(
        "invalid-name-malformed",
        machine("inputs:\n  1bad: {type: string}\ninitial: a\nstates:\n  a: {type: final}\n"),
        "invalid-name", 4, 3,
    ),
    Case(
        "invalid-name-reserved-context",
        machine("context:\n  run: 1\ninitial: a\nstates:\n  a: {type: final}\n"),
        "invalid-name", 4, 3,
    ),
    Case(
        "invalid-name-reserved-set",
        machine("initial: a\nstates:\n  a: {type: set, set: {event: 1}, next: b}\n  b: {type: final}\n"),
        "invalid-name", 5, 24,
    ),
    Case(
        "invalid-name-empty-state",
        machine("initial: a\nstates:\n  '': {type: final}\n  a: {type: final}\n"),
        "invalid-name", 5, 3,
    ),
    # --- references and graph ---------------------------------------------------------
    Case("unknown-initial", machine("initial: c\nstates:\n  b: {type: final}\n"), "unknown-initial", 3, 10),
    Case("unknown-breakpoint", machine("breakpoints: [a, 'bb:x > 1']\ninitial: a\nstates:\n  a: {type: final}\n"),
         "unknown-breakpoint", 3, 18),
    Case(
        "unknown-target-next",
        machine("initial: a\nstates:\n  a: {type: set, set: {x: 1}, next: bb}\n  b: {type: final}\n"),
        "unknown-target", 5, 37,
    ),
    Case(
        "unknown-target-transition",
        machine("""\
            initial: a
            states:
              a:
                type: choice
                transitions:
                  - {when: "true", to: b}
                  - {to: nowhere}
              b: {type: final}
            """),
        "unknown-target", 9, 14,
    ),
    Case(
        "unknown-target-catch",
        machine("""\
            tools:
              c: {builtin: calculator}
            initial: a
            states:
              a:
                type: tool
                tool: c
                catch: [{errors: ["*"], to: recover}]
                next: b
              b: {type: final}
            """),
        "unknown-target", 10, 33,
    ),
    Case(
        "unknown-llm",
        machine("""\
            llms:
              brain: {provider: scripted}
            initial: a
            states:
              a: {type: llm, llm: brian, prompt: hi, next: b}
              b: {type: final}
            """),
        "unknown-llm", 7, 23,
    ),
    Case(
        "unknown-tool",
        machine("""\
            tools:
              calc: {builtin: calculator}
            initial: a
            states:
              a: {type: tool, tool: calk, next: b}
              b: {type: final}
            """),
        "unknown-tool", 7, 25,
    ),
    Case(
        "no-transition",
        machine("initial: a\nstates:\n  a: {type: set, set: {x: 1}}\n  b: {type: final}\n"),
        "no-transition", 5, 3,
    ),
    Case(
        "next-and-transitions",
        machine("""\
            initial: a
            states:
              a:
                type: set
                set: {x: 1}
                next: b
                transitions: [{to: b}]
              b: {type: final}
            """),
        "next-and-transitions", 8, 5,
    ),
    Case(
        "choice-without-default",
        machine("""\
            initial: a
            states:
              a:
                type: choice
                transitions:
                  - {when: "true", to: b}
              b: {type: final}
            """),
        "choice-without-default", 8, 9,
    ),
    Case(
        "catch-all-not-last",
        machine("""\
            tools:
              c: {builtin: calculator}
            initial: a
            states:
              a:
                type: tool
                tool: c
                catch:
                  - {errors: ["*"], to: b}
                  - {errors: [timeout], to: b}
                next: b
              b: {type: final}
            """),
        "catch-all-not-last", 11, 18,
    ),
    Case(
        "catch-all-not-last-retry",
        machine("""\
            tools:
              c: {builtin: calculator}
            initial: a
            states:
              a:
                type: tool
                tool: c
                retry:
                  - {errors: "*"}
                  - {errors: timeout}
                next: b
              b: {type: final}
            """),
        "catch-all-not-last", 11, 18,
    ),
    Case(
        "insecure-url",
        machine("llms:\n  m: {provider: openai, model: x, base_url: 'http://llm.example.com/v1'}\n"
                "initial: a\nstates:\n  a: {type: final}\n"),
        "insecure-url", 4, 45,
    ),
    Case(
        "unreachable-state",
        machine("initial: a\nstates:\n  a: {type: final}\n  b: {type: final}\n"),
        "unreachable-state", 6, 3,
    ),
    Case(
        "no-way-out",
        machine("""\
            initial: a
            states:
              a: {type: set, set: {x: 1}, next: c}
              c: {type: set, set: {x: 2}, next: a}
            """),
        "no-way-out", 6, 3,
    ),
    # --- wait states ---------------------------------------------------------------------
    Case(
        "wait-unknown-event",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                event: [approved, rejected]
                transitions:
                  - {event: aproved, to: b}
                  - {to: b}
              b: {type: final}
            """),
        "wait-unknown-event", 9, 17,
    ),
    Case(
        "wait-unknown-event-in-a-list",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                event: approved
                transitions:
                  - {event: [approved, cancelled], to: b}
              b: {type: final}
            """),
        "wait-unknown-event", 9, 28,
    ),
    Case(
        "nested-machine",
        machine("""\
            initial: a
            states:
              a: {type: machine, inputs: {x: 1}, next: b}
              b: {type: final}
            """),
        "nested-machine", 5, 6,
    ),
    Case("nested-cycle", _self_including, "nested-cycle", 5, 31),
    Case(
        "team-config",
        machine("""\
            initial: a
            states:
              a:
                type: team
                strategy: hierarchical
                agents: {w: {initial: s, states: {s: {type: final}}}}
                next: b
              b: {type: final}
            """),
        "team-config", 7, 5,
    ),
    Case(
        "unknown-agent",
        machine("""\
            initial: a
            states:
              a:
                type: team
                strategy: collaborative
                agents:
                  w: {initial: s, states: {s: {type: send, to: nobody, next: e}, e: {type: final}}}
                next: b
              b: {type: final}
            """),
        "unknown-agent", 9, 52,
    ),
    Case(
        "join-too-many",
        machine("""\
            initial: a
            states:
              a:
                type: parallel
                join: 3
                branches:
                  x: {initial: s, states: {s: {type: final}}}
                  y: {initial: s, states: {s: {type: final}}}
                next: b
              b: {type: final}
            """),
        "join-too-many", 7, 11,
    ),
    Case(
        "wait-duplicate-event",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                event: [approved, rejected, approved]
                next: b
              b: {type: final}
            """),
        "wait-duplicate-event", 7, 33,
    ),
    Case(
        "wait-two-timers",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                timeout: 5s
                until: "2026-01-01T00:00:00Z"
                next: b
              b: {type: final}
            """),
        "wait-two-timers", 8, 5,
    ),
    Case(
        "wait-without-trigger",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                next: b
              b: {type: final}
            """),
        "wait-without-trigger", 5, 3,
    ),
    Case(
        "wait-reserved-event",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                event: [approved, timeout]
                next: b
              b: {type: final}
            """),
        "invalid-name", 7, 23,
    ),
    Case(
        "wait-timeout-without-timer",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                event: approved
                transitions:
                  - {event: approved, to: b}
                  - {event: timeout, to: b}
              b: {type: final}
            """),
        "wait-timeout-without-timer", 10, 17,
    ),
    Case(
        "wait-timeout-unhandled",
        machine("""\
            initial: a
            states:
              a:
                type: wait
                event: approved
                timeout: 2d
                transitions:
                  - {event: approved, to: b}
              b: {type: final}
            """),
        "wait-timeout-unhandled", 8, 5,
    ),
    # --- templates and guards ---------------------------------------------------------
    Case(
        "template-syntax-value",
        machine('initial: a\nstates:\n  a: {type: set, set: {x: "{{ 1 + }}"}, next: b}\n  b: {type: final}\n'),
        "template-syntax", 5, 27,
    ),
    Case(
        "template-syntax-guard",
        machine("""\
            context: {x: 1}
            initial: a
            states:
              a:
                type: choice
                transitions:
                  - {when: "x <", to: b}
                  - {to: b}
              b: {type: final}
            """),
        "template-syntax", 9, 16,
    ),
    Case(
        "template-syntax-block-scalar",
        machine("""\
            initial: a
            states:
              a:
                type: fail
                error: |
                  line one
                  {{ oops( }}
            """),
        "template-syntax", 9, 12,  # the line of the bad template inside the block, not the `|`
    ),
    Case(
        "undefined-variable",
        machine("""\
            inputs:
              task: {type: string}
            initial: a
            states:
              a: {type: final, output: "{{ tsk }}"}
            """),
        "undefined-variable", 7, 28,
    ),
]


def _write(case: Case, folder: Path) -> Path:
    if callable(case.content):
        return case.content(folder)
    target = folder / f"{case.id}.yaml"
    if isinstance(case.content, bytes):
        target.write_bytes(case.content)
    else:
        target.write_text(case.content, encoding="utf-8")
    return target


def _problems(text: str, tmp_path: Path, name: str = "m.yaml") -> list[Problem]:
    target = tmp_path / name
    target.write_text(text, encoding="utf-8")
    return agentfsm.validate_file(target).problems


def _codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_code_is_reported_at_its_place(case: Case, tmp_path: Path) -> None:
    path = _write(case, tmp_path)
    report = agentfsm.validate_file(path)
    found = [(p.code, p.line, p.column) for p in report.problems]
    assert (case.code, case.line, case.column) in found, "\n".join(map(str, report.problems))
    for found_problem in report.problems:
        assert found_problem.file == str(path)
        assert found_problem.severity == CODES[found_problem.code][0]
        assert found_problem.message and "\n" not in found_problem.message
        assert found_problem.line >= 1 and found_problem.column >= 1
    severity = CODES[case.code][0]
    assert report.ok == (severity == "warning" and not report.errors)


def test_every_code_has_a_case() -> None:
    covered = {case.code for case in CASES}
    # the static analysis's codes are reported by `validate` only: tests/test_analysis.py has their cases
    assert set(CODES) - covered - ANALYSIS_CODES - TEST_CODES == set(), "codes without a validation test case"
    assert covered - set(CODES) == set(), "cases naming codes that are not in the registry"


def test_display_name_and_problem_fields(tmp_path: Path) -> None:
    target = tmp_path / "m.yaml"
    target.write_text(machine("initial: c\nstates:\n  b: {type: final}\n"), encoding="utf-8")
    report = agentfsm.validate_file(target, display_name="shown.yaml")
    [found] = report.errors
    assert found.as_dict() == {
        "file": "shown.yaml",
        "line": 3,
        "column": 10,
        "code": "unknown-initial",
        "severity": "error",
        "message": "initial: no state named 'c'",
    }
    assert str(found) == "shown.yaml:3:10: error unknown-initial initial: no state named 'c'"
    assert not report.ok


def test_a_valid_file_has_no_problems(tmp_path: Path) -> None:
    report = agentfsm.validate_file(Path("machines/hello.yaml"))
    assert report.problems == []
    assert report.ok and report.spec is not None and report.spec.name == "hello"


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            llms:
              brain: {provider: scripted}
            tools:
              calc: {builtin: calculator}
            initial: a
            states:
              a: {type: llm, llm: brian, prompt: hi, next: b}
              b: {type: tool, tool: calk, next: cc}
              c: {type: final}
            """),
        tmp_path,
    )
    assert {"unknown-llm", "unknown-tool", "unknown-target"} <= set(_codes(problems))
    assert [(p.line, p.column) for p in problems] == sorted((p.line, p.column) for p in problems)


# --- messages ---------------------------------------------------------------------------


def test_unknown_state_type_suggests_the_close_kind(tmp_path: Path) -> None:
    problems = _problems(machine("initial: a\nstates:\n  a: {type: llmm, next: b}\n  b: {type: final}\n"), tmp_path)
    [found] = [p for p in problems if p.code == "unknown-state-type"]
    assert "'llmm'" in found.message
    assert "did you mean 'llm'?" in found.message
    for kind in ("set", "choice", "llm", "tool", "python", "final", "fail"):
        assert kind in found.message  # the kinds are listed


def test_unknown_target_suggests_the_close_state(tmp_path: Path) -> None:
    problems = _problems(
        machine("initial: think\nstates:\n  think: {type: set, set: {x: 1}, next: finsh}\n  finish: {type: final}\n"),
        tmp_path,
    )
    [found] = [p for p in problems if p.code == "unknown-target"]
    assert found.message == "states.think.next: no state named 'finsh' (did you mean 'finish'?)"


def test_unknown_target_in_a_list_names_the_rule(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            initial: a
            states:
              a:
                type: choice
                transitions:
                  - {when: "true", to: b}
                  - {to: nowhere}
              b: {type: final}
            """),
        tmp_path,
    )
    [found] = [p for p in problems if p.code == "unknown-target"]
    assert found.message.startswith("states.a.transitions[1].to: no state named 'nowhere'")
    assert "did you mean" not in found.message  # nothing is close


def test_unknown_field_suggests_the_close_field(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            llms:
              m: {provider: scripted}
            initial: a
            states:
              a: {type: llm, llm: m, prompt: hi, promt: hi, next: b}
              b: {type: final}
            """),
        tmp_path,
    )
    [found] = [p for p in problems if p.code == "unknown-field"]
    assert "'promt'" in found.message
    assert "did you mean 'prompt'?" in found.message
    assert "state 'a'" in found.message


def test_on_key_points_to_transitions(tmp_path: Path) -> None:
    problems = _problems(
        machine("initial: a\nstates:\n  a:\n    type: set\n    set: {x: 1}\n    on: [{to: b}]\n  b: {type: final}\n"),
        tmp_path,
    )
    [found] = [p for p in problems if p.code == "on-key"]
    assert "transitions:" in found.message
    assert "true" in found.message  # why `on` is refused: YAML 1.1 reads it as a boolean
    assert "unknown-field" not in _codes(problems)  # one problem, the specific one


def test_version_messages(tmp_path: Path) -> None:
    [wrong] = _problems("agentfsm: 2\nname: t\ninitial: a\nstates:\n  a: {type: final}\n", tmp_path, "a.yaml")
    assert wrong.code == "version" and "2" in wrong.message and "agentfsm: 1" in wrong.message
    [missing] = _problems("name: t\ninitial: a\nstates:\n  a: {type: final}\n", tmp_path, "b.yaml")
    assert missing.code == "version" and "agentfsm: 1" in missing.message


def test_duplicate_key_names_the_first_definition(tmp_path: Path) -> None:
    problems = _problems(machine("initial: a\nstates:\n  a: {type: final}\n  a: {type: final}\n"), tmp_path)
    [found] = [p for p in problems if p.code == "yaml-duplicate-key"]
    assert found.message == "duplicate key 'a' (first defined at line 5)"


def test_unknown_initial_suggests_the_close_state(tmp_path: Path) -> None:
    [found] = _problems(machine("initial: strat\nstates:\n  start: {type: final}\n"), tmp_path)
    assert found.code == "unknown-initial"
    assert "did you mean 'start'?" in found.message


def test_undefined_variable_is_a_warning_with_a_hint(tmp_path: Path) -> None:
    problems = _problems(
        machine("inputs:\n  task: {type: string}\ninitial: a\nstates:\n  a: {type: final, output: '{{ tsk }}'}\n"),
        tmp_path,
    )
    [found] = problems
    assert found.severity == "warning"
    assert "'tsk'" in found.message and "did you mean 'task'?" in found.message


# --- validation is static ---------------------------------------------------------------


def test_validate_does_not_import_user_modules(tmp_path: Path) -> None:
    marker = tmp_path / "imported.marker"
    module = "agentfsm_validate_probe_mod"
    (tmp_path / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def tool(**kwargs):\n    return 1\n"
        "class Step:\n    pass\n",
        encoding="utf-8",
    )
    target = tmp_path / "m.yaml"
    target.write_text(
        machine(f"""\
            tools:
              probe: {{python: "{module}:tool"}}
            initial: a
            states:
              a: {{type: tool, tool: probe, next: b}}
              b: {{type: python, call: "{module}:Step", next: c}}
              c: {{type: final}}
            """),
        encoding="utf-8",
    )
    report = agentfsm.validate_file(target)
    assert report.errors == []
    assert not marker.exists(), "validate imported a module the machine names"
    assert module not in sys.modules


def test_names_provided_by_the_machine_are_not_undefined(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            inputs:
              task: {type: string}
            context:
              items: [1, 2]
            llms:
              brain: {provider: scripted, replies: ["x"]}
            tools:
              calc: {builtin: calculator}
            initial: start
            states:
              start:
                type: set
                on_enter:
                  - set: {entered: "{{ run.id }} {{ run.step }} {{ run.state }}"}
                set:
                  from_set: "{{ task }} {{ items | length }} {{ entered }}"
                next: ask
              ask:
                type: llm
                llm: brain
                prompt: |
                  {% for item in items %}{{ loop.index }}: {{ item }} {{ from_set }}{% endfor %}
                  {% set local = 3 %}{{ local }} {{ range(2) | list }}
                save: answer
                emit: "{{ 'done' if result else 'empty' }}"
                transitions:
                  - {event: [done, empty], when: "event.name and answer", to: compute, set: {routed: "{{ event }}"}}
                  - {to: compute}
              compute:
                type: tool
                tool: calc
                args: {expression: "{{ answer }} {{ routed }}"}
                save: total
                catch: [{errors: ["*"], to: recover, as: failure}]
                on_exit:
                  - set: {left: "{{ total }}"}
                next: done
              recover:
                type: fail
                error: "{{ failure.message }} {{ left }}"
              done:
                type: final
                output: {total: "{{ total }}", left: "{{ left }}", answer: "{{ answer }}"}
            """),
        tmp_path,
    )
    assert problems == []


def test_guard_names_are_checked_too(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            context: {attempts: 0}
            initial: a
            states:
              a:
                type: choice
                transitions:
                  - {when: "attemps < 3", to: b}
                  - {to: b}
              b: {type: final}
            """),
        tmp_path,
    )
    [found] = problems
    assert (found.code, found.line, found.column) == ("undefined-variable", 9, 16)
    assert "did you mean 'attempts'?" in found.message


def test_validate_file_never_raises_on_odd_files(tmp_path: Path) -> None:
    odd = {
        "deep.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "nul.yaml": "agentfsm: 1\nname: \x00\n",
        "bom.yaml": "\ufeff" + machine("initial: a\nstates:\n  a: {type: final}\n"),
        "keys.yaml": machine("initial: a\nstates:\n  ? [1]\n  : {type: final}\n  a: {type: final}\n"),
        "nulls.yaml": "agentfsm:\nname:\ninitial:\nstates:\n",
    }
    for name, text in odd.items():
        report = agentfsm.validate_file(_write(Case(name.removesuffix(".yaml"), text, "", 1, 1), tmp_path))
        if name == "bom.yaml":
            assert report.problems == []
        else:
            assert report.errors, name


def test_a_union_value_reports_the_real_problem_only(tmp_path: Path) -> None:
    """A scripted reply is a string or a rule; a bad rule is not also 'expected a string'."""
    problems = _problems(
        machine("""\
            llms:
              m: {provider: scripted, replies: [{reply: x, match: "("}]}
            initial: a
            states:
              a: {type: final}
            """),
        tmp_path,
    )
    [found] = problems
    assert found.code == "invalid-value"
    assert found.message.startswith("llms.m.replies[0].match: invalid regular expression")
    assert (found.line, found.column) == (4, 55)


@pytest.mark.parametrize(
    ("body", "code", "line", "column"),
    [
        ("initial: !!python/object/apply:os.system [echo owned]\nstates:\n  a: {type: final}\n", "yaml-tag", 3, 10),
        ("max_steps: !!int abc\ninitial: a\nstates:\n  a: {type: final}\n", "invalid-value", 3, 12),
        ("initial: a\nstates:\n  a: !!set {type: final}\n", "yaml-tag", 5, 6),
    ],
)
def test_a_node_yaml_refused_is_one_problem(tmp_path: Path, body: str, code: str, line: int, column: int) -> None:
    """The refused node reaches the models as null; that must not add 'expected ..., got nothing (null)'."""
    problems = _problems(HEAD + body, tmp_path)
    assert [(p.code, p.line, p.column) for p in problems] == [(code, line, column)], problems


def test_schema_errors_do_not_hide_reference_errors(tmp_path: Path) -> None:
    """A user fixing a file sees every problem in one pass, not one layer at a time."""
    problems = _problems(
        machine("""\
            max_steps: 0
            initial: a
            states:
              a: {type: set, set: {x: 1}, next: bb}
              b: {type: llmm}
            """),
        tmp_path,
    )
    assert [(p.code, p.line, p.column) for p in problems] == [
        ("invalid-value", 3, 12),
        ("unknown-target", 6, 37),
        ("unknown-state-type", 7, 13),
    ]


# --- one pass: a shape error hides nothing that does not depend on it -------------------------


def _validate_as_a_user(text: str, tmp_path: Path) -> list[str]:
    """`agentfsm validate m.yaml` in a folder holding the file: the problem lines it prints."""
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "agentfsm", "validate", "m.yaml"],
        cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}, stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


def _shown(problems: list[Problem]) -> list[str]:
    return [f"{p.line}:{p.column} {p.code}" for p in problems]


def test_a_state_missing_its_llm_hides_no_other_problem(tmp_path: Path) -> None:
    printed = _validate_as_a_user(
        machine("""\
            inputs:
              task: {type: string}
            llms:
              brain: {provider: scripted}
            initial: plan
            states:
              plan: {type: llm, prompt: "{{ task }}", save: steps, next: act}
              act: {type: llm, llm: brian, prompt: "{{ steps }} {{ tsk }}", next: done}
              orphan: {type: final}
              done: {type: final, output: "{{ steps }}"}
            """),
        tmp_path,
    )
    assert printed == [
        "m.yaml:9:3: error missing-field state 'plan' (llm) is missing the required field 'llm'",
        "m.yaml:10:25: error unknown-llm states.act.llm: no LLM binding named 'brian' under llms: "
        "(did you mean 'brain'?)",
        "m.yaml:10:40: warning undefined-variable states.act.prompt: 'tsk' is not an input, a context key, "
        "or saved by any state (did you mean 'task'?)",
        "m.yaml:11:3: warning unreachable-state states.orphan: no path leads here from the initial state 'plan'",
    ]


def test_an_unknown_state_type_hides_no_other_problem(tmp_path: Path) -> None:
    """The broken state's own readable parts are checked too: its target, its template, the name it saves."""
    printed = _validate_as_a_user(
        machine("""\
            inputs:
              task: {type: string}
            initial: a
            states:
              a: {type: llmm, prompt: "{{ task }} {{ 1 + }}", save: plan, next: bb}
              b: {type: set, set: {x: "{{ plan }} {{ oops( }}"}, next: c}
              c: {type: set, set: {y: "{{ plna }}"}, next: dne}
              done: {type: final, output: "{{ plan }} {{ x }} {{ y }}"}
            """),
        tmp_path,
    )
    assert printed == [
        "m.yaml:7:13: error unknown-state-type states.a.type: unknown state type 'llmm' (did you mean 'llm'?) "
        "(one of: set, choice, llm, tool, python, wait, final, fail, machine, parallel, team, send, receive, memory, map)",
        "m.yaml:7:27: error template-syntax states.a.prompt: template syntax error: unexpected 'end of print "
        "statement'",
        "m.yaml:7:69: error unknown-target states.a.next: no state named 'bb' (did you mean 'b'?)",
        "m.yaml:8:27: error template-syntax states.b.set.x: template syntax error: unexpected '}', expected ')'",
        "m.yaml:9:27: warning undefined-variable states.c.set.y: 'plna' is not an input, a context key, or saved "
        "by any state (did you mean 'plan'?)",
        "m.yaml:9:48: error unknown-target states.c.next: no state named 'dne' (did you mean 'done'?)",
    ]


def test_graph_checks_run_beside_shape_errors(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            initial: a
            states:
              a: {type: set, set: {x: 1}, timeout: 5 minutes, next: b}
              b: {type: set, set: {x: 2}, next: a}
              lost: {type: final}
            """),
        tmp_path,
    )
    assert _shown(problems) == ["5:3 no-way-out", "5:40 invalid-value", "6:3 no-way-out", "7:3 unreachable-state"]


def test_a_broken_state_still_counts_with_what_can_be_read(tmp_path: Path) -> None:
    """Its edge keeps its target reachable, its save provides a name, and a target naming it is no error."""
    problems = _problems(
        machine("""\
            initial: a
            states:
              a: {type: llm, prompt: hi, save: answer, next: b}
              b: {type: set, set: {x: "{{ answer }}"}, next: c}
              c: {type: tool, tool: 5, next: d}
              d: {type: final, output: "{{ x }}"}
            """),
        tmp_path,
    )
    assert _shown(problems) == ["5:3 missing-field", "7:25 invalid-value"]


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ("{type: set, set: {x: 1}, next: 5}", "5:37 invalid-value"),  # a target that cannot be read at all
        ("{type: set, set: {x: 1}, transitions: {to: b}}", "5:44 invalid-value"),  # not a list, names b
        ("{type: set, set: {x: 1}, on: [{to: b}]}", "5:31 on-key"),  # the rules under a key YAML 1.1 mangles
        ("{type: python, call: notaref}", "5:27 invalid-value"),  # a Python state may go anywhere
        ("{type: choice}", "5:3 missing-field"),  # a choice without its rules
        ("[type, final]", "5:6 invalid-value"),  # not a mapping: anything at all
    ],
)
def test_a_way_out_that_cannot_be_read_gives_no_false_graph_warning(tmp_path: Path, state: str,
                                                                    problem: str) -> None:
    problems = _problems(
        machine(f"""\
            initial: a
            states:
              a: {state}
              b: {{type: set, set: {{y: 1}}, next: c}}
              c: {{type: final}}
            """),
        tmp_path,
    )
    assert _shown(problems) == [problem], problems


@pytest.mark.parametrize("kind", ["finall", "failed"])
def test_a_state_that_may_be_an_end_gives_no_false_no_way_out(tmp_path: Path, kind: str) -> None:
    problems = _problems(
        machine(f"initial: a\nstates:\n  a: {{type: set, set: {{x: 1}}, next: b}}\n  b: {{type: {kind}}}\n"),
        tmp_path,
    )
    assert _codes(problems) == ["unknown-state-type"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        # `sav:` may be the `save:` that provides `answer`
        ("initial: a\nstates:\n  a: {type: set, set: {x: 1}, sav: answer, next: b}\n"
         "  b: {type: final, output: '{{ answer }}'}\n", "5:31 unknown-field"),
        # inputs written as a list: whatever it declares cannot be known
        ("inputs: [task]\ninitial: a\nstates:\n  a: {type: final, output: '{{ tsk }}'}\n", "3:9 invalid-value"),
        # a set state without its `set:`
        ("initial: a\nstates:\n  a: {type: set, next: b}\n  b: {type: final, output: '{{ x }}'}\n",
         "5:3 missing-field"),
        # a whole state that is not a mapping
        ("initial: a\nstates:\n  a: [set, x]\n  b: {type: final, output: '{{ x }}'}\n", "5:6 invalid-value"),
        # a save that is not a name
        ("initial: a\nstates:\n  a: {type: wait, event: go, save: 5, next: b}\n"
         "  b: {type: final, output: '{{ x }}'}\n", "5:36 invalid-value"),
        # a misspelled section still names `task`
        ("input: {task: {type: string}}\ninitial: a\nstates:\n  a: {type: final, output: '{{ task }}'}\n",
         "3:1 unknown-field"),
    ],
)
def test_a_name_a_broken_part_may_provide_is_not_undefined(tmp_path: Path, body: str, problem: str) -> None:
    assert _shown(_problems(HEAD + body, tmp_path)) == [problem]


def test_a_broken_binding_keeps_its_name(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            llms:
              brain: {provider: openia, model: x}
            tools:
              calc: {builtin: calculater}
              ls: {command: "ls {{ args.path }}"}
            initial: a
            states:
              a: {type: llm, llm: brain, prompt: hi, tools: [calc, ls, grep], next: b}
              b: {type: tool, tool: calc, args: {expression: "{{ 1 + }}"}, next: c}
              c: {type: final}
            """),
        tmp_path,
    )
    assert _shown(problems) == ["4:21 unknown-provider", "6:19 invalid-value", "7:17 invalid-value",
                                "10:60 unknown-tool", "11:50 template-syntax"]


def test_an_unreadable_bindings_section_is_not_unknown_bindings(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            llms: [brain]
            initial: a
            states:
              a: {type: llm, llm: brain, prompt: "{{ brian }}", next: b}
              b: {type: final}
            """),
        tmp_path,
    )
    assert _shown(problems) == ["3:7 invalid-value", "6:38 undefined-variable"]


def test_a_consequence_is_not_reported_again(tmp_path: Path) -> None:
    """A state whose name is refused, or whose way out is wrong, says so once: no graph warning follows from it."""
    problems = _problems(
        machine("""\
            initial: a
            states:
              '': {type: final}
              a: {type: set, set: {x: 1}, next: bb}
              b: {type: set, set: {x: 1}}
              c: {type: final}
            """),
        tmp_path,
    )
    assert _shown(problems) == ["5:3 invalid-name", "6:37 unknown-target", "7:3 no-transition"]


def test_validate_reads_a_broken_file_without_importing_it(tmp_path: Path) -> None:
    marker = tmp_path / "imported.marker"
    module = "agentfsm_validate_probe_broken"
    (tmp_path / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\nclass Step:\n    pass\n",
        encoding="utf-8",
    )
    problems = _problems(
        machine(f"""\
            tools:
              probe: {{python: "{module}:tool", bogus: 1}}
            initial: a
            states:
              a: {{type: pyhton, call: "{module}:Step", next: b}}
              b: {{type: final, output: "{{{{ ''.__class__ }}}}"}}
            """),
        tmp_path,
    )
    assert _codes(problems) == ["unknown-field", "unknown-state-type"]
    assert not marker.exists()
    assert module not in sys.modules


def test_no_undefined_variable_when_a_broken_part_gives_names_that_cannot_be_read(tmp_path: Path) -> None:
    problems = _problems(
        machine("""\
            initial: a
            states:
              a: {type: set, set: {x: 1}, on_enter: [{set: 5}], next: b}
              b: {type: final, output: "{{ plan }} {{ x }}"}
            """),
        tmp_path,
    )
    assert _codes(problems) == ["invalid-value"]


def test_a_misspelled_way_out_hides_only_what_follows_from_it(tmp_path: Path) -> None:
    """`b` goes anywhere once its target is misspelled, but nothing leads to `b`: that stays a warning."""
    problems = _problems(
        machine("""\
            initial: a
            states:
              a: {type: final}
              b: {type: set, set: {x: 1}, next: zz}
              c: {type: set, set: {x: 2}, next: b}
            """),
        tmp_path,
    )
    assert _shown(problems) == ["6:3 unreachable-state", "6:37 unknown-target", "7:3 unreachable-state"]


def test_a_tool_of_no_known_kind_names_every_kind(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(machine("tools:\n  t: {nope: 1}\ninitial: a\nstates:\n  a: {type: final}\n"), encoding="utf-8")
    [found] = agentfsm.validate_file(path).problems
    assert (found.line, found.code) == (4, "invalid-value")
    assert found.message == "tools.t: a tool needs one of the keys builtin:, python:, command:, http:, unbound:"
