"""How `run`, `resume`, `send` and `rollback --resume` end: the same output, `--json` object and exit codes."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from agentfsm.cli import exit_codes
from agentfsm.cli.render import note, print_json, print_output, say_error, store_hint, when

if TYPE_CHECKING:
    from agentfsm.service.runs import RunResult, RunRow


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
    if result.status == "paused":
        if not as_json:
            _explain_paused(result, store_option)
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
    if not events:  # a pure delay: only time moves it on
        note(f"run {result.run_id} is waiting in state '{waiting.get('state')}' until {when(deadline)}")
        note(f"it continues when due under: agentfsm worker{store_hint(store_option)} "
             f"(or agentfsm resume {result.run_id} then)")
        return
    note(f"run {result.run_id} is waiting in state '{waiting.get('state')}' for: {', '.join(events)}{timer}")
    first = shlex.quote(events[0]) if events else "EVENT"
    note(f"continue with: agentfsm send {result.run_id} {first} --data '{{...}}'{store_hint(store_option)}")


def _explain_paused(result: RunResult, store_option: str | None) -> None:
    """Where a run stopped before a state (a breakpoint, `--step`'s quit) and how to go on."""
    paused = result.paused or {}
    state, detail = paused.get("state"), paused.get("detail") or {}
    hint = store_hint(store_option)
    reason = paused.get("reason", "paused")
    why = f"breakpoint {detail['breakpoint']}" if detail.get("breakpoint") else (
        "stepping stopped" if reason == "step" else reason)
    note(f"run {result.run_id} paused before state '{state}' ({why}) after {result.steps} step(s)")
    note(f"continue with: agentfsm resume {result.run_id}{hint}")
    if detail.get("breakpoint"):
        note(f"remove the breakpoint with: agentfsm break {result.run_id} {shlex.quote(str(state))} --remove{hint}")


def interrupted(run: RunRow | None, *, as_json: bool, store_option: str | None) -> int:
    """Ctrl-C stopped `run`, `resume` or `send`: say where the run was left and how to continue; exit 130.

    `run` is the run as the store has it now (None when nothing was recorded). With `--json`, stdout still holds
    one object with the keys of a result, so a script reading it gets JSON."""
    if as_json:
        from agentfsm.service.views import interrupted_json

        print_json(interrupted_json(run))
    elif run is None:
        note("interrupted: nothing was recorded")
    elif run.status == "paused":
        note(f"interrupted: run {run.id} is paused; continue with: agentfsm resume {run.id}{store_hint(store_option)}")
    else:  # stopped before it was taken up (a waiting run stays waiting), or after it ended
        note(f"interrupted: run {run.id} is {run.status}")
    return exit_codes.INTERRUPTED
