"""How the CLI writes: one-line errors, JSON on one line, aligned tables that stay one line per row, local times."""

from __future__ import annotations

import datetime
import json
import math
import shlex
from typing import Any

import typer


def say_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def note(message: str) -> None:
    """A line for the person at the terminal, on stderr: stdout keeps what scripts read."""
    typer.echo(message, err=True)


def json_safe(value: Any) -> Any:
    """The value with non-finite floats (which JSON cannot hold) written as text: "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def print_json(value: Any, *, indent: int | None = None) -> None:
    typer.echo(json.dumps(json_safe(value), ensure_ascii=False, default=str, allow_nan=False, indent=indent))


def print_output(output: Any) -> None:
    if output is None:
        return
    if isinstance(output, str):
        typer.echo(output)
    else:
        print_json(output, indent=2)


def when(timestamp: float | None) -> str:
    """A stored time, in local time, short enough for a table column (`--json` keeps the epoch seconds)."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def store_hint(store_option: str | None) -> str:
    """` --store URL` to repeat in a suggested command, when the store was not the default one."""
    return f" --store {shlex.quote(store_option)}" if store_option else ""


def _cell(text: str) -> str:
    """One line per row, whatever a value holds (an error message with newlines), so `grep` sees whole rows."""
    return " ".join(text.split("\n")).replace("\r", " ").replace("\t", " ")


def table(columns: list[str], rows: list[list[str]]) -> None:
    """Aligned columns two spaces apart, never wrapped nor padded at the end of a line: piped into grep, cut
    or a file, a row stays one line however long its cells are."""
    from rich.cells import cell_len  # the width a terminal gives a cell (wide CJK characters count 2)

    lines = [columns, *([_cell(cell) for cell in row] for row in rows)]
    widths = [max(cell_len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        padded = [cell + " " * (width - cell_len(cell)) for cell, width in zip(line, widths, strict=True)]
        typer.echo("  ".join(padded).rstrip())
