"""What `run`, `validate` and `schema` do: parse what `app.py` hands over, call the application
layer (`agentfsm.service`), render what it returns. Every failure becomes one line and an exit code (`guarded`).

Heavy modules are imported inside the commands, so `agentfsm --help` and `validate` start fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING
from contextlib import contextmanager
from pathlib import Path

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.outcome import finish, interrupted
from agentfsm.cli.render import note, say_error
from agentfsm.service.errors import USER_ERRORS, InputError, MachineFileError

if TYPE_CHECKING:
    from agentfsm.observability.stepping import Stepper
    from agentfsm.service.machines import StateMachine


@contextmanager
def guarded(debug: bool) -> Iterator[None]:
    """Every failure becomes one clear line and a documented exit code; tracebacks only with --debug."""
    try:
        yield
    except (typer.Exit, BrokenPipeError):  # a closed stdout (`| head`) is the end of the output: usage.run
        raise
    except MachineFileError as exc:
        for found in exc.problems:
            typer.echo(str(found), err=True)
        raise typer.Exit(exit_codes.BAD_INPUT) from None
    except KeyboardInterrupt:  # before a run started (commands that advance runs say more: `interruptible`)
        typer.echo("interrupted", err=True)
        raise typer.Exit(exit_codes.INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if debug:
            traceback.print_exc()
        if isinstance(exc, USER_ERRORS):
            say_error(str(exc))
            raise typer.Exit(exit_codes.BAD_INPUT) from None
        say_error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        raise typer.Exit(exit_codes.INTERNAL_ERROR) from None


@contextmanager
def interruptible(store: str | None, run_id: str, *, as_json: bool) -> Iterator[None]:
    """Ctrl-C while a command advances a run: the history layer leaves the run `paused` at its last recorded
    step; say so, and how to continue, instead of a bare `interrupted` (exit 130 either way)."""
    try:
        yield
    except KeyboardInterrupt:
        import asyncio

        from agentfsm.service.operations import stored_run

        run = asyncio.run(stored_run(store, run_id))  # read afresh; never creates a store
        raise typer.Exit(interrupted(run, as_json=as_json, store_option=store)) from None


def progress_observers(*, quiet: bool, log_steps: bool, stream: bool,
                       warnings: tuple[object, ...] = (), live: bool = True) -> list[object]:
    """The observers a command adds to a run it drives: step logs (`-v`), live progress (unless `quiet`), and
    OpenTelemetry spans (`--otel` or the OTEL_* variables)."""
    from agentfsm.observability import otel

    from agentfsm.observability.logging import LogContext

    try:
        observers: list[object] = [LogContext(), *otel.cli_observers()]  # LogContext first: every line has the step
    except otel.TelemetryUnavailable as exc:
        raise InputError(str(exc)) from None
    if log_steps:
        import logging

        from agentfsm.observability.logging import LoggingObserver

        if quiet:  # the warnings were not printed: they go to the log instead
            for warning in warnings:
                logging.getLogger("agentfsm").warning("%s", warning)
        observers.append(LoggingObserver())
    if not quiet:
        from agentfsm.observability.progress import progress_display

        # on a terminal, LLM replies stream onto the progress line unless `stream` is off (--no-stream)
        observers += progress_display(sys.stderr, stream_replies=stream, live=live)
    return observers


def debug_observers(observers: list[object], watches: Sequence[str]) -> list[object]:
    """`observers` with what `--watch` adds: the watches (checked first: a bad one is refused before anything runs)
    and their printer, writing through the progress display when there is one."""
    if not watches:
        return observers
    from agentfsm.observability.debugging import WatchPrinter
    from agentfsm.service.debugging import watching

    watched = watching(watches)
    screen = next((getattr(observer, "screen") for observer in observers if hasattr(observer, "screen")), None)
    return [*observers, watched, WatchPrinter(note if screen is None else screen.line)]


def stepping(machine: StateMachine) -> Stepper:
    """The `--step` observer, asking on this terminal; refused (exit 2) when stdin or stderr is not a terminal."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise InputError("--step needs a terminal to ask on (stdin and stderr); use --break to pause a run instead")
    from agentfsm.observability.stepping import Stepper
    from agentfsm.service.debugging import read_breakpoint

    def ask(prompt: str) -> str | None:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    return Stepper(ask, note, lambda text: read_breakpoint(text, machine, where="b"))


def run_command(
    file: Path, input_pairs: list[str], inputs_file: Path | None, llm_options: list[str], *, as_json: bool,
    quiet: bool, log_steps: bool = False, stream: bool = True, store: str | None = None, breaks: Sequence[str] = (),
    watches: Sequence[str] = (), step: bool = False,
) -> int:
    """`log_steps` adds step logs (`-v`); progress is off when `quiet` (which `--log-format json` implies).

    The run id is shown by the progress's first line, `run ID  MACHINE`, printed when the run starts: after the
    store recorded it, so a run refused by the store (locked, damaged) never shows an id."""
    from agentfsm.cli.process import drive
    from agentfsm.service.debugging import read_breakpoints
    from agentfsm.service.inputs import collect_inputs, parse_llm_options
    from agentfsm.service.machines import load_machine, loaded_source
    from agentfsm.service.operations import new_run_id, start_run

    run_id = new_run_id()
    with interruptible(store, run_id, as_json=as_json):
        overrides = parse_llm_options(llm_options)
        machine = load_machine(file, llms=overrides)
        source = loaded_source(machine)
        warnings = source.warnings if source is not None else ()
        if not quiet:
            for warning in warnings:
                note(str(warning))
        given = collect_inputs(machine, input_pairs, inputs_file)  # refused before the store is opened
        read_breakpoints(breaks, machine)  # so are breakpoints naming no state
        observers = progress_observers(quiet=quiet, log_steps=log_steps, stream=stream,
                                       warnings=warnings, live=not step)
        observers = debug_observers(observers, watches)
        stepper = stepping(machine) if step else None
        if stepper is not None:
            observers.append(stepper)
        try:
            result = drive(start_run(store, machine, given, llms=overrides, observers=observers, run_id=run_id,
                                     breakpoints=breaks))
        finally:
            if stepper is not None and stepper.added:
                from agentfsm.service.operations import keep_breakpoints

                drive(keep_breakpoints(store, run_id, stepper.added))
    return finish(result, as_json=as_json, store_option=store)


def validate_command(files: list[Path], *, as_json: bool, strict: bool = False) -> int:
    from agentfsm.service.language import validate_files

    problems = validate_files(files, strict=strict)
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in problems], ensure_ascii=False))  # one line, as every --json
    else:
        for found in problems:
            typer.echo(str(found))
        errors = sum(p.severity == "error" for p in problems)
        warnings = len(problems) - errors
        summary = f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)"
        note(summary if problems else f"{len(files)} file(s) checked: no problems")
    return exit_codes.BAD_INPUT if any(p.severity == "error" for p in problems) else exit_codes.SUCCESS


def paths_command(files: list[Path], *, as_json: bool, max_length: int) -> int:
    """`validate --paths`: each file's paths from its initial state to its end states, one per line."""
    from agentfsm.service.language import machine_paths

    listings = [(file, machine_paths(file, max_length=max_length, limit=1000)) for file in files]
    if as_json:
        typer.echo(json.dumps([{"file": str(file), "truncated": listing.truncated,
                                "paths": [path.as_dict() for path in listing.paths]} for file, listing in listings]))
        return exit_codes.SUCCESS
    for file, listing in listings:
        end = None
        for path in listing.paths:
            if path.end != end:
                end = path.end
                typer.echo(f"{file}: to {end} ({path.end_type})")
            typer.echo(f"  {path}")
        if not listing.paths:
            note(f"{file}: no path reaches a final or fail state within {max_length} states")
        if listing.truncated:
            note(f"{file}: more paths exist (longer than {max_length} states, or over 1000); see --max-length")
    return exit_codes.SUCCESS


def schema_command() -> int:
    from agentfsm.service.language import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return exit_codes.SUCCESS
