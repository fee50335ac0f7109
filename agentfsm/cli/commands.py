"""What each `agentfsm` command does, over the Python API; `app.py` only parses arguments."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agentfsm.bindings.imports import BindingError
from agentfsm.cli import exit_codes
from agentfsm.cli.outcome import finish, interrupted, say_error
from agentfsm.runtime.machine import MachineDefinitionError
from agentfsm.spec.inputs import InputError, parse_cli_input
from agentfsm.spec.loader import load_spec, validate_file
from agentfsm.spec.problems import MachineFileError, Problem
from agentfsm.spec.yamlsource import load_yaml_file

if TYPE_CHECKING:
    from agentfsm.store.base import RunRow


def _store_error() -> type[Exception]:
    """Imported only when an error is being handled: `validate` and `--help` never load the store."""
    from agentfsm.store.base import StoreError

    return StoreError


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
    except (InputError, BindingError, MachineDefinitionError, _store_error()) as exc:
        if debug:
            traceback.print_exc()
        say_error(str(exc))
        raise typer.Exit(exit_codes.BAD_INPUT) from None
    except KeyboardInterrupt:  # before a run started (commands that advance runs say more: `interruptible`)
        typer.echo("interrupted", err=True)
        raise typer.Exit(exit_codes.INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if debug:
            traceback.print_exc()
        say_error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        raise typer.Exit(exit_codes.INTERNAL_ERROR) from None


def _stored_run(store: str | None, run_id: str) -> RunRow | None:
    """The run as the store has it, read afresh; None when it is not there (or the store cannot be read)."""
    from agentfsm.cli.run_commands import opened  # never creates a store: Ctrl-C may come before `run` made it

    try:
        with opened(store) as runs:
            return runs.get(run_id)
    except Exception:  # noqa: BLE001 - only an explanation depends on it; the exit code is 130 anyway
        return None


@contextmanager
def interruptible(store: str | None, run_id: str, *, as_json: bool) -> Iterator[None]:
    """Ctrl-C while a command advances a run: the history layer leaves the run `paused` at its last recorded
    step; say so, and how to continue, instead of a bare `interrupted` (exit 130 either way)."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(interrupted(_stored_run(store, run_id), as_json=as_json, store_option=store)) from None


def read_inputs_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping of inputs, read safely."""
    document, problems = load_yaml_file(path, str(path))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise InputError(f"--inputs {errors[0]}")
    if document is None or not isinstance(document.data, dict):
        raise InputError(f"--inputs {path}: the file must hold a mapping of input names to values")
    return dict(document.data)


def _print_warnings(warnings: tuple[Problem, ...] | list[Problem]) -> None:
    for warning in warnings:
        typer.echo(str(warning), err=True)


def progress_hooks(machine_name: str, *, quiet: bool, log_steps: bool, stream: bool,
                   warnings: tuple[Problem, ...] = ()) -> list[object]:
    """The hooks a command adds to a run it drives: step logs (`-v`) and live progress (unless `quiet`)."""
    hooks: list[object] = []
    if log_steps:
        import logging

        from agentfsm.observability.logging import LoggingHook

        if quiet:  # the warnings were not printed: they go to the log instead
            for warning in warnings:
                logging.getLogger("agentfsm").warning("%s", warning)
        hooks.append(LoggingHook())
    if not quiet:
        from rich.console import Console

        from agentfsm.observability.progress import ProgressReporter

        # on a terminal, LLM replies stream onto the progress line unless `stream` is off (--no-stream)
        hooks.append(ProgressReporter(Console(stderr=True, highlight=False, soft_wrap=True), machine_name,
                                      stream=stream))
    return hooks


@contextmanager
def progress_stopped_on_interrupt(hooks: list[object]) -> Iterator[None]:
    """A run cancelled by Ctrl-C gets no `on_run_end`, so the live progress line (a terminal's spinner) would
    keep running under the message that explains the interruption: stop it first."""
    try:
        yield
    except KeyboardInterrupt:
        for hook in hooks:
            status = getattr(hook, "status", None)  # ProgressReporter's live line, while a run is shown
            if status is not None:
                status.stop()
                hook.status = None  # type: ignore[attr-defined]
        raise


def run_command(
    file: Path, input_pairs: list[str], inputs_file: Path | None, llm_options: list[str], *, as_json: bool,
    quiet: bool, log_steps: bool = False, stream: bool = True, store: str | None = None,
) -> int:
    """`log_steps` adds the LoggingHook (`-v`); progress is off when `quiet` (which `--log-format json` implies).

    The run id is shown by the progress's first line, `run ID  MACHINE`, printed when the run starts: after the
    store recorded it, so a run refused by the store (locked, damaged) never shows an id."""
    from agentfsm.runtime.ids import new_run_id

    run_id = new_run_id()
    with interruptible(store, run_id, as_json=as_json):
        return _start(file, input_pairs, inputs_file, llm_options, run_id, as_json=as_json, quiet=quiet,
                      log_steps=log_steps, stream=stream, store=store)


def _start(file: Path, input_pairs: list[str], inputs_file: Path | None, llm_options: list[str], run_id: str, *,
           as_json: bool, quiet: bool, log_steps: bool, stream: bool, store: str | None) -> int:
    import asyncio

    from agentfsm.api import load_machine
    from agentfsm.history import Runs
    from agentfsm.spec.overrides import parse_llm_options

    overrides = parse_llm_options(llm_options)
    machine = load_machine(file, llms=overrides)
    loaded = machine.source
    if not quiet:
        _print_warnings(loaded.warnings)
    given: dict[str, Any] = read_inputs_file(inputs_file) if inputs_file else {}
    for pair in input_pairs:
        key, value = parse_cli_input(pair, loaded.spec.inputs)
        given[key] = value
    machine.new_context(given)  # bad inputs are refused before the store is opened
    hooks = progress_hooks(machine.name, quiet=quiet, log_steps=log_steps, stream=stream, warnings=loaded.warnings)
    runs = Runs(store)
    try:
        with progress_stopped_on_interrupt(hooks):
            result = asyncio.run(runs.start(machine, given, llms=overrides, hooks=hooks, run_id=run_id))
    finally:
        runs.close()
    return finish(result, as_json=as_json, store_option=store)


def validate_command(files: list[Path], *, as_json: bool) -> int:
    problems: list[Problem] = []
    for file in files:
        problems.extend(validate_file(file).problems)
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in problems], ensure_ascii=False))  # one line, as every --json
    else:
        for found in problems:
            typer.echo(str(found))
        errors = sum(p.severity == "error" for p in problems)
        warnings = len(problems) - errors
        summary = f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)"
        typer.echo(summary if problems else f"{len(files)} file(s) checked: no problems", err=True)
    return exit_codes.BAD_INPUT if any(p.severity == "error" for p in problems) else exit_codes.SUCCESS


def diagram_command(file: Path, output: Path | None) -> int:
    from agentfsm.observability.diagram import mermaid_from_spec

    loaded = load_spec(file)
    text = mermaid_from_spec(loaded.spec)
    if output is None:
        typer.echo(text, nl=False)
        return exit_codes.SUCCESS
    if output.suffix.lower() in (".md", ".markdown"):
        text = f"```mermaid\n{text}```\n"
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from None
    typer.echo(f"wrote {output}", err=True)
    return exit_codes.SUCCESS


def schema_command() -> int:
    from agentfsm.spec.models import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return exit_codes.SUCCESS
