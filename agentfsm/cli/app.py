"""`agentfsm` command-line interface: parses arguments and calls `agentfsm.cli.commands`.

Heavy modules (pydantic, Jinja2, the runtime) are imported inside the commands, so
`agentfsm --help` starts fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from agentfsm import __version__

app = typer.Typer(
    name="agentfsm",
    help="Declarative YAML state machines for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_options = {"debug": False}
_logging: dict[str, Any] = {"verbose": 0, "format": "text"}


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentfsm {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="Log to stderr: -v steps (INFO), -vv calls (DEBUG).")
    ] = 0,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="Logs as text, or one JSON object per line (no progress).")
    ] = LogFormat.text,
) -> None:
    """Run, check and draw agentfsm machines. Exit codes: 0 ok, 1 run failed, 2 bad input, 3 paused."""
    _options["debug"] = debug
    _logging.update(verbose=verbose, format=log_format.value)
    from agentfsm.observability import logging as logs  # here, not at the top: `--help` stays fast

    if verbose or log_format is not LogFormat.text:
        logs.configure_logging(verbose, log_format.value)
    else:
        logs.configure_plain_logging()


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The machine file (YAML).", show_default=False)],
    input_pairs: Annotated[
        list[str] | None,
        typer.Option("-i", "--input", metavar="KEY=VALUE", help="An input; the value is JSON when it parses."),
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option("--inputs", metavar="FILE", help="Inputs from a JSON or YAML mapping.")
    ] = None,
    llm_options: Annotated[
        list[str] | None,
        typer.Option(
            "--llm", metavar="NAME=PROVIDER:MODEL",
            help="Switch an LLM binding: brain=openai:gpt-4o-mini, brain=anthropic:MODEL, brain=ollama:llama3.1.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: run_id, status, output...")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Do not show LLM replies as they arrive (on a terminal).")
    ] = False,
) -> None:
    """Run a machine and print its result."""
    from agentfsm.cli.commands import guarded, run_command

    with guarded(_options["debug"]):
        code = run_command(file, input_pairs or [], inputs_file, llm_options or [], as_json=as_json,
                           quiet=quiet or _logging["format"] == "json", log_steps=_logging["verbose"] >= 1,
                           stream=not no_stream)
    raise typer.Exit(code)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Machine files to check.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {file, line, column, severity, code, message}.")
    ] = False,
) -> None:
    """Check machine files; print every problem as FILE:LINE:COL: severity code message."""
    from agentfsm.cli.commands import guarded, validate_command

    with guarded(_options["debug"]):
        code = validate_command(files, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def diagram(
    file: Annotated[Path, typer.Argument(help="The machine file (YAML).", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file; a .md file gets a mermaid block.")
    ] = None,
) -> None:
    """Print the machine as a Mermaid stateDiagram-v2 (made locally)."""
    from agentfsm.cli.commands import diagram_command, guarded

    with guarded(_options["debug"]):
        code = diagram_command(file, output)
    raise typer.Exit(code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the machine language."""
    from agentfsm.cli.commands import guarded, schema_command

    with guarded(_options["debug"]):
        code = schema_command()
    raise typer.Exit(code)


def main() -> None:
    app()
