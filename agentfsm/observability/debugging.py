"""What a person debugging a run sees on the terminal: watched values as they change (`--watch`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentfsm.bindings.known_secrets import redact
from agentfsm.observability.terminal import visible
from agentfsm.runtime.events import WatchChanged

SHOWN = 200
"""Characters of a watched value a line shows (the trace keeps it whole)."""


def shown_value(value: Any, limit: int = SHOWN) -> str:
    """A value as one line: compact JSON (text as is quoted), cut at `limit`, secrets and control characters out."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    except ValueError:  # a circular structure
        text = repr(value)
    text = visible(redact(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def watch_line(event: WatchChanged) -> str:
    """`watch attempts = 2  (step 4, acting)`; a value not readable yet says why."""
    where = f"step {event.step}, {event.state}" if event.state is not None else f"step {event.step}"
    if event.error is not None:
        return f"watch {visible(event.name)}: cannot be read ({visible(redact(event.error))})  ({where})"
    return f"watch {visible(event.name)} = {shown_value(event.value)}  ({where})"


class WatchPrinter:
    """An observer writing each watched value that changed, one line each, through `write` (the progress display's
    permanent lines, so a live line is never torn)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def on_watch(self, *, event: WatchChanged) -> None:
        self.write(watch_line(event))
