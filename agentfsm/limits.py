"""Every bound agentfsm puts on what a machine or its data can make it do, in one place.

docs/security.md states each of these numbers; tests/test_security_docs.py checks that it
does. This module imports nothing from agentfsm, so every layer may read it (the template
sandbox in `spec`, the step loop in `runtime`, the bindings that read tool results).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

TEMPLATE_MAX_STEPS = 200_000
"""Loop iterations plus calls (filters, functions, macros) in one render of one template."""
TEMPLATE_MAX_OUTPUT = 10_000_000
"""Characters one render may emit, counting text written into `{% set %}` blocks and macros."""
TEMPLATE_MAX_STRING = 10_000_000
"""Characters in any string a template builds (`~`, `+`, a filter's or a method's result)."""
TEMPLATE_MAX_ITEMS = 1_000_000
"""Items in any list a template builds (`*`, `batch`, `slice`, a filter's result)."""
TEMPLATE_MAX_WORK = 100_000_000
"""Characters and items built in total by one render: what bounds its time when each step is cheap."""
TEMPLATE_MAX_WIDTH = 10_000
"""A format width or precision, a `center`/`indent` width, a `tojson` indent."""
TEMPLATE_MAX_LIPSUM_WORDS = 100_000
"""`lipsum(n, html, min, max)`: at most this many words (n * max)."""

MAX_DURATION_SECONDS = 366 * 86400
"""The longest duration a machine may give (a `timeout`, a retry `interval` or `max_delay`, a wait's `timeout`)."""

_DEADLINE: ContextVar[float | None] = ContextVar("agentfsm_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Work in this context (a state under its `timeout`) must end within `seconds`; renders check it."""
    ends = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The `time.monotonic()` by which the current work must end, if it has one."""
    return _DEADLINE.get()


MAX_JSON_DEPTH = 100
"""How deeply lists and objects may nest in data entering a run (inputs, --data, replies, tool results)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


class DataRefused(ValueError):
    """Data entering a run that no part of agentfsm could store or show: nested too deeply, or not Unicode."""


def check_data(value: Any) -> None:
    """Refuse data nested over MAX_JSON_DEPTH levels or holding a lone surrogate (not encodable as UTF-8).

    Walks without recursion, so the check itself cannot overflow the stack however deep the value is.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                raise DataRefused(f"holds a lone surrogate ({found.group()!a}), which is not Unicode text")
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                raise DataRefused(f"is nested more than {MAX_JSON_DEPTH} levels deep")
            children = item.items() if isinstance(item, dict) else ((None, child) for child in item)
            for key, child in children:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((child, depth + 1))
