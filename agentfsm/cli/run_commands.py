"""What the commands that read or act on stored runs do, over `agentfsm.history.Runs`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.commands import interruptible, progress_observers
from agentfsm.cli.outcome import finish, print_json, store_hint, when
from agentfsm.history import Runs
from agentfsm.history.runs import Rollback
from agentfsm.runtime.loop import RunResult
from agentfsm.spec.durations import parse_duration
from agentfsm.spec.inputs import InputError
from agentfsm.store.base import STATUSES, RunRow, StepRow, StoreError


def _existing(store: str | None) -> str:
    """The store URL, refused when it names no file: only `run` and `worker` create a store, so a mistyped
    --store is an error instead of a new, empty store somewhere."""
    from agentfsm.store import DEFAULT_STORE, store_path

    url = store or f"sqlite:///{DEFAULT_STORE}"  # typer has already read AGENTFSM_STORE into `store`
    path = store_path(url).expanduser()
    if not path.is_file():
        where = "" if store else " (the default store; --store URL or AGENTFSM_STORE picks another)"
        raise StoreError(f"no store at {path.absolute()}{where}: no run was recorded there")
    return url


@contextmanager
def opened(store: str | None, *, create: bool = False) -> Iterator[Runs]:
    from agentfsm.store import open_store

    # an empty file is refused too: a store truncated to nothing is not quietly made a new one
    runs = Runs(store if create else open_store(_existing(store), create=False))
    try:
        yield runs
    finally:
        runs.close()


def _cell(text: str) -> str:
    """One line per row, whatever a value holds (an error message with newlines), so `grep` sees whole rows."""
    return " ".join(text.split("\n")).replace("\r", " ").replace("\t", " ")


def _table(columns: list[str], rows: list[list[str]]) -> None:
    """Aligned columns two spaces apart, never wrapped nor padded at the end of a line: piped into grep, cut
    or a file, a row stays one line however long its cells are."""
    from rich.cells import cell_len  # the width a terminal gives a cell (wide CJK characters count 2)

    lines = [columns, *([_cell(cell) for cell in row] for row in rows)]
    widths = [max(cell_len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        padded = [cell + " " * (width - cell_len(cell)) for cell, width in zip(line, widths, strict=True)]
        typer.echo("  ".join(padded).rstrip())


def _run_json(run: RunRow) -> dict[str, Any]:
    return {"run_id": run.id, "machine": run.machine, "status": run.status, "branch": run.head, "steps": run.steps,
            "created_at": run.created_at, "updated_at": run.updated_at, "waiting": run.waiting,
            "error": run.error, "output": run.output}


def _step_json(row: StepRow) -> dict[str, Any]:
    return {"step": row.step, "branch": row.branch, "state": row.state, "event": row.event,
            "next_state": row.next_state, "started_at": row.started_at, "duration": row.duration,
            "retries": row.retries, "error": row.error}


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InputError(f"--status: '{status}' is not a status ({', '.join(STATUSES)})")


def runs_command(store: str | None, *, status: str | None, machine: str | None, limit: int, as_json: bool) -> int:
    _check_status(status)
    with opened(store) as runs:
        found = runs.list(status=status, machine=machine, limit=limit)
    if as_json:
        print_json([_run_json(run) for run in found])
        return exit_codes.SUCCESS
    if not found:
        typer.echo("no runs", err=True)
        return exit_codes.SUCCESS
    _runs_table(found)
    return exit_codes.SUCCESS


def _runs_table(found: list[RunRow]) -> None:
    _table(["run", "machine", "status", "steps", "branch", "updated"],
           [[run.id, run.machine, run.status, str(run.steps), run.head, when(run.updated_at)] for run in found])


def history_command(store: str | None, run_id: str, *, branch: str | None, as_json: bool) -> int:
    with opened(store) as runs:
        run = runs.get(run_id)
        steps = runs.history(run.id, branch)
    if as_json:
        print_json([_step_json(row) for row in steps])
        return exit_codes.SUCCESS
    # on stderr, like the other notes: stdout stays the table alone
    typer.echo(f"run {run.id}, branch {branch or run.head}", err=True)
    if not steps:
        typer.echo("no steps", err=True)
        return exit_codes.SUCCESS
    rows = []
    for row in steps:
        error = "" if row.error is None else f"{row.error.get('type')}: {row.error.get('message')}"
        rows.append([str(row.step), row.state or "", row.event or "", row.next_state or "(end)",
                     f"{row.duration * 1000:.1f} ms", error])
    _table(["step", "state", "event", "next state", "duration", "error"], rows)
    return exit_codes.SUCCESS


def checkpoints_command(store: str | None, run_id: str, *, as_json: bool) -> int:
    with opened(store) as runs:
        found = runs.checkpoints(run_id)
    if as_json:
        print_json([{"name": c.name, "branch": c.branch, "step": c.point, "created_at": c.created_at} for c in found])
        return exit_codes.SUCCESS
    if not found:
        typer.echo("no checkpoints", err=True)
        return exit_codes.SUCCESS
    _table(["checkpoint", "branch", "step", "created"], [[c.name, c.branch, str(c.point), when(c.created_at)]
                                                        for c in found])
    return exit_codes.SUCCESS


def checkpoint_command(store: str | None, run_id: str, name: str) -> int:
    with opened(store) as runs:
        made = runs.checkpoint(run_id, name)
    typer.echo(f"checkpoint '{made.name}' is step {made.point} of branch '{made.branch}'", err=True)
    return exit_codes.SUCCESS


Drive = Callable[[Runs], Any]


def _drive(store: str | None, run_id: str, drive: Drive, *, as_json: bool, quiet: bool, log_steps: bool,
           stream: bool) -> int:
    """Advance a stored run (resume, send, rollback --resume) and end like `run` does (Ctrl-C included)."""
    def observers_for(machine_name: str) -> list[object]:
        return progress_observers(machine_name, quiet=quiet, log_steps=log_steps, stream=stream)

    with interruptible(store, run_id, as_json=as_json), opened(store) as runs:
        result: RunResult = asyncio.run(drive(runs)(observers_for))
    return finish(result, as_json=as_json, store_option=store)


def resume_command(store: str | None, run_id: str, *, machine_file: Path | None, llm_options: list[str],
                   as_json: bool, quiet: bool, log_steps: bool, stream: bool) -> int:
    from agentfsm.spec.overrides import parse_llm_options

    overrides = parse_llm_options(llm_options)

    def drive(runs: Runs) -> Any:
        async def go(observers_for: Callable[[str], list[object]]) -> RunResult:
            run = runs.get(run_id)
            return await runs.resume(run.id, machine=machine_file, llms=overrides, observers=observers_for(run.machine))
        return go

    return _drive(store, run_id, drive, as_json=as_json, quiet=quiet, log_steps=log_steps, stream=stream)


def parse_event_data(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"--data is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise InputError(f"--data is not JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON has not: the store and other tools could not read them."""
    raise ValueError(f"{name} is not a JSON value")


def send_command(store: str | None, run_id: str, event: str, data_text: str | None, *, resume: bool,
                 as_json: bool, quiet: bool, log_steps: bool, stream: bool) -> int:
    data = parse_event_data(data_text)  # refused before the store is touched
    if not resume:
        return _record_event(store, run_id, event, data, as_json=as_json)

    def drive(runs: Runs) -> Any:
        async def go(observers_for: Callable[[str], list[object]]) -> RunResult:
            run = runs.get(run_id)
            result = await runs.send(run.id, event, data, observers=observers_for(run.machine))
            assert result is not None  # send(resume=True) advances the run
            return result
        return go

    return _drive(store, run_id, drive, as_json=as_json, quiet=quiet, log_steps=log_steps, stream=stream)


def _record_event(store: str | None, run_id: str, event: str, data: Any, *, as_json: bool) -> int:
    """`send --no-resume`: the event is stored for the run; a later `resume` (or a worker) acts on it."""
    with opened(store) as runs:
        run = runs.get(run_id)
        asyncio.run(runs.send(run.id, event, data, resume=False))
        status = runs.get(run.id).status
    if as_json:
        print_json({"run_id": run.id, "event": event, "status": status, "recorded": True})
    else:
        typer.echo(f"event '{event}' recorded for run {run.id}; "
                   f"it continues with: agentfsm resume {run.id}{store_hint(store)} (or a worker)", err=True)
    return exit_codes.SUCCESS


def rollback_command(store: str | None, run_id: str, target: str, *, branch: str | None, resume: bool,
                     as_json: bool, quiet: bool, log_steps: bool, stream: bool) -> int:
    if resume:
        return _rollback_and_resume(store, run_id, target, branch=branch, as_json=as_json, quiet=quiet,
                                    log_steps=log_steps, stream=stream)
    with opened(store) as runs:
        made = runs.rollback(run_id, target, branch=branch)
    _say_rolled_back(made)
    if as_json:
        print_json({"run_id": made.run_id, "branch": made.branch, "step": made.point, "state": made.state})
    else:
        typer.echo(f"continue with: agentfsm resume {made.run_id}{store_hint(store)}", err=True)
    return exit_codes.SUCCESS


def _say_rolled_back(made: Rollback) -> None:
    typer.echo(f"run {made.run_id}: branch '{made.branch}' starts at step {made.point} (state '{made.state}') "
               "and is now the head", err=True)


def _rollback_and_resume(store: str | None, run_id: str, target: str, *, branch: str | None, as_json: bool,
                         quiet: bool, log_steps: bool, stream: bool) -> int:
    def drive(runs: Runs) -> Any:
        async def go(observers_for: Callable[[str], list[object]]) -> RunResult:
            run = runs.get(run_id)
            machine = runs.machine(run.id)  # a run that could not go on is refused before the branch is made
            made = runs.rollback(run.id, target, branch=branch)
            _say_rolled_back(made)
            return await runs.resume(run.id, machine=machine, observers=observers_for(run.machine))
        return go

    return _drive(store, run_id, drive, as_json=as_json, quiet=quiet, log_steps=log_steps, stream=stream)


def diff_command(store: str | None, run_id: str, a: str, b: str, *, as_json: bool) -> int:
    with opened(store) as runs:
        found = runs.diff(run_id, a, b)
    if as_json:
        print_json(found.to_json())
        return exit_codes.SUCCESS
    for label, side in (("a", found.a), ("b", found.b)):
        typer.echo(f"{label}: {side['point']} = step {side['step']} of branch '{side['branch']}', "
                   f"state {side['state'] or '(end)'}")
    for key, value in found.added.items():
        typer.echo(f"+ {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
    for key, value in found.removed.items():
        typer.echo(f"- {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
    for key, change in found.changed.items():
        old = json.dumps(change["old"], ensure_ascii=False, default=str)
        new = json.dumps(change["new"], ensure_ascii=False, default=str)
        typer.echo(f"~ {key}: {old} -> {new}")
    if found.same:
        typer.echo("(the context is the same at both points)")
    if found.fork is not None:
        typer.echo(f"a and b part after step {found.fork['step'] - 1} of branch '{found.fork['branch']}'")
        _echo_steps("undone (from there to a):", found.undone, branches=True)
        _echo_steps("taken (from there to b):", found.transitions, branches=True)
    else:
        _echo_steps("transitions:", found.transitions, branches=False)
    return exit_codes.SUCCESS


def _echo_steps(title: str, steps: list[dict[str, Any]], *, branches: bool) -> None:
    if not steps:
        return
    typer.echo(title)
    for step in steps:
        where = f"{step['branch']}@{step['step']}" if branches else str(step["step"])
        typer.echo(f"  {where}: {step['state']} --{step['event']}--> {step['next_state'] or '(end)'}")


def cancel_command(store: str | None, run_id: str) -> int:
    with opened(store) as runs:
        run = runs.cancel(run_id)
    typer.echo(f"run {run.id} cancelled", err=True)
    return exit_codes.SUCCESS


def prune_command(store: str | None, *, older_than: str | None, keep_last: int | None, statuses: list[str],
                  dry_run: bool, as_json: bool) -> int:
    for status in statuses:
        _check_status(status)
    seconds = None
    if older_than is not None:
        try:  # a bare 0 needs no unit: every matching run, whatever its age
            seconds = 0.0 if older_than.strip() == "0" else parse_duration(older_than)
        except ValueError as exc:
            raise InputError(f"--older-than: {exc}") from None
    if keep_last is not None and keep_last < 0:
        raise InputError("--keep-last must be 0 or more")
    with opened(store) as runs:
        doomed = runs.prune(older_than=seconds, keep_last=keep_last, statuses=statuses, dry_run=dry_run)
    if as_json:
        print_json({"dry_run": dry_run, "runs": [_run_json(run) for run in doomed]})
        return exit_codes.SUCCESS
    _runs_table(doomed)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {len(doomed)} run(s)", err=True)
    return exit_codes.SUCCESS


def worker_command(store: str | None, *, once: bool, interval: float, concurrency: int, quiet: bool) -> int:
    """Ctrl-C or SIGTERM (the documented way to stop a worker) ends it cleanly: `worker stopped`, exit 0.

    A run that could not be resumed is reported once, by the history layer's warning (which says why); with
    `--once` such a run makes the exit code 1."""
    from agentfsm.history.worker import work, work_once

    def report(result: RunResult) -> None:
        if not quiet:
            typer.echo(f"run {result.run_id}: {result.status} after {result.steps} steps", err=True)

    if concurrency < 1 or interval <= 0:
        raise InputError("--concurrency must be 1 or more and --interval more than 0")
    with opened(store, create=True) as runs:
        def announce() -> None:
            if not quiet and not once:
                typer.echo(f"worker on {runs.store.url}: every {interval:g}s, {concurrency} at a time "
                           "(Ctrl-C or SIGTERM stops it)", err=True)

        if once:
            passing = work_once(runs, concurrency=concurrency, on_result=report)
        else:
            passing = work(runs, interval=interval, concurrency=concurrency, on_result=report)
        try:
            done = asyncio.run(_until_stopped(passing, announce))
        except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were set, or where there are none (Windows)
            done = None
    if done is None:
        if not quiet:
            typer.echo("worker stopped", err=True)
        return exit_codes.SUCCESS
    return exit_codes.RUN_FAILED if once and done.failed else exit_codes.SUCCESS


async def _until_stopped(passing: Coroutine[Any, Any, Any], ready: Callable[[], None]) -> Any:
    """Await `passing` (the worker's passes) until SIGINT or SIGTERM; then cancel it and return None.

    Cancelling is what lets the history layer hand back the runs being advanced, so that the next worker
    continues them at once instead of waiting for their leases to expire."""
    import signal

    task = asyncio.ensure_future(passing)
    loop = asyncio.get_running_loop()
    stopped: list[int] = []

    def stop(signum: int) -> None:
        stopped.append(signum)
        task.cancel()

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows; a thread other than the main one
            pass
    ready()  # after the handlers: from here on a signal stops the worker cleanly
    try:
        return await task
    except asyncio.CancelledError:
        if not stopped:  # cancelled from outside, not by a signal: not ours to swallow
            raise
        return None
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
