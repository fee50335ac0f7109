"""Read, parse and check a machine file: every problem found, each with its location."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from agentfsm.spec.checks import check_machine, check_refused
from agentfsm.spec.diagnostics import validation_problems
from agentfsm.spec.models import MachineSpec
from agentfsm.spec.nesting import check_nested
from agentfsm.spec.problems import MachineFileError, Problem
from agentfsm.spec.yamlsource import SourceMap, parse_yaml, read_text


@dataclass(slots=True)
class ValidationReport:
    """The outcome of checking one file: the machine when it is valid, and every problem found."""

    path: Path
    display_name: str
    spec: MachineSpec | None
    source_map: SourceMap | None
    text: str | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A valid machine, with what a run needs to record it: its source text and digest, and its folder."""

    spec: MachineSpec
    path: Path
    text: str
    source_map: SourceMap
    warnings: tuple[Problem, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent


def validate_file(path: str | Path, display_name: str | None = None) -> ValidationReport:
    """Check one machine file without importing or calling anything it names."""
    path = Path(path)
    name = display_name or str(path)
    text, problems = read_text(path, name)
    if text is None:
        return ValidationReport(path, name, None, None, text, list(problems))
    return validate_text(text, path, name)


def validate_text(text: str, path: str | Path, display_name: str | None = None) -> ValidationReport:
    """Check a machine's source text as if it were the file at `path` (used for a stored run's machine)."""
    path = Path(path)
    name = display_name or str(path)
    report = ValidationReport(path, name, None, None, text, [])
    document, problems = parse_yaml(text, name)
    report.problems.extend(problems)
    if document is None:
        return report
    report.source_map = document.source_map
    try:
        spec = MachineSpec.model_validate(document.data)
    except ValidationError as exc:
        # A node YAML already refused (a tag, a bad !!int) reached the models as null; one problem is enough.
        refused = {(p.line, p.column) for p in problems if p.severity == "error"}
        report.problems.extend(
            p for p in validation_problems(exc, document.data, document.source_map, name)
            if (p.line, p.column) not in refused
        )
        # The parts the models do accept still have their own problems: report them in the same pass.
        report.problems.extend(check_refused(document.data, document.source_map, name))
    else:
        report.problems.extend(check_machine(spec, document.source_map, name))
        # a file several states name is reported once
        report.problems.extend(dict.fromkeys(check_nested(spec, document.data, document.source_map, name, path)))
        report.spec = spec
    report.problems.sort(key=lambda p: (p.file != name, p.file, p.line, p.column))  # a nested file's come after
    return report


def load_spec(path: str | Path) -> LoadedSpec:
    """A valid machine, or MachineFileError listing every problem."""
    report = validate_file(path)
    if not report.ok or report.spec is None or report.source_map is None:
        raise MachineFileError(report.problems)
    return LoadedSpec(report.spec, report.path, report.text or "", report.source_map, tuple(report.warnings))


def load_spec_text(text: str, path: str | Path, display_name: str | None = None) -> LoadedSpec:
    """A valid machine from source text standing for the file at `path`, or MachineFileError."""
    report = validate_text(text, path, display_name)
    if not report.ok or report.spec is None or report.source_map is None:
        raise MachineFileError(report.problems)
    return LoadedSpec(report.spec, report.path, text, report.source_map, tuple(report.warnings))
