"""`agentfsm submit`, `worker`, `workers`, `store copy`: the queue and moving stores; they parse, call
`agentfsm.cli.queue_commands`, and exit with its code.

Registered on the app by `app.py` (imported at its end)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentfsm.cli import usage
from agentfsm.cli.app import (
    InputPairsOption,
    InputsFileOption,
    JsonOption,
    MachineFileArgument,
    QuietOption,
    StoreOption,
    _options,
    _quiet,
    app,
    command,
)


@command()
def submit(
    file: MachineFileArgument,
    input_pairs: InputPairsOption = None,
    inputs_file: InputsFileOption = None,
    batch_file: Annotated[
        Path | None, typer.Option("--batch", metavar="FILE.jsonl",
                                  help="One run per line: a JSON object of inputs (over -i and --inputs).")
    ] = None,
    llm_options: Annotated[
        list[str] | None, typer.Option("--llm", metavar="NAME=PROVIDER:MODEL", help="Switch an LLM binding.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run ids as a JSON list.")] = False,
    store: StoreOption = None,
) -> None:
    """Queue runs of a machine without running them; print their ids (a worker runs them)."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.queue_commands import submit_command

    with guarded(_options["debug"]):
        code = submit_command(file, input_pairs or [], inputs_file, batch_file, llm_options or [], as_json=as_json,
                              store=store)
    raise typer.Exit(code)


@command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="One pass over the store, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", metavar="SECONDS",
                                            help="Polling interval (timers; stores without wake-ups).")] = 1.0,
    concurrency: Annotated[int, typer.Option("--concurrency", metavar="N", help="Runs advanced at once.")] = 16,
    machine: Annotated[str | None, typer.Option("--machine", metavar="NAME",
                                                help="Only runs of this machine (its name).")] = None,
    quiet: QuietOption = False,
    store: StoreOption = None,
) -> None:
    """Claim and advance queued runs, runs with a delivered event or a due timer, and dead owners' runs."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.queue_commands import worker_command

    with guarded(_options["debug"]):
        code = worker_command(store, once=once, interval=interval, concurrency=concurrency, machine=machine,
                              quiet=_quiet(quiet))
    raise typer.Exit(code)


@command()
def workers(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """List live workers: host, pid, runs held, last heartbeat."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.queue_commands import workers_command

    with guarded(_options["debug"]):
        code = workers_command(store, as_json=as_json)
    raise typer.Exit(code)


store_commands = typer.Typer(cls=usage.PlainGroup, no_args_is_help=True, add_completion=False,
                              rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(store_commands, name="store", help="Move runs between stores.")


@store_commands.command("copy", cls=usage.PlainCommand)
def store_copy(
    source: Annotated[str, typer.Argument(metavar="SRC", help="The store to copy from (a URL or a path).",
                                          show_default=False)],
    target: Annotated[str, typer.Argument(metavar="DST", help="The store to copy into (made if needed).",
                                          show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print {runs, steps, events, verified}.")] = False,
) -> None:
    """Copy every run (steps, branches, checkpoints, events) from SRC to DST, then check both read back the same."""
    from agentfsm.cli.commands import guarded
    from agentfsm.cli.queue_commands import store_copy_command

    with guarded(_options["debug"]):
        code = store_copy_command(source, target, as_json=as_json)
    raise typer.Exit(code)
