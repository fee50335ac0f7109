"""`agentfsm diagram`: a machine's diagram, or a run's (its path drawn over its machine), as Mermaid, Graphviz dot,
SVG or PNG. Parses, calls the application layer (`agentfsm.service.diagrams`), writes.

Registered on the app by `app.py` (imported at its end)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.app import StoreOption, _options, command
from agentfsm.cli.render import note


class DiagramFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


_MACHINE_SUFFIXES = (".yaml", ".yml", ".json")


@command()
def diagram(
    target: Annotated[str, typer.Argument(metavar="FILE|RUN", show_default=False,
                                          help="A machine file, or a run id (its machine is stored with it).")],
    run_id: Annotated[str | None, typer.Option("--run", metavar="RUN",
                                               help="Draw this run's path over the machine FILE.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", metavar="NAME",
                                               help="With a run: the branch drawn (default: the head).")] = None,
    diagram_format: Annotated[
        DiagramFormat, typer.Option("--format", "-f", metavar="FORMAT", case_sensitive=False,
                                    help="mermaid (default), dot (Graphviz source), svg or png (drawn by the local "
                                         "Graphviz dot).")
    ] = DiagramFormat.mermaid,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE",
                                  help="Write to this file; a .md file gets a mermaid block.")
    ] = None,
    coverage: Annotated[
        Path | None, typer.Option("--coverage", metavar="REPORT",
                                  help="Draw a coverage report of agentfsm test --coverage: states entered, "
                                       "arrows with how often the cases took them.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Draw a machine (made locally, no web service); with a run, the path it took: counts on the arrows it took,
    states never entered dimmed, the state it is in highlighted."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = diagram_command(target, run_id=run_id, branch=branch, diagram_format=diagram_format.value,
                               output=output, coverage=coverage, store=store)
    raise typer.Exit(code)


def _is_machine_file(target: str) -> bool:
    return target.lower().endswith(_MACHINE_SUFFIXES) or Path(target).is_file()


def diagram_command(target: str, *, run_id: str | None, branch: str | None, diagram_format: str,
                    output: Path | None, coverage: Path | None, store: str | None) -> int:
    from agentfsm.service.errors import InputError

    file = Path(target) if run_id is not None or _is_machine_file(target) else None
    if file is None:
        run_id = target
    if coverage is not None and run_id is not None:
        raise InputError("--coverage draws a test report, --run a run: give one of them")
    if branch is not None and run_id is None:
        raise InputError("--branch reads a run's branch: give a run (diagram RUN, or diagram FILE --run RUN)")
    if output is None and diagram_format == "png" and sys.stdout.isatty():
        raise InputError("a PNG is binary: write it to a file with -o FILE.png (or pipe it)")
    drawn = _drawn(file, run_id, branch, diagram_format, coverage, store)
    if output is None:
        if isinstance(drawn, bytes):
            sys.stdout.buffer.write(drawn)
            sys.stdout.buffer.flush()
        else:
            typer.echo(drawn, nl=False)
        return exit_codes.SUCCESS
    if isinstance(drawn, str) and diagram_format == "mermaid" and output.suffix.lower() in (".md", ".markdown"):
        drawn = f"```mermaid\n{drawn}```\n"
    try:
        output.write_bytes(drawn if isinstance(drawn, bytes) else drawn.encode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from None
    note(f"wrote {output}")
    return exit_codes.SUCCESS


def _drawn(file: Path | None, run_id: str | None, branch: str | None, diagram_format: str,
           coverage: Path | None, store: str | None) -> str | bytes:
    from agentfsm.service import diagrams
    from agentfsm.service.runs import Runs

    if run_id is None:
        assert file is not None
        if coverage is None:
            return diagrams.machine_diagram(file, diagram_format)
        return diagrams.coverage_diagram(file, coverage, diagram_format)
    from agentfsm.cli.run_commands import reading

    async def work(runs: Runs) -> str | bytes:
        return await diagrams.run_diagram(runs, run_id, diagram_format, file=file, branch=branch)

    return reading(store, work)
