"""The machine language as a front end uses it: check files, load a definition, the JSON Schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentfsm.spec.loader import LoadedSpec, load_spec, validate_file
from agentfsm.spec.problems import MachineFileError, Problem
from agentfsm.testing.models import TEST_SUFFIX


def validate_files(files: Iterable[Path], *, analyse: bool = True, strict: bool = False) -> list[Problem]:
    """Every problem of every file, in order; nothing a file names is imported or called.

    `analyse` adds the static analysis (`agentfsm.spec.analysis`) of each file that has no error;
    `strict` makes every warning an error.
    """
    from agentfsm.spec.analysis import analyse as analysis

    problems: list[Problem] = []
    for file in files:
        if str(file).endswith(TEST_SUFFIX):  # a test file is checked as one (with its machine)
            problems.extend(_test_file_problems(file, strict))
            continue
        report = validate_file(file)
        found = list(report.problems)
        if analyse and report.ok and report.spec is not None and report.source_map is not None:
            found.extend(analysis(report.spec, report.source_map, report.display_name, report.path.parent))
            found.sort(key=lambda p: (p.line, p.column))
        if strict:
            found = [dataclasses.replace(p, severity="error") for p in found]
        problems.extend(found)
    return problems


def _test_file_problems(file: Path, strict: bool) -> list[Problem]:
    from agentfsm.testing.loader import load_tests

    try:
        loaded = load_tests(file)
    except MachineFileError as exc:
        return list(exc.problems)
    warnings = list(loaded.machine.warnings)
    return [dataclasses.replace(p, severity="error") for p in warnings] if strict else warnings


def machine_paths(file: Path, *, max_length: int, limit: int) -> Any:
    """The paths from the initial state to each end state of a valid machine (`validate --paths`): a
    `spec.paths.PathListing`. Raises MachineFileError when the file is invalid."""
    from agentfsm.spec.paths import machine_paths as paths

    return paths(load_spec(file).spec, max_length=max_length, limit=limit)


def load_definition(path: Path) -> LoadedSpec:
    """A valid machine definition (MachineFileError listing every problem otherwise), not compiled."""
    return load_spec(path)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the language, as `agentfsm schema` prints it."""
    from agentfsm.spec.models import json_schema as schema

    return schema()
