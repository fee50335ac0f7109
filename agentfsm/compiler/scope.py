"""What templates see: the context keys, plus `event`, `result` and `run` (`run.data` is the whole context)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import Event, StateContext
from agentfsm.spec.expressions import ExpressionError, base_scope, compile_template, is_template

_BASE_SCOPE = base_scope()
_NO_EVENT = {"name": None, "data": None}

Renderer = Callable[[dict[str, Any]], Any]

BOXED = "$"
"""The one key of a context whose whole value is not an object (an `output:` gave a list, text, a number):
`run.data` shows that value itself."""
CONTEXT_OBJECT = "$$"
"""A context key kept apart from the data: `run.data` never shows it and an `output:` keeps it. An imported Step
Functions machine keeps its context object there (the execution's input and start time, the machine's name);
templates read it as `run["$$"]`."""


def make_scope(context: StateContext, event: Event | None = None, result: Any = None) -> dict[str, Any]:
    """A fresh scope for one render; `event` defaults to the event that led into the state."""
    scope = _BASE_SCOPE.copy()
    scope.update(context.data)
    current = event if event is not None else context.event
    scope["event"] = _NO_EVENT if current is None else {"name": current.name, "data": current.data}
    scope["result"] = result
    data = context.data
    kept = data.get(CONTEXT_OBJECT)
    if kept is not None:
        data = {key: value for key, value in data.items() if key != CONTEXT_OBJECT}
    whole = data[BOXED] if len(data) == 1 and BOXED in data else data
    scope["run"] = {"id": context.run_id, "step": context.step, "state": context.state, "data": whole}
    if kept is not None:
        scope["run"][CONTEXT_OBJECT] = kept
    return scope


def compile_value(value: Any) -> Renderer:
    """A renderer for a value whose strings (at any depth) may be templates; other values are kept as they are."""
    if isinstance(value, str):
        if is_template(value):
            return compile_template(value).render
        return lambda scope: value
    if isinstance(value, dict):
        items = [(key, compile_value(item)) for key, item in value.items()]
        return lambda scope: {key: render(scope) for key, render in items}
    if isinstance(value, list):
        renderers = [compile_value(item) for item in value]
        return lambda scope: [render(scope) for render in renderers]
    return lambda scope: value


def compile_text(text: str) -> Renderer:
    """A renderer that always yields text (prompts, messages, event names)."""
    render = compile_value(text)
    return lambda scope: _as_text(render(scope))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def compile_assignments(values: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Render a `set:` mapping; every value sees the same scope (assignments are simultaneous)."""
    items = [(key, compile_value(value)) for key, value in values.items()]
    return lambda scope: {key: render(scope) for key, render in items}


def template_failure(exc: ExpressionError, where: str | None = None) -> StateError:
    message = f"{where}: {exc}" if where else str(exc)
    return StateError(exc.error_type, message)


def rendered(render: Renderer, scope: dict[str, Any], where: str) -> Any:
    """Render, turning a template failure into the `template.error` a state raises, naming the field."""
    try:
        return render(scope)
    except ExpressionError as exc:
        raise template_failure(exc, where) from None


def finish_step(context: StateContext, result: Any, save: str | None, emit: Renderer | None) -> Event:
    """The event a state's result makes, saving the result under `save`.

    The event is named first, then the result saved: a failing `emit` leaves the context as it was.
    """
    event_name = "done" if emit is None else rendered(emit, make_scope(context, result=result), "emit")
    if save is not None:
        context.data[save] = result
    return Event(event_name, result=result)
