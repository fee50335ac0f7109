"""`agentfsm` command-line interface: parses arguments and calls `agentfsm.cli.commands`.

Heavy modules (pydantic, Jinja2, the runtime) are imported inside the commands, so
`agentfsm --help` starts fast.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from agentfsm import __version__
from agentfsm.cli import usage
from agentfsm.cli.debug_options import BreakOption, StepOption, WatchOption

app = typer.Typer(
    name="agentfsm",
    cls=usage.PlainGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, as usual CLIs print it (and --help does not import rich)
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = functools.partial(app.command, cls=usage.PlainCommand)

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
        int, typer.Option("-v", "--verbose", count=True, show_default=False,
                          help="Log to stderr: -v steps (INFO), -vv calls (DEBUG).")
    ] = 0,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", metavar="FORMAT",
                                help="Logs as text (the default), or json: one JSON object per line (no progress).")
    ] = LogFormat.text,
    otel: Annotated[bool, typer.Option("--otel", help="Export OpenTelemetry spans of the runs a command "
                                       "advances (OTLP/HTTP; the OTEL_* variables configure it).")] = False,
) -> None:
    """Declarative YAML state machines for LLM agents: run, check and draw them; read and act on stored runs.

    Global options (--debug, -v, --log-format, --otel) go before or after the command:
    agentfsm --debug runs is agentfsm runs --debug.

    \b
    Exit codes:
      0    success
      1    the run failed (a fail state or an unhandled error) or was cancelled
      2    bad input or usage
      3    the run is paused: it waits for an event or a timer, or stopped at a breakpoint
      70   an internal error (a bug in agentfsm: rerun with --debug)
      130  interrupted by Ctrl-C; a run being advanced is paused (agentfsm resume RUN)
    """
    _options["debug"] = debug
    _logging.update(verbose=verbose, format=log_format.value)
    if otel:
        from agentfsm.observability import otel as telemetry

        telemetry.request()
    from agentfsm.observability import logging as logs  # here, not at the top: `--help` stays fast

    if verbose or log_format is not LogFormat.text:
        logs.configure_logging(verbose, log_format.value)
    else:
        logs.configure_plain_logging()


StoreOption = Annotated[
    str | None,
    typer.Option("--store", envvar="AGENTFSM_STORE", metavar="URL", show_default=False,
                 help="Where runs are kept: sqlite:///PATH (default: .agentfsm/runs.db here) or "
                      "postgresql://USER@HOST:PORT/DB[?schema=NAME]."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MachineFileArgument = Annotated[
    Path, typer.Argument(metavar="FILE", help="The machine file (YAML).", show_default=False)
]
InputPairsOption = Annotated[
    list[str] | None,
    typer.Option("-i", "--input", metavar="KEY=VALUE", help="An input; the value is JSON when it parses."),
]
InputsFileOption = Annotated[
    Path | None, typer.Option("--inputs", metavar="FILE", help="Inputs from a JSON or YAML mapping.")
]
RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="A run id, or a unique start or end of one (at least 4 characters).",
                                            show_default=False)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
NoStreamOption = Annotated[bool, typer.Option("--no-stream", help="Do not show LLM replies as they arrive.")]
RunJsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object: run_id, status, output...")]


def _driving() -> dict[str, Any]:
    """How commands that advance a run show it: step logs with -v, no progress with --log-format json."""
    return {"log_steps": _logging["verbose"] >= 1}


def _quiet(quiet: bool) -> bool:
    return quiet or _logging["format"] == "json"


@command()
def run(
    file: MachineFileArgument,
    input_pairs: InputPairsOption = None,
    inputs_file: InputsFileOption = None,
    llm_options: Annotated[
        list[str] | None,
        typer.Option(
            "--llm", metavar="NAME=PROVIDER:MODEL",
            help="Switch an LLM binding: brain=openai:gpt-4o-mini, brain=anthropic:MODEL, brain=ollama:llama3.1.",
        ),
    ] = None,
    as_json: RunJsonOption = False,
    quiet: QuietOption = False,
    no_stream: NoStreamOption = False,
    store: StoreOption = None,
    breaks: BreakOption = None,
    watches: WatchOption = None,
    step: StepOption = False,
) -> None:
    """Run a machine, recording every step in the store; print the run id, then its result."""
    from agentfsm.cli.commands import guarded, run_command

    with guarded(_options["debug"]):
        code = run_command(file, input_pairs or [], inputs_file, llm_options or [], as_json=as_json,
                           quiet=_quiet(quiet), stream=not no_stream, store=store, breaks=breaks or [],
                           watches=watches or [], step=step, **_driving())
    raise typer.Exit(code)


@command()
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Machine files to check.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {file, line, column, severity, code, message}.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Count every warning as an error (exit 2).")] = False,
    paths: Annotated[
        bool, typer.Option("--paths", help="List the paths from the initial state to each final or fail state.")
    ] = False,
    max_length: Annotated[
        int, typer.Option("--max-length", metavar="N", min=1, help="With --paths: at most N states per path.")
    ] = 30,
) -> None:
    """Check machine files; print every problem as FILE:LINE:COL: severity code message."""
    from agentfsm.cli.commands import guarded, paths_command, validate_command

    with guarded(_options["debug"]):
        if paths:
            code = paths_command(files, as_json=as_json, max_length=max_length)
        else:
            code = validate_command(files, as_json=as_json, strict=strict)
    raise typer.Exit(code)


@command()
def schema() -> None:
    """Print the JSON Schema of the machine language."""
    from agentfsm.cli.commands import guarded, schema_command

    with guarded(_options["debug"]):
        code = schema_command()
    raise typer.Exit(code)


@command()
def resume(
    run_id: RunArgument,
    machine: Annotated[
        Path | None, typer.Option("--machine", metavar="FILE", help="Continue with this (edited) machine file.")
    ] = None,
    llm_options: Annotated[
        list[str] | None, typer.Option("--llm", metavar="NAME=PROVIDER:MODEL", help="Switch an LLM binding.")
    ] = None,
    as_json: RunJsonOption = False,
    quiet: QuietOption = False,
    no_stream: NoStreamOption = False,
    store: StoreOption = None,
    breaks: BreakOption = None,
    watches: WatchOption = None,
    step: StepOption = False,
) -> None:
    """Continue a run from its head (after a crash, a wait, a pause, a breakpoint or a rollback)."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import resume_command

    with guarded(_options["debug"]):
        code = resume_command(store, run_id, machine_file=machine, llm_options=llm_options or [], as_json=as_json,
                              quiet=_quiet(quiet), stream=not no_stream, breaks=breaks or [],
                              watches=watches or [], step=step, **_driving())
    raise typer.Exit(code)


@command()
def send(
    run_id: RunArgument,
    event: Annotated[str, typer.Argument(metavar="EVENT", help="The event's name.", show_default=False)],
    data: Annotated[str | None, typer.Option("--data", metavar="JSON", help="The event's data, as JSON.")] = None,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Only record the event.")] = False,
    as_json: RunJsonOption = False,
    quiet: QuietOption = False,
    no_stream: NoStreamOption = False,
    store: StoreOption = None,
) -> None:
    """Deliver an event to a waiting run and continue it."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import send_command

    with guarded(_options["debug"]):
        code = send_command(store, run_id, event, data, resume=not no_resume, as_json=as_json, quiet=_quiet(quiet),
                            stream=not no_stream, **_driving())
    raise typer.Exit(code)


@command()
def runs(
    status: Annotated[str | None, typer.Option("--status", metavar="STATUS", help="Only runs with this status.")
                      ] = None,
    machine: Annotated[str | None, typer.Option("--machine", metavar="NAME",
                                                help="Only runs of this machine (its name).")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="At most this many runs, newest first.")
                     ] = 20,
    tree: Annotated[bool, typer.Option("--tree", help="Show child runs (nested machines, branches, agents) "
                                                      "indented under their parent.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List runs, newest first."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import runs_command

    with guarded(_options["debug"]):
        code = runs_command(store, status=status, machine=machine, limit=limit, as_json=as_json, tree=tree)
    raise typer.Exit(code)


@command()
def history(
    run_id: RunArgument,
    branch: Annotated[str | None, typer.Option("--branch", metavar="NAME",
                                               help="Read this branch (default: the head).")] = None,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a run's steps: state, event, next state, duration, error."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import history_command

    with guarded(_options["debug"]):
        code = history_command(store, run_id, branch=branch, as_json=as_json)
    raise typer.Exit(code)


@command()
def checkpoints(run_id: RunArgument, as_json: JsonOption = False, store: StoreOption = None) -> None:
    """List a run's named checkpoints."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import checkpoints_command

    with guarded(_options["debug"]):
        code = checkpoints_command(store, run_id, as_json=as_json)
    raise typer.Exit(code)


@command()
def checkpoint(
    run_id: RunArgument,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The checkpoint's name.", show_default=False)],
    store: StoreOption = None,
) -> None:
    """Name the run's current point (just before its next step)."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import checkpoint_command

    with guarded(_options["debug"]):
        code = checkpoint_command(store, run_id, name)
    raise typer.Exit(code)


@command()
def rollback(
    run_id: RunArgument,
    to: Annotated[str, typer.Option(
        "--to", metavar="TARGET",
        help="A checkpoint name, a step number, state:NAME (its latest visit), start; BRANCH@TARGET on another branch.",
    )],
    branch: Annotated[str | None, typer.Option("--branch", metavar="NAME",
                                               help="Name the new branch (default: rollback-N).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from there at once.")] = False,
    as_json: RunJsonOption = False,
    quiet: QuietOption = False,
    no_stream: NoStreamOption = False,
    store: StoreOption = None,
) -> None:
    """Start a new branch at an earlier point and make it the head; nothing is deleted."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import rollback_command

    with guarded(_options["debug"]):
        code = rollback_command(store, run_id, to, branch=branch, resume=resume, as_json=as_json,
                                quiet=_quiet(quiet), stream=not no_stream, **_driving())
    raise typer.Exit(code)


@command()
def diff(
    run_id: RunArgument,
    a: Annotated[str, typer.Argument(
        metavar="A", help="A point: step number, checkpoint, state:NAME, start, head; BRANCH@POINT on another branch.",
    )],
    b: Annotated[str, typer.Argument(metavar="B", help="Another point of the same run.")],
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show what changed between two points of a run: context keys, states, transitions."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import diff_command

    with guarded(_options["debug"]):
        code = diff_command(store, run_id, a, b, as_json=as_json)
    raise typer.Exit(code)


@command()
def cancel(run_id: RunArgument, store: StoreOption = None) -> None:
    """Stop a run for good (a process advancing it stops at its next step)."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import cancel_command

    with guarded(_options["debug"]):
        code = cancel_command(store, run_id)
    raise typer.Exit(code)


@command()
def prune(
    older_than: Annotated[str | None, typer.Option("--older-than", metavar="DURATION",
                                                   help="Runs not updated for this long (30d, 12h; 0: any age).")] = None,
    keep_last: Annotated[int | None, typer.Option("--keep-last", metavar="N", help="Keep the newest N.")] = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", metavar="STATUS",
        help="Only runs with this status (repeatable; default: succeeded, failed, cancelled).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Delete old finished runs (default: older than 30 days)."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.run_commands import prune_command

    with guarded(_options["debug"]):
        code = prune_command(store, older_than=older_than, keep_last=keep_last, statuses=status or [],
                             dry_run=dry_run, as_json=as_json)
    raise typer.Exit(code)


@command(name="import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An Amazon States Language definition (JSON or YAML).",
                                         show_default=False)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write the machine here (default: stdout).")
    ] = None,
    binds: Annotated[
        list[str] | None, typer.Option("--bind", metavar="RESOURCE=BINDING",
                                       help="Bind a task's resource (its tool name, Resource or FunctionName) to "
                                       "python:module:function, builtin:NAME or an http(s):// URL; repeatable.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {imported, written, refusals, unbound, notes}.")] = False,
) -> None:
    """Import a Step Functions machine (Amazon States Language) as an agentfsm machine; refused parts are listed."""
    from agentfsm.cli.asl_commands import import_command
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = import_command(file, output=output, binds=binds or [], as_json=as_json)
    raise typer.Exit(code)


@command(name="export")
def export_(
    file: MachineFileArgument,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write the definition here (default: stdout).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {exported, written, refusals}.")] = False,
) -> None:
    """Export a machine as Amazon States Language (Step Functions), for the subset that maps back."""
    from agentfsm.cli.asl_commands import export_command
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = export_command(file, output=output, as_json=as_json)
    raise typer.Exit(code)


@command()
def ui(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS",
                                      help="Address to serve on; any but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to serve on (0: a free one).")] = 8321,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", envvar="AGENTFSM_UI_TOKEN", show_default=False,
        help="Every request must carry it (made and printed once when serving off loopback without one).")] = None,
    store: StoreOption = None,
) -> None:
    """Serve a local web UI over the store: runs, live diagrams, steps, and acting on runs (the ui extra)."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.ui_command import ui_command

    with guarded(_options["debug"]):
        code = ui_command(store, host=host, port=port, token=token, open_browser=open_browser)
    raise typer.Exit(code)


def main() -> None:
    sys.exit(usage.run(app))


from agentfsm.cli import testing_commands  # noqa: E402,F401 - registers test, replay, fork, record (they use the names above)
from agentfsm.cli import stats_commands  # noqa: E402,F401 - registers stats
from agentfsm.cli import debug_commands  # noqa: E402,F401 - registers break
from agentfsm.cli import observe_commands  # noqa: E402,F401 - registers trace, show, branches, switch, inspect
from agentfsm.cli import diagram_commands  # noqa: E402,F401 - registers diagram
from agentfsm.cli import queue_app  # noqa: E402,F401 - registers submit, worker, workers, store copy
