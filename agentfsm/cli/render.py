"""How the CLI writes: one-line errors, JSON on one line, aligned tables that stay one line per row, local times."""

from __future__ import annotations

import datetime
import json
import math
import shlex
import sys
from typing import Any

import typer

from agentfsm.observability.terminal import json_visible, visible, visible_lines
from agentfsm.service.urls import mask_url

# Anything printed for a person may quote data (an event name from an LLM reply, a tool's output in an error):
# its control characters are written as escapes (`\x1b`), never sent raw to the terminal.


def say_error(message: str) -> None:
    typer.echo(f"error: {visible(message)}", err=True)


def note(message: str) -> None:
    """A line for the person at the terminal, on stderr: stdout keeps what scripts read."""
    typer.echo(visible_lines(message), err=True)


def say(text: str) -> None:
    """A line for a person on stdout, control characters made visible."""
    typer.echo(visible(text))


def json_safe(value: Any) -> Any:
    """The value with non-finite floats (which JSON cannot hold) written as text: "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def json_text(value: Any, *, indent: int | None = None) -> str:
    """JSON as the CLI prints it: non-ASCII text as is, except the control characters JSON would leave raw
    (C1, DEL, bidirectional marks; json escapes C0 itself), written as `\\u` escapes: the same JSON value."""
    return json_visible(json.dumps(json_safe(value), ensure_ascii=False, default=str, allow_nan=False, indent=indent))


def print_json(value: Any, *, indent: int | None = None) -> None:
    typer.echo(json_text(value, indent=indent))


def print_output(output: Any) -> None:
    """A run's output: text as it is for scripts, its control characters made visible on a terminal."""
    if output is None:
        return
    if isinstance(output, str):
        typer.echo(visible_lines(output) if _is_terminal(sys.stdout) else output)
    else:
        print_json(output, indent=2)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def when(timestamp: float | None) -> str:
    """A stored time, in local time, short enough for a table column (`--json` keeps the epoch seconds)."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def store_hint(store_option: str | None) -> str:
    """` --store URL` to repeat in a suggested command, when the store was not the default one (its password
    masked: a password is never printed; PGPASSWORD or ~/.pgpass keep it out of the URL)."""
    return f" --store {shlex.quote(mask_url(store_option))}" if store_option else ""


def _cell(text: str) -> str:
    """One line per row, whatever a value holds (an error message with newlines, an escape sequence), so `grep`
    sees whole rows and the terminal shows what the data holds."""
    return visible(text)


def _width(cell: str) -> int:
    """The width a terminal gives a cell (wide CJK characters count 2)."""
    if cell.isascii():
        return len(cell)
    from rich.cells import cell_len

    return cell_len(cell)


def table(columns: list[str], rows: list[list[str]]) -> None:
    """Aligned columns two spaces apart, never wrapped nor padded at the end of a line: piped into grep, cut
    or a file, a row stays one line however long its cells are."""
    printer = TablePrinter(columns)
    for row in rows:
        printer.add(row)
    printer.end()


class TablePrinter:
    """A `table` printed as its rows come, `page` rows at a time when `page` is given (a long table streams
    instead of being held whole): each page is aligned on its rows and those before it, so a column may
    widen from one page to the next, never narrow."""

    def __init__(self, columns: list[str], *, page: int | None = None) -> None:
        self.widths = [0] * len(columns)
        self.page = page
        self.waiting: list[list[str]] = [columns]

    def add(self, row: list[str]) -> None:
        self.waiting.append([_cell(cell) for cell in row])
        if self.page is not None and len(self.waiting) >= self.page:
            self.end()

    def end(self) -> None:
        """Print the rows still waiting."""
        widths = self.widths
        measured = [[(cell, _width(cell)) for cell in line] for line in self.waiting]
        for line in measured:
            for index, (_, width) in enumerate(line):
                widths[index] = max(widths[index], width)
        if measured:
            typer.echo("\n".join("  ".join([cell + " " * (widths[index] - width)
                                             for index, (cell, width) in enumerate(line)]).rstrip()
                                  for line in measured))
        self.waiting.clear()


class JSONListPrinter:
    """A JSON list printed an item at a time, exactly as `print_json` prints the whole list (one line)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, value: Any) -> None:
        sys.stdout.write(("[" if not self.count else ", ") + json_text(value))
        self.count += 1

    def end(self) -> None:
        sys.stdout.write("]\n" if self.count else "[]\n")
        sys.stdout.flush()
