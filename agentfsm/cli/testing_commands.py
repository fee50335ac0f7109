"""`agentfsm test`: parse, call the application layer (`agentfsm.service.tests`), render.

Registered on the app by `app.py` (imported at its end)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.app import _options, command
from agentfsm.cli.render import note


@command(name="test")
def test_machines(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[PATHS]...", help="Test files (*.test.yaml) or folders holding them (default: .).",
                       show_default=False),
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", metavar="FILE", help="Write JUnit XML here.")] = None,
    coverage: Annotated[
        Path | None, typer.Option("--coverage", metavar="REPORT",
                                  help="Print which states and transitions the cases took; write the JSON report "
                                       "(for agentfsm diagram FILE --coverage REPORT).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report instead of text.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N", help="Cases running at once.")] = 32,
) -> None:
    """Run machine tests (*.test.yaml): exit 0 when every case passes, 1 when one fails, 2 for a bad file."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = test_command(paths or [Path(".")], junit=junit, coverage=coverage, as_json=as_json, jobs=jobs)
    raise typer.Exit(code)


def _write(path: Path, data: bytes) -> None:
    from agentfsm.service.errors import InputError

    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


def test_command(paths: list[Path], *, junit: Path | None, coverage: Path | None, as_json: bool, jobs: int) -> int:
    from agentfsm.service.errors import InputError
    from agentfsm.service.tests import run_tests

    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    run = asyncio.run(run_tests(paths, jobs=jobs))
    if not run.results:
        raise InputError(f"no test files (*.test.yaml) under {', '.join(map(str, paths))}")
    if as_json:
        typer.echo(json.dumps(run.as_json(), ensure_ascii=False, default=str))
    else:
        sys.stdout.write(run.text(coverage=coverage is not None))
    if junit is not None:
        _write(junit, run.junit())
        note(f"wrote {junit}")
    if coverage is not None:
        _write(coverage, (json.dumps(run.coverage(), indent=2) + "\n").encode("utf-8"))
        note(f"wrote {coverage}")
    if any(result.problems for result in run.results):
        return exit_codes.BAD_INPUT
    return exit_codes.SUCCESS if run.ok else exit_codes.RUN_FAILED
