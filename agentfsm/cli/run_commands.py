"""What the commands that read or act on stored runs do: call `agentfsm.service`, render what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any


from agentfsm.cli import exit_codes
from agentfsm.cli.commands import debug_observers, interruptible, progress_observers, stepping
from agentfsm.cli.outcome import finish
from agentfsm.cli.process import drive
from agentfsm.cli.render import (
    JSONListPrinter,
    TablePrinter,
    json_text,
    note,
    print_json,
    say,
    store_hint,
    table,
    when,
)
from agentfsm.service import operations, views
from agentfsm.service.errors import InputError
from agentfsm.service.inputs import parse_age, parse_event_data, parse_llm_options
from agentfsm.service.runs import (
    STATUSES,
    Rollback,
    RunDiff,
    RunRow,
    Runs,
    StepRow,
)
from agentfsm.service.stores import open_runs


def reading(store: str | None, work: Callable[[Runs], Coroutine[Any, Any, Any]]) -> Any:
    """Run `work` on the store's runs; a store that is not there is refused (reading commands never make one)."""
    async def go() -> Any:
        async with open_runs(store, create=False) as runs:
            return await work(runs)

    return asyncio.run(go())


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InputError(f"--status: '{status}' is not a status ({', '.join(STATUSES)})")


def runs_command(store: str | None, *, status: str | None, machine: str | None, limit: int, as_json: bool,
                 tree: bool = False) -> int:
    _check_status(status)
    if tree:
        return _runs_tree(store, status=status, machine=machine, limit=limit, as_json=as_json)
    found = asyncio.run(operations.list_runs(store, status=status, machine=machine, limit=limit))
    now = time.time()
    if as_json:
        print_json([views.run_json(run, now) for run in found])
    elif not found:
        note("no runs yet")
    else:
        _runs_table(found, now)
    return exit_codes.SUCCESS


def _runs_tree(store: str | None, *, status: str | None, machine: str | None, limit: int, as_json: bool) -> int:
    found = asyncio.run(operations.run_tree(store, status=status, machine=machine, limit=limit))
    now = time.time()
    if as_json:
        print_json(views.run_tree_json(found, now))
    elif not found:
        note("no runs yet")
    else:
        table(["run", "name", "machine", "status", "steps", "updated"],
              [[views.short_id(run.id), "  " * depth + (run.child_name or "") if depth else run.machine,
                run.machine, views.status_label(run, now), str(run.steps), when(run.updated_at)]
               for depth, run in found])
    return exit_codes.SUCCESS


def _runs_table(found: list[RunRow], now: float) -> None:
    table(["run", "machine", "status", "steps", "branch", "updated"],
          [[views.short_id(run.id), run.machine, views.status_label(run, now), str(run.steps), run.head,
            when(run.updated_at)]
           for run in found])


def history_command(store: str | None, run_id: str, *, branch: str | None, as_json: bool) -> int:
    """The steps of a branch, printed as they are read (a run of 100,000 steps is never held whole)."""
    async def work(runs: Runs) -> None:
        run = await runs.get(run_id)
        steps = runs.iter_history(run.id, branch)
        first = await anext(steps, None)  # an unknown branch is refused before anything is printed
        printer = JSONListPrinter() if as_json else TablePrinter(
            ["step", "state", "event", "next state", "duration", "error"], page=HISTORY_PAGE)
        if not as_json:
            note(f"run {run.id}, branch {branch or run.head}")  # on stderr: stdout stays the table alone
            if first is None:
                note("no steps")
                return
        shown = views.step_json if as_json else _history_cells
        if first is not None:
            printer.add(shown(first))
        async for row in steps:
            printer.add(shown(row))
        printer.end()

    reading(store, work)
    return exit_codes.SUCCESS


HISTORY_PAGE = 1000
"""Rows of `history` aligned together: a column may widen after each 1,000 rows of a long run."""


def _history_cells(row: StepRow) -> list[str]:
    error = "" if row.error is None else f"{row.error.get('type')}: {row.error.get('message')}"
    retried = f" ({row.retries} {'retry' if row.retries == 1 else 'retries'})" if row.retries else ""
    children = views.step_children(row)
    if children:  # the child runs the step started, by name and id (read them with `history CHILD`)
        listed = ", ".join(f"{child['name']} {child['run_id']} ({child['status']})" for child in children)
        error = f"{error}  children: {listed}" if error else f"children: {listed}"
    return [str(row.step), row.state or "", row.event or "", row.next_state or "(end)",
            f"{row.duration * 1000:.1f} ms{retried}", error]


def checkpoints_command(store: str | None, run_id: str, *, as_json: bool) -> int:
    found = reading(store, lambda runs: runs.checkpoints(run_id))
    if as_json:
        print_json([views.checkpoint_json(c) for c in found])
    elif not found:
        note("no checkpoints")
    else:
        table(["checkpoint", "branch", "step", "created"],
              [[c.name, c.branch, str(c.point), when(c.created_at)] for c in found])
    return exit_codes.SUCCESS


def checkpoint_command(store: str | None, run_id: str, name: str) -> int:
    made = reading(store, lambda runs: runs.checkpoint(run_id, name))
    note(f"checkpoint '{made.name}' is step {made.point} of branch '{made.branch}'")
    return exit_codes.SUCCESS


def resume_command(store: str | None, run_id: str, *, machine_file: Path | None, llm_options: list[str],
                   as_json: bool, quiet: bool, log_steps: bool, stream: bool, breaks: Sequence[str] = (),
                   watches: Sequence[str] = (), step: bool = False) -> int:
    overrides = parse_llm_options(llm_options)
    observers = debug_observers(progress_observers(quiet=quiet, log_steps=log_steps, stream=stream, live=not step),
                                watches)
    stepper = stepping(drive(operations.stored_machine(store, run_id, machine_file))) if step else None
    if stepper is not None:
        observers.append(stepper)
    with interruptible(store, run_id, as_json=as_json):
        try:
            result = drive(operations.resume_run(store, run_id, machine_file=machine_file, llms=overrides,
                                                 observers=observers, breakpoints=breaks))
        finally:
            if stepper is not None and stepper.added:
                drive(operations.keep_breakpoints(store, run_id, stepper.added))
    return finish(result, as_json=as_json, store_option=store)


def send_command(store: str | None, run_id: str, event: str, data_text: str | None, *, resume: bool,
                 as_json: bool, quiet: bool, log_steps: bool, stream: bool) -> int:
    data = parse_event_data(data_text)  # refused before the store is touched
    with interruptible(store, run_id, as_json=as_json):
        outcome = drive(operations.send_event(store, run_id, event, data, resume=resume,
                                                    observers=progress_observers(quiet=quiet, log_steps=log_steps, stream=stream)))
    if not isinstance(outcome, operations.EventRecorded):
        return finish(outcome, as_json=as_json, store_option=store)
    if as_json:
        print_json(views.event_recorded_json(outcome.run_id, outcome.event, outcome.status))
    else:
        note(f"event '{event}' recorded for run {outcome.run_id}; "
             f"it continues with: agentfsm resume {outcome.run_id}{store_hint(store)} (or a worker)")
    return exit_codes.SUCCESS


def rollback_command(store: str | None, run_id: str, target: str, *, branch: str | None, resume: bool,
                     as_json: bool, quiet: bool, log_steps: bool, stream: bool) -> int:
    with interruptible(store, run_id, as_json=as_json):
        made, result = drive(operations.rollback_run(
            store, run_id, target, branch=branch, resume=resume, observers=progress_observers(quiet=quiet, log_steps=log_steps, stream=stream),
            on_rolled_back=_say_rolled_back))
    if result is not None:
        return finish(result, as_json=as_json, store_option=store)
    if as_json:
        print_json(views.rollback_json(made))
    else:
        note(f"continue with: agentfsm resume {made.run_id}{store_hint(store)}")
    return exit_codes.SUCCESS


def _say_rolled_back(made: Rollback) -> None:
    note(f"run {made.run_id}: branch '{made.branch}' starts at step {made.point} (state '{made.state}') "
         "and is now the head")


def diff_command(store: str | None, run_id: str, a: str, b: str, *, as_json: bool) -> int:
    found: RunDiff = reading(store, lambda runs: runs.diff(run_id, a, b))
    if as_json:
        print_json(views.diff_json(found))
        return exit_codes.SUCCESS
    for label, side in (("a", found.a), ("b", found.b)):
        say(f"{label}: {side['point']} = step {side['step']} of branch '{side['branch']}', "
                   f"state {side['state'] or '(end)'}")
    for key, value in found.added.items():
        say(f"+ {key}: {_json(value)}")
    for key, value in found.removed.items():
        say(f"- {key}: {_json(value)}")
    for key, change in found.changed.items():
        say(f"~ {key}: {_json(change['old'])} -> {_json(change['new'])}")
    if found.same:
        say("(the context is the same at both points)")
    if found.fork is not None:
        say(f"a and b part after step {found.fork['step'] - 1} of branch '{found.fork['branch']}'")
        _echo_steps("undone (from there to a):", found.undone, branches=True)
        _echo_steps("taken (from there to b):", found.transitions, branches=True)
    else:
        _echo_steps("undone (b comes before a: going back from a to b):", found.undone, branches=False)
        _echo_steps("transitions:", found.transitions, branches=False)
    return exit_codes.SUCCESS


def _json(value: Any) -> str:
    return json_text(value)


def _echo_steps(title: str, steps: list[dict[str, Any]], *, branches: bool) -> None:
    if not steps:
        return
    say(title)
    for step in steps:
        where = f"{step['branch']}@{step['step']}" if branches else str(step["step"])
        say(f"  {where}: {step['state'] or '(start)'} --{step['event']}--> {step['next_state'] or '(end)'}")


def cancel_command(store: str | None, run_id: str) -> int:
    run = reading(store, lambda runs: runs.cancel(run_id))
    note(f"run {run.id} cancelled")
    return exit_codes.SUCCESS


def prune_command(store: str | None, *, older_than: str | None, keep_last: int | None, statuses: list[str],
                  dry_run: bool, as_json: bool) -> int:
    for status in statuses:
        _check_status(status)
    seconds = parse_age(older_than)
    if keep_last is not None and keep_last < 0:
        raise InputError("--keep-last must be 0 or more")
    doomed = reading(store, lambda runs: runs.prune(older_than=seconds, keep_last=keep_last, statuses=statuses,
                                                    dry_run=dry_run))
    now = time.time()
    if as_json:
        print_json(views.prune_json(doomed, dry_run=dry_run, now=now))
        return exit_codes.SUCCESS
    _runs_table(doomed, now)
    note(f"{'would delete' if dry_run else 'deleted'} {len(doomed)} run(s)")
    return exit_codes.SUCCESS
