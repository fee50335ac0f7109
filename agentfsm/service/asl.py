"""Importing Amazon States Language machines: read the file, convert it, check the machine it makes, write it.

Nothing is written unless the whole machine was imported and validates: bad input raises InputError (one line
naming the file and the JSON pointer), refused parts come back listed in the outcome.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentfsm.spec.problems import InputError

MAX_DEFINITION = 1_048_576
"""Step Functions' own limit on a definition's size (1 MiB)."""


@dataclass(slots=True)
class ImportOutcome:
    """What `agentfsm import` did: the machine's text (None when refused), where it was written, what to bind."""

    source: Path
    text: str | None
    written: Path | None
    refusals: list[dict[str, str]] = field(default_factory=list)
    unbound: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def imported(self) -> bool:
        return self.text is not None


def machine_name(path: Path) -> str:
    """A machine's name from its file: `order-flow.asl.json` -> `order-flow`."""
    name = path.name
    for suffix in (".json", ".yaml", ".yml", ".asl"):
        name = name.removesuffix(suffix)
    return re.sub(r"\s+", "-", name) or "imported"


def import_file(path: Path, *, binds: Iterable[str] = (), output: Path | None = None) -> ImportOutcome:
    """Import an ASL file; with `output`, write the machine there (only when all of it was imported)."""
    from agentfsm.asl import AslInputError, import_definition, parse_bind
    from agentfsm.spec.loader import validate_text

    text = _read(path)
    try:
        chosen = dict(parse_bind(item) for item in binds)
        imported = import_definition(text, name=machine_name(path), source=path.name, binds=chosen)
    except AslInputError as exc:
        raise InputError(f"{path}: {exc}") from None
    outcome = ImportOutcome(path, imported.text, None, [r.as_json() for r in imported.refusals], imported.unbound,
                            imported.notes)
    if imported.text is None:
        return outcome
    report = validate_text(imported.text, output or path.with_suffix(".yaml"))
    errors = [problem for problem in report.problems if problem.severity == "error"]
    if errors:  # our own conversion went wrong: say so, write nothing
        outcome.refusals = [{"pointer": "/", "message": f"the imported machine does not validate: {problem}"}
                            for problem in errors]
        outcome.text = None
        return outcome
    if output is not None:
        try:
            output.write_text(imported.text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{output}: cannot write: {exc.strerror or exc}") from None
        outcome.written = output
    return outcome


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_DEFINITION:
            raise InputError(f"{path}: larger than {MAX_DEFINITION} bytes, the limit of a Step Functions definition")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def import_view(outcome: ImportOutcome) -> dict[str, Any]:
    """What `agentfsm import --json` prints."""
    return {"source": str(outcome.source), "imported": outcome.imported,
            "written": None if outcome.written is None else str(outcome.written), "refusals": outcome.refusals,
            "unbound": outcome.unbound, "notes": outcome.notes}


@dataclass(slots=True)
class ExportOutcome:
    """What `agentfsm export` did: the ASL definition's text (None when refused), and the refusals."""

    source: Path
    text: str | None
    written: Path | None
    refusals: list[dict[str, str]] = field(default_factory=list)


def export_file(path: Path, *, output: Path | None = None) -> ExportOutcome:
    """Export a machine file as an ASL definition; a machine that does not validate is bad input."""
    import json

    import yaml

    from agentfsm.asl.exporter import export_machine
    from agentfsm.spec.loader import load_spec

    load_spec(path)  # raises MachineFileError (every problem, located) for a machine that does not validate
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    definition, refusals = export_machine(document)
    if definition is None:
        return ExportOutcome(path, None, None, [refusal.as_json() for refusal in refusals])
    text = json.dumps(definition, indent=2, ensure_ascii=False) + "\n"
    outcome = ExportOutcome(path, text, None)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{output}: cannot write: {exc.strerror or exc}") from None
        outcome.written = output
    return outcome
