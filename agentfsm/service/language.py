"""The machine language as a front end uses it: check files, load a definition, the JSON Schema."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentfsm.spec.loader import LoadedSpec, load_spec, validate_file
from agentfsm.spec.problems import Problem


def validate_files(files: Iterable[Path]) -> list[Problem]:
    """Every problem of every file, in order; nothing a file names is imported or called."""
    problems: list[Problem] = []
    for file in files:
        problems.extend(validate_file(file).problems)
    return problems


def load_definition(path: Path) -> LoadedSpec:
    """A valid machine definition (MachineFileError listing every problem otherwise), not compiled."""
    return load_spec(path)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the language, as `agentfsm schema` prints it."""
    from agentfsm.spec.models import json_schema as schema

    return schema()
