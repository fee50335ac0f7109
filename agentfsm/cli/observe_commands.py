"""`agentfsm trace`, `show`, `branches`, `switch`, `inspect`: parse, call the application layer, render.

Registered on the app by `app.py` (imported at its end)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.app import JsonOption, RunArgument, StoreOption, _options, command
from agentfsm.cli.render import json_text


@command()
def trace(
    run_id: RunArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as one JSON list.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Print one JSON entry per line.")] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write to this file instead of stdout.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing as the run advances (from any "
                                                                "process sharing the store) until it stops.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Write LLM requests and replies, tool arguments "
                                                                  "and results out whole under their line.")] = False,
    store: StoreOption = None,
) -> None:
    """Show a run's trace, one line per entry: states, transitions, LLM and tool calls, errors."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = trace_command(store, run_id, as_json=as_json, jsonl=jsonl, output=output, follow=follow,
                             verbose=verbose)
    raise typer.Exit(code)


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)
"""Made once: `json.dumps` with options makes an encoder per call, a third of the time of a long trace."""


def entries_json(entries: list[dict[str, Any]], separator: str) -> str:
    """Entries as JSON texts joined by `separator`, as `json_text` writes each (its quick path: entries are
    JSON already; a non-finite number falls back to it)."""
    from agentfsm.observability.terminal import json_visible

    try:
        if separator == ", ":  # a list's own separator: the page encoded in one call
            return json_visible(_ENCODER.encode(entries)[1:-1])
        return json_visible(separator.join(map(_ENCODER.encode, entries)))
    except ValueError:
        return separator.join(map(json_text, entries))


class TraceWriter:
    """Writes entries as they come: a timeline, a JSON list, or JSON lines; flushed at once when following."""

    def __init__(self, out: TextIO, form: str, *, verbose: bool, flush: bool) -> None:
        self.out, self.form, self.verbose, self.flush = out, form, verbose, flush
        self.count = 0

    def add(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        if self.form == "json":
            text = ("[" if not self.count else ", ") + entries_json(entries, ", ")
        elif self.form == "jsonl":
            text = entries_json(entries, "\n") + "\n"
        else:
            from agentfsm.cli.timeline import timeline_line, unfolded

            lines: list[str] = []
            for entry in entries:
                lines.append(timeline_line(entry))
                if self.verbose:
                    lines.extend(unfolded(entry))
            text = "\n".join(lines) + "\n"
        self.out.write(text)
        self.count += len(entries)
        if self.flush:
            self.out.flush()

    def end(self) -> None:
        if self.form == "json":
            self.out.write("]\n" if self.count else "[]\n")
        self.out.flush()


@contextmanager
def opened_output(path: Path | None) -> Iterator[TextIO]:
    """stdout, or the file `-o` names (made or emptied); a file that cannot be written is bad input (exit 2)."""
    if path is None:
        yield sys.stdout
        return
    from agentfsm.service.errors import InputError

    try:
        out = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    with out:
        yield out


def trace_command(store: str | None, run_id: str, *, as_json: bool, jsonl: bool, output: Path | None,
                  follow: bool, verbose: bool) -> int:
    from agentfsm.cli.render import note
    from agentfsm.cli.run_commands import reading
    from agentfsm.service.errors import InputError
    from agentfsm.service.runs import Runs

    if as_json and jsonl:
        raise InputError("--json and --jsonl: choose one")
    form = "json" if as_json else "jsonl" if jsonl else "text"

    async def work(runs: Runs) -> None:
        run = await runs.get(run_id)  # an unknown run is refused before -o makes a file
        with opened_output(output) as out:
            writer = TraceWriter(out, form, verbose=verbose, flush=follow)
            if follow:
                async for entry in runs.follow_trace(run.id):
                    writer.add([entry])
            else:
                async for page in runs.trace_pages(run.id):
                    writer.add(page)
            writer.end()
        if form == "text" and not writer.count:
            note(f"run {run.id} has no trace (it was recorded without one)")
        elif output is not None:
            note(f"wrote {writer.count} entries to {output}")

    reading(store, work)
    return exit_codes.SUCCESS


PointArgument = Annotated[str, typer.Argument(
    metavar="POINT", help="A step number (just before that step), a checkpoint name, state:NAME (just before its "
                          "latest visit), start, head; BRANCH@POINT on another branch.", show_default=False)]


@command()
def show(run_id: RunArgument, point: PointArgument,
         as_json: Annotated[bool, typer.Option("--json", help="Print {run_id, point, branch, step, state, context, "
                                                              "visits} on one line.")] = False,
         store: StoreOption = None) -> None:
    """Print the whole context of a run at a point (a step, a checkpoint, state:NAME)."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = show_command(store, run_id, point, as_json=as_json)
    raise typer.Exit(code)


def show_command(store: str | None, run_id: str, point: str, *, as_json: bool) -> int:
    from agentfsm.cli.render import note, print_json
    from agentfsm.cli.run_commands import reading
    from agentfsm.service import views
    from agentfsm.service.inspection import context_at

    at = reading(store, lambda runs: context_at(runs, run_id, point))
    if as_json:
        print_json(views.point_context_json(at))
        return exit_codes.SUCCESS
    about = f"state {at.state} about to run" if at.state else "the run had ended"
    note(f"run {at.run_id}, branch {at.branch}, {at.label}: just before step {at.point} ({about})")
    print_json(at.context, indent=2)
    return exit_codes.SUCCESS


@command()
def branches(run_id: RunArgument, as_json: JsonOption = False, store: StoreOption = None) -> None:
    """List a run's branches: fork point, newest step, status; the head is marked."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = branches_command(store, run_id, as_json=as_json)
    raise typer.Exit(code)


def branches_command(store: str | None, run_id: str, *, as_json: bool) -> int:
    from agentfsm.cli.render import print_json, table, when
    from agentfsm.cli.run_commands import reading
    from agentfsm.service import views
    from agentfsm.service.inspection import branch_list

    found = reading(store, lambda runs: branch_list(runs, run_id))
    if as_json:
        print_json([views.branch_json(branch) for branch in found])
        return exit_codes.SUCCESS
    table(["branch", "from", "last step", "state", "status", "created"],
          [[("* " if b.head else "  ") + b.name, f"{b.parent}@{b.fork}" if b.parent else "-", str(b.last),
            b.state or "(end)", b.status, when(b.created_at)] for b in found])
    return exit_codes.SUCCESS


@command()
def switch(run_id: RunArgument,
           branch: Annotated[str, typer.Argument(metavar="BRANCH", help="The branch to make the head.",
                                                 show_default=False)],
           as_json: Annotated[bool, typer.Option("--json", help="Print the run as `runs --json` lists it.")] = False,
           store: StoreOption = None) -> None:
    """Make another branch of a run its head; the run is paused there (resume continues it) unless it had ended."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = switch_command(store, run_id, branch, as_json=as_json)
    raise typer.Exit(code)


def switch_command(store: str | None, run_id: str, branch: str, *, as_json: bool) -> int:
    import time

    from agentfsm.cli.render import note, print_json, store_hint
    from agentfsm.cli.run_commands import reading
    from agentfsm.service import views

    run = reading(store, lambda runs: runs.switch_branch(run_id, branch))
    if as_json:
        print_json(views.run_json(run, time.time()))
        return exit_codes.SUCCESS
    note(f"run {run.id}: branch '{run.head}' is now the head ({run.status} after step {run.steps})")
    if run.status == "paused":
        note(f"continue with: agentfsm resume {run.id}{store_hint(store)}")
    return exit_codes.SUCCESS


@command()
def inspect(run_id: RunArgument,
            as_json: Annotated[bool, typer.Option("--json", help="Print it all as one JSON object.")] = False,
            store: StoreOption = None) -> None:
    """One screen on a run: where it went and stands, its last error and LLM call, its cost, context, children."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = inspect_command(store, run_id, as_json=as_json)
    raise typer.Exit(code)


def inspect_command(store: str | None, run_id: str, *, as_json: bool) -> int:
    import time

    from agentfsm.cli.inspect_view import render_inspection
    from agentfsm.cli.render import print_json
    from agentfsm.cli.run_commands import reading
    from agentfsm.service import views
    from agentfsm.service.inspection import inspect_run

    shown = views.inspection_json(reading(store, lambda runs: inspect_run(runs, run_id)), time.time())
    if as_json:
        print_json(shown)
    else:
        render_inspection(shown)
    return exit_codes.SUCCESS
