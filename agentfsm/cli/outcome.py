"""How `run`, `resume`, `send` and `rollback --resume` end: the same output, `--json` object and exit codes."""

from __future__ import annotations

import datetime
import json
import math
import shlex
from typing import TYPE_CHECKING, Any

import typer

from agentfsm.cli import exit_codes

if TYPE_CHECKING:
    from agentfsm.runtime.loop import RunResult
    from agentfsm.store.base import RunRow


def say_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def json_safe(value: Any) -> Any:
    """The value with non-finite floats (which JSON cannot hold) written as text: "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def print_json(value: Any, *, indent: int | None = None) -> None:
    typer.echo(json.dumps(json_safe(value), ensure_ascii=False, default=str, allow_nan=False, indent=indent))


def print_output(output: Any) -> None:
    if output is None:
        return
    if isinstance(output, str):
        typer.echo(output)
    else:
        print_json(output, indent=2)


def when(timestamp: float | None) -> str:
    """A stored time, in local time, short enough for a table column (`--json` keeps the epoch seconds)."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def store_hint(store_option: str | None) -> str:
    """` --store URL` to repeat in a suggested command, when the store was not the default one."""
    return f" --store {shlex.quote(store_option)}" if store_option else ""


def finish(result: RunResult, *, as_json: bool, store_option: str | None = None) -> int:
    """Print a run's result and return its exit code: 0 succeeded, 1 failed or cancelled, 3 waiting."""
    if as_json:
        from agentfsm.service.views import result_json

        print_json(result_json(result))
    elif result.succeeded:
        print_output(result.output)
    if result.status == "waiting":
        if not as_json:
            _explain_waiting(result, store_option)
        return exit_codes.PAUSED
    if result.status == "cancelled":
        if not as_json:
            say_error(f"run {result.run_id} was cancelled")
        return exit_codes.RUN_FAILED
    if not result.succeeded and not as_json:
        error = result.error or {}
        where = f"state '{error.get('state')}': " if error.get("state") else ""
        say_error(f"{where}{error.get('type')}: {error.get('message')}")
    return exit_codes.SUCCESS if result.succeeded else exit_codes.RUN_FAILED


def _explain_waiting(result: RunResult, store_option: str | None) -> None:
    waiting = result.waiting or {}
    events = waiting.get("events") or []
    deadline = waiting.get("deadline")
    timer = f"; its timer is due at {when(deadline)}" if deadline is not None else ""
    typer.echo(f"run {result.run_id} is waiting in state '{waiting.get('state')}' for: {', '.join(events)}{timer}",
               err=True)
    first = shlex.quote(events[0]) if events else "EVENT"
    typer.echo(f"continue with: agentfsm send {result.run_id} {first} --data '{{...}}'{store_hint(store_option)}",
               err=True)


def interrupted(run: RunRow | None, *, as_json: bool, store_option: str | None) -> int:
    """Ctrl-C stopped `run`, `resume` or `send`: say where the run was left and how to continue; exit 130.

    `run` is the run as the store has it now (None when nothing was recorded). With `--json`, stdout still holds
    one object with the keys of `result_json`, so a script reading it gets JSON."""
    if as_json:
        print_json({"run_id": None if run is None else run.id, "status": None if run is None else run.status,
                    "output": None, "context": None, "steps": 0 if run is None else run.steps,
                    "error": {"type": "interrupted", "message": "interrupted (Ctrl-C)"}, "usage": None,
                    "waiting": None if run is None or run.status != "waiting" else run.waiting})
    elif run is None:
        typer.echo("interrupted: nothing was recorded", err=True)
    elif run.status == "paused":
        typer.echo(f"interrupted: run {run.id} is paused; "
                   f"continue with: agentfsm resume {run.id}{store_hint(store_option)}", err=True)
    else:  # stopped before it was taken up (a waiting run stays waiting), or after it ended
        typer.echo(f"interrupted: run {run.id} is {run.status}", err=True)
    return exit_codes.INTERRUPTED
