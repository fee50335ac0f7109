"""The runtime `State`s that YAML state kinds compile into."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agentfsm.bindings.llm import LLMClient, LLMRequest, ParseMode, parse_reply
from agentfsm.bindings.tools import ToolClient
from agentfsm.compiler.scope import Renderer, compile_assignments, compile_text, compile_value, make_scope, template_failure
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import Event, State, StateContext, StateType
from agentfsm.spec.expressions import ExpressionError

Assignments = Callable[[dict[str, Any]], dict[str, Any]]


class SetState(State):
    """`type: set`: assign rendered values into the context."""

    def __init__(self, name: str, values: dict[str, Any], **options: Any) -> None:
        super().__init__(name, **options)
        self.assign = compile_assignments(values)

    async def execute(self, context: StateContext) -> None:
        try:
            context.data.update(self.assign(make_scope(context)))
        except ExpressionError as exc:
            raise template_failure(exc) from None


class ChoiceState(State):
    """`type: choice`: does no work; its rules route the event that led into it."""

    async def execute(self, context: StateContext) -> Event | None:
        return context.event


class LlmState(State):
    """`type: llm`: render the prompts, call the binding, parse, save, emit."""

    def __init__(
        self, name: str, client: LLMClient, *, prompt: str, system: str | None, parse: ParseMode,
        save: str | None, emit: str | None, **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.client = client
        self.prompt = compile_text(prompt)
        self.system = compile_text(system) if system is not None else None
        self.parse = parse
        self.save = save
        self.emit = compile_text(emit) if emit is not None else None

    async def execute(self, context: StateContext) -> Event:
        try:
            scope = make_scope(context)
            prompt = self.prompt(scope)
            system = self.system(scope) if self.system is not None else None
        except ExpressionError as exc:
            raise template_failure(exc) from None
        request = LLMRequest(self.client.name, self.name, prompt, system, context.run_id)
        started = time.perf_counter()
        reply = await self.client.complete(request)
        context.record_call(
            "llm", binding=self.client.name, model=reply.model, prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason,
            duration=time.perf_counter() - started,
        )
        result = parse_reply(reply.text, self.parse)
        return _finish(context, result, self.save, self.emit)


class ToolState(State):
    """`type: tool`: render the args, call the binding, save, emit."""

    def __init__(
        self, name: str, client: ToolClient, *, args: dict[str, Any], save: str | None, emit: str | None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.client = client
        self.args = compile_assignments(args)
        self.save = save
        self.emit = compile_text(emit) if emit is not None else None

    async def execute(self, context: StateContext) -> Event:
        try:
            args = self.args(make_scope(context))
        except ExpressionError as exc:
            raise template_failure(exc) from None
        started = time.perf_counter()
        try:
            result = await self.client.call(args)
        except StateError as exc:
            context.record_call("tool", binding=self.client.name, args=args, error=exc.as_dict(),
                                duration=time.perf_counter() - started)
            raise
        context.record_call("tool", binding=self.client.name, args=args, duration=time.perf_counter() - started)
        return _finish(context, result, self.save, self.emit)


class FinalState(State):
    """`type: final`: render the run's output; the run ends after it."""

    def __init__(self, name: str, output: Any, **options: Any) -> None:
        super().__init__(name, StateType.FINAL, **options)
        self.output = compile_value(output)

    async def execute(self, context: StateContext) -> Event:
        try:
            return Event("done", result=self.output(make_scope(context)))
        except ExpressionError as exc:
            raise template_failure(exc) from None


class FailState(State):
    """`type: fail`: end the run as failed with the rendered error message."""

    def __init__(self, name: str, error: str, **options: Any) -> None:
        super().__init__(name, StateType.ERROR, **options)
        self.error = compile_text(error)

    async def execute(self, context: StateContext) -> None:
        try:
            message = self.error(make_scope(context))
        except ExpressionError as exc:
            raise template_failure(exc) from None
        raise StateError("fail", message)


def _finish(context: StateContext, result: Any, save: str | None, emit: Renderer | None) -> Event:
    """Name the event first, then save: a failing `emit` leaves the context as it was."""
    event_name = "done"
    if emit is not None:
        try:
            event_name = emit(make_scope(context, result=result))
        except ExpressionError as exc:
            raise template_failure(exc, "emit") from None
    if save is not None:
        context.data[save] = result
    return Event(event_name, result=result)
