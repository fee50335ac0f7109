"""`agentfsm test`, `replay`, `fork`, `record`: parse, call the application layer (`agentfsm.service.tests`), render.

Registered on the app by `app.py` (imported at its end)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.app import (
    QuietOption,
    RunArgument,
    RunJsonOption,
    NoStreamOption,
    StoreOption,
    _driving,
    _options,
    _quiet,
    command,
)
from agentfsm.cli.render import note


@command(name="test")
def test_machines(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[PATHS]...", help="Test files (*.test.yaml) or folders holding them (default: .).",
                       show_default=False),
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", metavar="FILE", help="Write JUnit XML here.")] = None,
    coverage: Annotated[
        Path | None, typer.Option("--coverage", metavar="REPORT",
                                  help="Print which states and transitions the cases took; write the JSON report "
                                       "(for agentfsm diagram FILE --coverage REPORT).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report instead of text.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N", help="Cases running at once.")] = 32,
    update: Annotated[
        bool, typer.Option("--update", help="Rewrite the expectations of failed cases from what their runs did "
                                            "(asks first, on a terminal).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="With --update: do not ask.")] = False,
) -> None:
    """Run machine tests (*.test.yaml): exit 0 when every case passes, 1 when one fails, 2 for a bad file."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = test_command(paths or [Path(".")], junit=junit, coverage=coverage, as_json=as_json, jobs=jobs,
                            update=update, yes=yes)
    raise typer.Exit(code)


def _write(path: Path, data: bytes) -> None:
    from agentfsm.service.errors import InputError

    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


def test_command(paths: list[Path], *, junit: Path | None, coverage: Path | None, as_json: bool, jobs: int,
                 update: bool = False, yes: bool = False) -> int:
    from agentfsm.service.errors import InputError
    from agentfsm.service.tests import run_tests

    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    run = asyncio.run(run_tests(paths, jobs=jobs))
    if not run.results:
        raise InputError(f"no test files (*.test.yaml) under {', '.join(map(str, paths))}")
    if as_json:
        typer.echo(json.dumps(run.as_json(), ensure_ascii=False, default=str))
    else:
        sys.stdout.write(run.text(coverage=coverage is not None))
    if junit is not None:
        _write(junit, run.junit())
        note(f"wrote {junit}")
    if coverage is not None:
        _write(coverage, (json.dumps(run.coverage(), indent=2) + "\n").encode("utf-8"))
        note(f"wrote {coverage}")
    if any(result.problems for result in run.results):
        return exit_codes.BAD_INPUT
    if update and not run.ok:
        return _update(run, yes=yes)
    return exit_codes.SUCCESS if run.ok else exit_codes.RUN_FAILED


def _update(run: object, *, yes: bool) -> int:
    """Rewrite failed cases' expectations, once the person at the terminal agrees (or gave --yes)."""
    from agentfsm.service.errors import InputError
    from agentfsm.service.tests import write_updates

    updates = run.updates()  # type: ignore[attr-defined]
    for planned in updates:
        note(f"{planned.path}: would rewrite the expectations of {len(planned.cases)} case(s): "
             + ", ".join(planned.cases))
        for name in planned.kept_guards:
            note(f"  {name}: its output_when guard is kept as written (a guard is not computed from a value)")
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("--update rewrites test files and asks first on a terminal; add --yes to skip asking")
        if not typer.confirm("Rewrite them?", default=False, err=True):
            note("nothing rewritten")
            return exit_codes.RUN_FAILED
    write_updates(updates)
    note(f"rewrote {len(updates)} file(s); run agentfsm test again to check them")
    return exit_codes.SUCCESS


@command()
def replay(
    run_id: RunArgument,
    machine: Annotated[
        Path | None, typer.Option("--machine", metavar="FILE",
                                  help="Replay against this (edited) machine file instead of the recorded one.")
    ] = None,
    from_point: Annotated[
        str | None, typer.Option("--from", metavar="POINT",
                                 help="Start at this point (step number, checkpoint, state:NAME) instead of the start.")
    ] = None,
    live: Annotated[
        list[str] | None, typer.Option("--live", metavar="NAME", help="This binding calls its real provider or tool.")
    ] = None,
    llm_options: Annotated[
        list[str] | None, typer.Option("--llm", metavar="NAME=PROVIDER:MODEL", help="Switch a --live LLM binding.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    store: StoreOption = None,
) -> None:
    """Run a recorded run again offline, its LLM and tool calls served from the recording: exit 0 when it took
    the same path to the same output, 1 at the first divergence (shown with a diff)."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = replay_command(store, run_id, machine=machine, from_point=from_point, live=live or [],
                              llm_options=llm_options or [], as_json=as_json)
    raise typer.Exit(code)


def replay_command(store: str | None, run_id: str, *, machine: Path | None, from_point: str | None,
                   live: list[str], llm_options: list[str], as_json: bool) -> int:
    from agentfsm.service.inputs import parse_llm_options
    from agentfsm.service.replays import replay as replay_run

    llms = parse_llm_options(llm_options)
    result = asyncio.run(replay_run(store, run_id, machine_file=machine, from_point=from_point, live=live,
                                    llms=llms))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, default=str))
        return exit_codes.SUCCESS if result.identical else exit_codes.RUN_FAILED
    served = f"{result.served['llm']} LLM and {result.served['tool']} tool call(s) served from the recording"
    if result.live:
        served += f", {result.live} binding(s) live"
    divergence = result.divergence
    if divergence is None:
        typer.echo(f"run {result.run_id}: identical ({result.steps} steps; {served})")
        return exit_codes.SUCCESS
    where = f"step {divergence.step}" + (f", state '{divergence.state}'" if divergence.state else "")
    typer.echo(f"run {result.run_id}: diverged at {where}: {divergence.what}")
    if divergence.diff:
        typer.echo(divergence.diff)
    note(served)
    return exit_codes.RUN_FAILED


@command()
def fork(
    run_id: RunArgument,
    at: Annotated[str, typer.Option("--at", metavar="POINT",
                                    help="A step number, checkpoint, state:NAME: the new branch starts there.")],
    branch: Annotated[str | None, typer.Option("--branch", metavar="NAME",
                                               help="Name the new branch (default: rollback-N).")] = None,
    llm_options: Annotated[
        list[str] | None, typer.Option("--llm", metavar="NAME=PROVIDER:MODEL", help="Switch an LLM binding.")
    ] = None,
    as_json: RunJsonOption = False,
    quiet: QuietOption = False,
    no_stream: NoStreamOption = False,
    store: StoreOption = None,
) -> None:
    """Start a new branch at a point and run on from there live: the steps before it (and their LLM calls) are
    the recording's, never paid for again."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = fork_command(store, run_id, at, branch=branch, llm_options=llm_options or [], as_json=as_json,
                            quiet=_quiet(quiet), stream=not no_stream, **_driving())
    raise typer.Exit(code)


def fork_command(store: str | None, run_id: str, at: str, *, branch: str | None, llm_options: list[str],
                 as_json: bool, quiet: bool, stream: bool, log_steps: bool) -> int:
    from agentfsm.cli.commands import interruptible, progress_observers
    from agentfsm.cli.outcome import finish
    from agentfsm.cli.process import drive
    from agentfsm.cli.run_commands import _say_rolled_back
    from agentfsm.service import operations
    from agentfsm.service.inputs import parse_llm_options

    llms = parse_llm_options(llm_options)
    with interruptible(store, run_id, as_json=as_json):
        _, result = drive(operations.rollback_run(
            store, run_id, at, branch=branch, resume=True, llms=llms, on_rolled_back=_say_rolled_back,
            observers=progress_observers(quiet=quiet, log_steps=log_steps, stream=stream)))
    assert result is not None
    return finish(result, as_json=as_json, store_option=store)


@command()
def record(
    run_id: RunArgument,
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="The test file to write.")],
    machine: Annotated[
        Path | None, typer.Option("--machine", metavar="FILE", help="The machine file the case names "
                                                                    "(default: the one the run started from).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Turn a recorded run into a test case (*.test.yaml): its inputs, its calls as replies and stubs, its path
    and output as expectations."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        from agentfsm.service.replays import record_case

        written = asyncio.run(record_case(store, run_id, output, machine_file=machine))
        note(f"wrote {written}; run it with: agentfsm test {written}")
    raise typer.Exit(exit_codes.SUCCESS)
