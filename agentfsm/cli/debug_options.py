"""The debugging options `run` and `resume` take (`--break`, `--watch`, `--step`), declared once: app.py stays a list of commands."""

from __future__ import annotations

from typing import Annotated

import typer

BreakOption = Annotated[
    list[str] | None,
    typer.Option("--break", metavar="STATE[:GUARD]",
                 help="Pause before entering STATE (only when GUARD, an expression over the context, holds); "
                      "kept with the run. Repeatable."),
]
WatchOption = Annotated[
    list[str] | None,
    typer.Option("--watch", metavar="EXPR",
                 help="Print EXPR (a context key, a dotted path or an expression) whenever its value changes, with "
                      "the step and state. Repeatable."),
]
StepOption = Annotated[
    bool,
    typer.Option("--step", help="On a terminal: before each state, ask what to do (step, continue, show the "
                                "context or the last LLM exchange, set a value, add a breakpoint, quit)."),
]
