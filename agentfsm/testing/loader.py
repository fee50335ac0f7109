"""Read and check a test file: its shape (the models), its machine (validated like any machine file), and that
every binding, state and case it names exists. Every problem has its file, line and column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from agentfsm.spec.expressions import compile_guard
from agentfsm.spec.diagnostics import did_you_mean, dotted_path, validation_problems
from agentfsm.spec.loader import LoadedSpec, validate_file
from agentfsm.spec.models import ScriptedLLM
from agentfsm.spec.problems import MachineFileError, Problem, problem
from agentfsm.spec.yamlsource import NodePath, SourceMap, parse_yaml, read_text
from agentfsm.testing.models import TestCase, TestFile


@dataclass(frozen=True, slots=True)
class LoadedTests:
    """A valid test file and its valid machine."""

    path: Path
    display_name: str
    spec: TestFile
    machine: LoadedSpec
    source_map: SourceMap

    def case_line(self, index: int) -> int:
        return self.source_map.mark(("cases", index), key=False).line


def load_tests(path: str | Path, display_name: str | None = None) -> LoadedTests:
    """A valid test file, or MachineFileError listing every problem (the machine's too)."""
    path = Path(path)
    name = display_name or str(path)
    text, problems = read_text(path, name)
    if text is None:
        raise MachineFileError(list(problems))
    document, problems = parse_yaml(text, name)
    if document is None or any(p.severity == "error" for p in problems):
        raise MachineFileError(list(problems))
    try:
        spec = TestFile.model_validate(document.data)
    except ValidationError as exc:
        raise MachineFileError(validation_problems(exc, document.data, document.source_map, name)) from None
    machine_path = (path.parent / spec.machine)
    report = validate_file(machine_path, display_name=str(Path(name).parent / spec.machine))
    if not report.ok or report.spec is None or report.source_map is None:
        if any(p.code in ("file-not-found", "not-a-file") for p in report.problems):
            mark = document.source_map.mark(("machine",))
            raise MachineFileError([problem(name, mark.line, mark.column, "file-not-found",
                                            f"machine: no machine file {spec.machine!r} next to the test file")])
        raise MachineFileError(report.problems)
    machine = LoadedSpec(report.spec, report.path, report.text or "", report.source_map, tuple(report.warnings))
    found = _Checks(spec, machine, document.source_map, name).run()
    if found:
        raise MachineFileError(found)
    return LoadedTests(path, name, spec, machine, document.source_map)


class _Checks:
    """What the models cannot see: names that must exist in the machine, and case names that must be unique."""

    def __init__(self, spec: TestFile, machine: LoadedSpec, source_map: SourceMap, filename: str) -> None:
        self.spec = spec
        self.machine = machine.spec
        self.source_map = source_map
        self.filename = filename
        self.problems: list[Problem] = []

    def report(self, path: NodePath, code: str, message: str, *, key: bool = False) -> None:
        mark = self.source_map.mark(path, key=key)
        self.problems.append(problem(self.filename, mark.line, mark.column, code, message))

    def run(self) -> list[Problem]:
        seen: set[str] = set()
        for index, case in enumerate(self.spec.cases):
            where = ("cases", index)
            if case.name in seen:
                self.report((*where, "name"), "test-duplicate-case", f"cases[{index}].name: a second case named "
                                                                     f"{case.name!r}")
            seen.add(case.name)
            self.bindings(where, case)
            self.states(where, case)
        return self.problems

    def bindings(self, where: NodePath, case: TestCase) -> None:
        for section, declared, noun in (("llms", self.machine.llms, "LLM"), ("tools", self.machine.tools, "tool")):
            for binding in getattr(case, section):
                if binding not in declared:
                    path = (*where, section, binding)
                    self.report(path, "test-unknown-binding",
                                f"{dotted_path(path)}: the machine has no {noun} binding named '{binding}'"
                                f"{did_you_mean(binding, declared)}", key=True)
        for binding, config in self.machine.llms.items():
            if binding not in case.llms and not isinstance(config, ScriptedLLM):
                self.report((*where, "name"), "test-live-binding",
                            f"{dotted_path(where)}: the LLM binding '{binding}' calls a real provider "
                            f"({config.provider}); give its replies under llms: {binding}: [...]")

    def states(self, where: NodePath, case: TestCase) -> None:
        expect = case.expect
        named: list[tuple[NodePath, Any]] = []
        for field in ("path", "path_contains"):
            for position, state in enumerate(getattr(expect, field) or ()):
                named.append(((*where, "expect", field, position), state))
        for state in expect.visits or {}:
            named.append(((*where, "expect", "visits", state), state))
        if expect.output_when is not None:
            try:
                compile_guard(expect.output_when)
            except TemplateSyntaxError as exc:
                path = (*where, "expect", "output_when")
                self.report(path, "template-syntax", f"{dotted_path(path)}: guard syntax error: {exc.message}")
        for path, state in named:
            if state not in self.machine.states:
                self.report(path, "test-unknown-state", f"{dotted_path(path)}: the machine has no state named "
                                                        f"'{state}'{did_you_mean(state, self.machine.states)}")
