"""The commands of many processes and stores: `submit` (queue runs), `worker` (claim and advance them), `workers`,
`store copy` (move runs between stores)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.process import drive
from agentfsm.cli.render import note, print_json, table, when
from agentfsm.service import operations, views
from agentfsm.service.errors import InputError
from agentfsm.service.runs import RunResult
from agentfsm.service.stores import open_runs

LIVE_WITHIN = 15.0
"""`workers` lists the workers heard from in the last 15 s (three heartbeats)."""


def submit_command(file: Path, input_pairs: list[str], inputs_file: Path | None, batch_file: Path | None,
                   llm_options: list[str], *, as_json: bool, store: str | None) -> int:
    """Check the machine and every run's inputs first (a bad line records nothing), then queue the runs."""
    from agentfsm.service.inputs import collect_inputs, given_inputs, parse_llm_options, read_batch
    from agentfsm.service.machines import load_machine

    overrides = parse_llm_options(llm_options)
    machine = load_machine(file, llms=overrides)
    if batch_file is None:
        batch = [collect_inputs(machine, input_pairs, inputs_file)]
    else:
        common = given_inputs(machine, input_pairs, inputs_file)
        batch = read_batch(machine, batch_file, common)
    ids = drive(operations.submit_runs(store, machine, batch, llms=overrides))
    if as_json:
        print_json(ids)
    else:
        for run_id in ids:
            typer.echo(run_id)
        note(f"queued {len(ids)} run(s) of {machine.name}: a worker runs them (agentfsm worker)")
    return exit_codes.SUCCESS


def worker_command(store: str | None, *, once: bool, interval: float, concurrency: int, machine: str | None,
                   quiet: bool) -> int:
    """Ctrl-C or SIGTERM (the documented way to stop a worker) ends it cleanly: `worker stopped`, exit 0.

    A run that could not be resumed is reported once, by the worker's warning (which says why); with
    `--once` such a run makes the exit code 1."""
    from agentfsm.service.worker import work, work_once

    def report(result: RunResult) -> None:
        if not quiet:
            note(f"run {result.run_id}: {result.status} after {result.steps} steps")

    def store_down(reason: str) -> None:
        note(f"worker: the store cannot be used now ({reason}); trying again")

    if concurrency < 1 or interval <= 0:
        raise InputError("--concurrency must be 1 or more and --interval more than 0")
    from agentfsm.cli.commands import progress_observers

    watching = progress_observers(quiet=True, log_steps=False, stream=False)  # the logs' run context, --otel

    async def go() -> Any:
        async with open_runs(store, create=True) as runs:
            def announce() -> None:
                if not quiet and not once:
                    wakeups = "wake-ups on LISTEN/NOTIFY, " if runs.store.backend.listener() is not None else ""
                    only = f" of machine {machine}" if machine else ""
                    note(f"worker on {runs.store.url}: {concurrency} runs{only} at a time, {wakeups}"
                         f"polling every {interval:g}s (Ctrl-C or SIGTERM stops it)")

            if once:
                passing = work_once(runs, concurrency=concurrency, on_result=report, machine=machine,
                                    observers=watching)
            else:
                passing = work(runs, interval=interval, concurrency=concurrency, on_result=report, machine=machine,
                               on_store_error=store_down, observers=watching)
            return await _until_stopped(passing, announce)

    try:
        done = drive(go())
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were set, or where there are none (Windows)
        done = None
    if done is None:
        if not quiet:
            note("worker stopped")
        return exit_codes.SUCCESS
    return exit_codes.RUN_FAILED if once and done.failed else exit_codes.SUCCESS


def workers_command(store: str | None, *, as_json: bool) -> int:
    """Live workers: host, pid, runs held, last heartbeat."""
    found = asyncio.run(operations.list_workers(store, within=LIVE_WITHIN))
    now = time.time()
    if as_json:
        print_json([views.worker_json(view, now) for view in found])
        return exit_codes.SUCCESS
    if not found:
        note("no live workers")
        return exit_codes.SUCCESS
    table(["host", "pid", "runs held", "concurrency", "machine", "started", "last heartbeat"],
          [[view.row.host, str(view.row.pid), str(view.held), str(view.row.concurrency), view.row.machine or "*",
            when(view.row.started_at), f"{max(0.0, now - view.row.heartbeat_at):.0f}s ago"] for view in found])
    return exit_codes.SUCCESS


def store_copy_command(source: str, target: str, *, as_json: bool) -> int:
    from agentfsm.service.urls import mask_url

    report = asyncio.run(operations.copy_runs(source, target))
    if as_json:
        print_json({"runs": report.runs, "steps": report.steps, "events": report.events, "verified": report.verified})
    else:
        note(f"copied {report.runs} run(s), {report.steps} step(s), {report.events} event(s) from {mask_url(source)} "
             f"to {mask_url(target)}; both stores read back the same")
    return exit_codes.SUCCESS


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
