"""`agentfsm break`: set, remove or list the breakpoints kept with a stored run (`agentfsm.service.debugging`).

Registered on the app by `app.py` (imported at its end)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.app import JsonOption, RunArgument, StoreOption, _options, command
from agentfsm.cli.render import note, print_json, say


@command(name="break")
def break_(
    run_id: RunArgument,
    state: Annotated[
        str | None, typer.Argument(metavar="STATE[:GUARD]", show_default=False,
                                   help="Pause the run before it enters STATE (when GUARD holds); none: list them.")
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the breakpoint (a state name removes every "
                                                          "breakpoint on that state).")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Set a breakpoint on a stored run (it pauses before entering that state; resume continues), or list them."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = break_command(store, run_id, state, remove=remove, as_json=as_json)
    raise typer.Exit(code)


def break_command(store: str | None, run_id: str, text: str | None, *, remove: bool, as_json: bool) -> int:
    from agentfsm.service import debugging
    from agentfsm.service.errors import InputError
    from agentfsm.service.stores import open_runs

    if text is None and remove:
        raise InputError("break --remove: name the breakpoint (STATE or STATE:GUARD) to remove")

    async def work() -> list[str]:
        async with open_runs(store, create=False) as runs:
            if text is None:
                return await debugging.breakpoints_of(runs, run_id)
            change = debugging.remove_breakpoint if remove else debugging.set_breakpoint
            run = await change(runs, run_id, text)
            note(f"run {run.id}: {'removed' if remove else 'breakpoint'} {text}")
            return await debugging.breakpoints_of(runs, run.id)

    found = asyncio.run(work())
    if as_json:
        print_json(found)
    elif text is None:
        for item in found:
            say(item)
        if not found:
            note("no breakpoints")
    return exit_codes.SUCCESS
