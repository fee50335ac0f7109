"""The debugging options `run` and `resume` take (`--break`), declared once: app.py stays a list of commands."""

from __future__ import annotations

from typing import Annotated

import typer

BreakOption = Annotated[
    list[str] | None,
    typer.Option("--break", metavar="STATE[:GUARD]",
                 help="Pause before entering STATE (only when GUARD, an expression over the context, holds); "
                      "kept with the run. Repeatable."),
]
