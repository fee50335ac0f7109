"""The budget of one template render: steps, output, and the size of everything it builds.

The sandbox stops escapes; this stops a template (the author's, fed hostile data) from running
for ever or filling memory. Checks come *before* a value is built wherever its size can be
known in advance (`join`, `replace`, widths, `batch`, `slice`, `lipsum`); results are measured
after, which is safe because those can only be a bounded factor larger than their inputs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.utils import _PassArg

from agentfsm.limits import (
    TEMPLATE_MAX_ITEMS,
    TEMPLATE_MAX_LIPSUM_WORDS,
    TEMPLATE_MAX_OUTPUT,
    TEMPLATE_MAX_STEPS,
    TEMPLATE_MAX_STRING,
    TEMPLATE_MAX_WIDTH,
    TEMPLATE_MAX_WORK,
    current_deadline,
)

_CHECK_EVERY = 256
"""How many steps pass between looks at the clock and at a pending cancellation (Ctrl-C)."""


_BIG = 10_000
"""A value this large took long enough to build that the clock is looked at after it."""


class TemplateLimit(SecurityError):
    """A render went over its budget: reported as `template.limit` (or `timeout` when the deadline passed)."""

    def __init__(self, message: str, error_type: str = "template.limit") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(slots=True)
class Budget:
    """What one render has used so far."""

    steps: int = 0
    output: int = 0
    work: int = 0
    deadline: float | None = None


_current: ContextVar[Budget | None] = ContextVar("agentfsm_template_budget", default=None)
"""The render in progress (renders are synchronous: one per thread and task at a time)."""


@contextmanager
def budgeted() -> Iterator[None]:
    """Give the render inside a fresh budget (a nested render shares the outer one)."""
    if _current.get() is not None:
        yield
        return
    token = _current.set(Budget(deadline=current_deadline()))
    try:
        yield
    finally:
        _current.reset(token)


def step() -> None:
    """Count one loop iteration or call; now and then look at the clock and for a Ctrl-C."""
    budget = _current.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > TEMPLATE_MAX_STEPS:
        raise TemplateLimit(f"more than {TEMPLATE_MAX_STEPS:,} loop iterations and calls in one render")
    if budget.steps % _CHECK_EVERY == 0:
        _check_time(budget)


def _check_time(budget: Budget) -> None:
    if budget.deadline is not None and time.monotonic() > budget.deadline:
        raise TemplateLimit("the state's timeout ran out while rendering a template", "timeout")
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop: a render outside a run
        return
    if task is not None and task.cancelling():
        raise asyncio.CancelledError  # Ctrl-C (or a cancelled run) stops a long render at once


def emitted(text: str) -> str:
    """Count text a render writes out."""
    budget = _current.get()
    if budget is not None:
        budget.output += len(text)
        if budget.output > TEMPLATE_MAX_OUTPUT:
            raise TemplateLimit(f"the output is over {TEMPLATE_MAX_OUTPUT:,} characters")
    return text


def built(value: Any) -> Any:
    """Measure a value a template built (a string or list over its bound is refused) and charge it as work."""
    if isinstance(value, str | bytes):
        _charge(len(value), TEMPLATE_MAX_STRING, "a string")
    elif isinstance(value, list | tuple | dict | set):
        _charge(len(value), TEMPLATE_MAX_ITEMS, "a list")
    return value


def _charge(size: int, bound: int, what: str) -> None:
    if size > bound:
        raise TemplateLimit(f"{what} over {bound:,} {'characters' if what == 'a string' else 'items'}")
    budget = _current.get()
    if budget is not None:
        budget.work += size
        if budget.work > TEMPLATE_MAX_WORK:
            raise TemplateLimit(f"more than {TEMPLATE_MAX_WORK:,} characters and items built in one render")
        if size >= _BIG:  # building it took a while: time to look at the clock
            _check_time(budget)


def expect_string(size: int) -> None:
    """Refuse, before building it, a string that would be `size` characters long."""
    if size > TEMPLATE_MAX_STRING:
        raise TemplateLimit(f"a string over {TEMPLATE_MAX_STRING:,} characters")


def expect_items(count: Any, what: str) -> None:
    if isinstance(count, int) and count > TEMPLATE_MAX_ITEMS:
        raise TemplateLimit(f"{what} over {TEMPLATE_MAX_ITEMS:,} items")


def expect_width(width: Any, what: str = "a width") -> None:
    """Refuse a width over the bound: a plain sandbox refusal, like the format widths the sandbox checks."""
    if isinstance(width, int) and width > TEMPLATE_MAX_WIDTH:
        raise SecurityError(f"{what} over {TEMPLATE_MAX_WIDTH} is not allowed")


# -- what a filter or a method would build ------------------------------------------------------------------


def _replaced_size(text: Any, old: Any, new: Any, count: Any = None) -> None:
    if not isinstance(text, str | bytes) or not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return
    try:
        hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    except TypeError:
        return
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    expect_string(len(text) + hits * max(0, len(new) - len(old)))


def _joined(separator: str, items: list[Any]) -> None:
    total = len(separator) * max(0, len(items) - 1)
    expect_string(total)
    for item in items:
        total += len(item) if isinstance(item, str) else len(str(item))
        expect_string(total)


def _lines(text: Any) -> int:
    return text.count("\n") + 1 if isinstance(text, str) else 1


def check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a call to a str or bytes method whose result would be over the bounds (`'x'.center(10**9)`)."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args:
        expect_width(args[0])
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            expect_string(len(owner) * max(size, 1))
    elif name == "replace" and len(args) >= 2:
        _replaced_size(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args and isinstance(owner, str):
        items = args[0] if isinstance(args[0], list | tuple) else None
        if items is not None:
            _joined(owner, list(items))
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str | bytes)), default=1)
        expect_string(len(owner) * max(longest, 1))


# -- filters ------------------------------------------------------------------------------------------------


def metered(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or global that counts as a step and has its result measured."""

    @functools.wraps(function)  # keeps Jinja's pass_context/pass_eval_context marks
    def run(*args: Any, **kwargs: Any) -> Any:
        step()
        return built(function(*args, **kwargs))

    return run


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Jinja's filters with the pre-checks below, every one of them metered."""
    bounded = {}
    for name, function in filters.items():
        if name == "join":
            function = _join(function)
        elif name == "sum":
            function = _sum(function)
        elif name in _CHECKS:
            function = _checked(function, _CHECKS[name])
        bounded[name] = metered(function)
    return bounded


def _checked(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """`original`, after `check(value, *args, **kwargs)` (called without Jinja's context argument, if any)."""
    skip = 0 if _PassArg.from_obj(original) is None else 1  # type: ignore[arg-type]

    @functools.wraps(original)
    def run(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return original(*args, **kwargs)

    return run


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    _replaced_size(str(s), str(old), str(new), count)


def _check_batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    expect_items(linecount, "a batch")


def _check_slice(value: Any, slices: Any, fill_with: Any = None) -> None:
    expect_items(slices, "slices")


def _check_indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    expect_width(width)
    if isinstance(width, str):
        expect_width(len(width), "an indent")
        expect_string(len(str(s)) + len(width) * _lines(s))


def _check_wordwrap(s: Any, width: Any = 79, break_long_words: bool = True, wrapstring: Any = None,
                    *args: Any, **kwargs: Any) -> None:
    if isinstance(wrapstring, str) and isinstance(width, int):
        lines = len(str(s)) // max(width, 1) + _lines(s)
        expect_string(len(str(s)) + lines * len(wrapstring))


def _check_center(value: Any, width: Any = 80) -> None:
    expect_width(width)


def _check_tojson(value: Any, indent: Any = None) -> None:
    if isinstance(indent, str) or (isinstance(indent, int) and indent > 16):
        raise TemplateLimit("a tojson indent must be a number up to 16")


_CHECKS: dict[str, Callable[..., None]] = {
    "replace": _check_replace, "batch": _check_batch, "slice": _check_slice, "indent": _check_indent,
    "wordwrap": _check_wordwrap, "center": _check_center, "tojson": _check_tojson,
}


def _join(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        expect_items(len(items), "a list")
        if attribute is not None:
            getter = make_attrgetter(eval_ctx.environment, attribute)
            items = [getter(item) for item in items]
        _joined(str(d), items)
        return original(eval_ctx, items, d)

    return join


def _sum(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def sum_(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        if not isinstance(start, list | tuple):
            return original(environment, iterable, attribute, start)
        total = list(start)  # concatenating lists: built once, not copied at every item
        if attribute is not None:
            iterable = map(make_attrgetter(environment, attribute), iterable)
        for item in iterable:
            total.extend(item)
            expect_items(len(total), "a list")
        return type(start)(total)

    return sum_


def bounded_lipsum(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:  # noqa: A002 - Jinja's names
        if isinstance(n, int) and isinstance(max, int) and n * max > TEMPLATE_MAX_LIPSUM_WORDS:
            raise TemplateLimit(f"lipsum over {TEMPLATE_MAX_LIPSUM_WORDS:,} words")
        return original(n, html, min, max)

    return metered(lipsum)
