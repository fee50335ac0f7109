"""The runtime `State`s that YAML state kinds compile into."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from agentfsm.bindings.llm import (
    LLMClient,
    LLMReply,
    LLMRequest,
    ParseMode,
    ReplySchema,
    SchemaMismatch,
    parse_reply,
    validation_feedback,
)
from agentfsm.bindings.tools import ToolClient
from agentfsm.compiler.scope import Renderer, compile_assignments, compile_text, compile_value, make_scope, rendered
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import Event, State, StateContext, StateType

Assignments = Callable[[dict[str, Any]], dict[str, Any]]


class SetState(State):
    """`type: set`: assign rendered values into the context."""

    def __init__(self, name: str, values: dict[str, Any], **options: Any) -> None:
        super().__init__(name, **options)
        self.assign = compile_assignments(values)

    async def execute(self, context: StateContext) -> None:
        context.data.update(rendered(self.assign, make_scope(context), "set"))


class ChoiceState(State):
    """`type: choice`: does no work; its rules route the event that led into it."""

    async def execute(self, context: StateContext) -> Event | None:
        return context.event


class LlmState(State):
    """`type: llm`: render the prompts, call the binding, parse (and validate), save, emit.

    A reply that does not parse or match `schema` is sent back with a user message saying
    why (`validation_feedback`), up to `parse_retries` times; each call is recorded.
    """

    def __init__(
        self, name: str, client: LLMClient, *, prompt: str, system: str | None, parse: ParseMode,
        save: str | None, emit: str | None, schema: ReplySchema | None = None, parse_retries: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.client = client
        self.prompt = compile_text(prompt)
        self.system = compile_text(system) if system is not None else None
        self.parse = parse
        self.schema = schema
        self.parse_retries = parse_retries
        self.save = save
        self.emit = compile_text(emit) if emit is not None else None

    async def execute(self, context: StateContext) -> Event:
        scope = make_scope(context)
        prompt = rendered(self.prompt, scope, "prompt")
        system = rendered(self.system, scope, "system") if self.system is not None else None
        request = LLMRequest(
            self.client.name, self.name, prompt, system, context.run_id, json_mode=self.parse == "json",
            json_schema=self.schema.json_schema if self.schema is not None else None,
        )
        feedback_left = self.parse_retries
        while True:
            reply = await self._call(context, request)
            try:
                result = parse_reply(reply.text, self.parse)
                if self.schema is not None:
                    result = self.schema.validate(result)
            except (StateError, SchemaMismatch) as exc:
                problem = exc.message if isinstance(exc, StateError) else str(exc)
                if feedback_left <= 0:
                    raise self._parse_error(exc, reply.text) from None
                feedback_left -= 1
                history = (*request.history, {"role": "user", "content": request.prompt},
                           {"role": "assistant", "content": reply.text})
                request = dataclasses.replace(request, history=history, prompt=validation_feedback(problem))
                continue
            return _finish(context, result, self.save, self.emit)

    def _parse_error(self, exc: StateError | SchemaMismatch, text: str) -> StateError:
        """`llm.parse` for the last reply, with how many replies were tried when there was feedback."""
        if isinstance(exc, SchemaMismatch):
            exc = StateError("llm.parse", f"the reply does not match the schema: {exc}", detail={"reply": text[:500]})
        if self.parse_retries:
            exc.detail = {**(exc.detail or {}), "attempts": self.parse_retries + 1}
        return exc

    async def _call(self, context: StateContext, request: LLMRequest) -> LLMReply:
        started = time.perf_counter()
        try:
            reply = await self.client.complete(request)
        except StateError as exc:
            # the same fields as a successful call's record (readers of records rely on them), plus the error
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            context.record_call(
                "llm", binding=self.client.name, model=getattr(self.client, "model", None), prompt_tokens=0,
                completion_tokens=0, finish_reason=None, retries=detail.get("provider_retries", 0),
                error=exc.as_dict(), duration=time.perf_counter() - started,
            )
            raise
        context.record_call(
            "llm", binding=self.client.name, model=reply.model, prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason, retries=reply.retries,
            duration=time.perf_counter() - started,
        )
        return reply


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
        args = rendered(self.args, make_scope(context), "args")
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
        return Event("done", result=rendered(self.output, make_scope(context), "output"))


class FailState(State):
    """`type: fail`: end the run as failed with the rendered error message."""

    def __init__(self, name: str, error: str, **options: Any) -> None:
        super().__init__(name, StateType.ERROR, **options)
        self.error = compile_text(error)

    async def execute(self, context: StateContext) -> None:
        raise StateError("fail", rendered(self.error, make_scope(context), "error"))


def _finish(context: StateContext, result: Any, save: str | None, emit: Renderer | None) -> Event:
    """Name the event first, then save: a failing `emit` leaves the context as it was."""
    event_name = "done" if emit is None else rendered(emit, make_scope(context, result=result), "emit")
    if save is not None:
        context.data[save] = result
    return Event(event_name, result=result)
