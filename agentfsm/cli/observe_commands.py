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
    """Show a run's trace: one line per entry (state entered, transition, LLM and tool call, error...)."""
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
