"""What each `agentfsm` command does, over the Python API; `app.py` only parses arguments."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from agentfsm.bindings.imports import BindingError
from agentfsm.cli import exit_codes
from agentfsm.cli.outcome import finish, say_error
from agentfsm.runtime.machine import MachineDefinitionError
from agentfsm.spec.inputs import InputError, parse_cli_input
from agentfsm.spec.loader import load_spec, validate_file
from agentfsm.spec.problems import MachineFileError, Problem
from agentfsm.spec.yamlsource import load_yaml_file


def _store_error() -> type[Exception]:
    """Imported only when an error is being handled: `validate` and `--help` never load the store."""
    from agentfsm.store.base import StoreError

    return StoreError


@contextmanager
def guarded(debug: bool) -> Iterator[None]:
    """Every failure becomes one clear line and a documented exit code; tracebacks only with --debug."""
    try:
        yield
    except typer.Exit:
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
    except KeyboardInterrupt:
        say_error("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if debug:
            traceback.print_exc()
        say_error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        raise typer.Exit(exit_codes.INTERNAL_ERROR) from None


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


def run_command(
    file: Path, input_pairs: list[str], inputs_file: Path | None, llm_options: list[str], *, as_json: bool,
    quiet: bool, log_steps: bool = False, stream: bool = True, store: str | None = None,
) -> int:
    """`log_steps` adds the LoggingHook (`-v`); progress is off when `quiet` (which `--log-format json` implies)."""
    import asyncio

    from agentfsm.api import load_machine
    from agentfsm.history import Runs
    from agentfsm.runtime.ids import new_run_id
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
        run_id = new_run_id()
        if not quiet:
            typer.echo(f"run {run_id}", err=True)
        result = asyncio.run(runs.start(machine, given, llms=overrides, hooks=hooks, run_id=run_id))
    finally:
        runs.close()
    return finish(result, as_json=as_json, store_option=store)


def validate_command(files: list[Path], *, as_json: bool) -> int:
    problems: list[Problem] = []
    for file in files:
        problems.extend(validate_file(file).problems)
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in problems], ensure_ascii=False, indent=2))
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
