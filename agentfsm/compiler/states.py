"""The runtime `State`s that YAML state kinds compile into."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic_core import to_jsonable_python

from agentfsm.bindings.llm import (
    LLMClient,
    LLMReply,
    LLMRequest,
    Message,
    ParseMode,
    ReplySchema,
    SchemaMismatch,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_reply,
    tool_results_text,
    validation_feedback,
)
from agentfsm.bindings.tools import ToolClient
from agentfsm.compiler.scope import Renderer, compile_assignments, compile_text, compile_value, make_scope, rendered
from agentfsm.runtime.calls import LLMCallRecord, ToolCallRecord
from agentfsm.runtime.errors import StateError, describe_exception
from agentfsm.runtime.events import LLMCallEnded, LLMCallStarted, TokenReceived, ToolCallEnded, ToolCallStarted
from agentfsm.runtime.model import Event, State, StateContext, StateType
from agentfsm.runtime.waiting import WaitForEvent

Assignments = Callable[[dict[str, Any]], dict[str, Any]]


MAX_TOOL_CALLS_PER_REPLY = 16
MAX_CONCURRENT_TOOL_CALLS = 4


def _error_result(call: ToolCall, error: StateError) -> ToolResult:
    content = json.dumps({"error": {"type": error.type, "message": error.message}})
    return ToolResult(call.id, call.name, content, is_error=True)


def _clip(text: str, limit: int = 200) -> str:
    """Model-chosen text, shortened for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    With `tools`, a reply asking for tool calls has them run (concurrently), and the model
    is called again with their results, up to `max_tool_rounds` such replies (one more is
    `llm.tool_loop`). A reply that does not parse or match `schema` is sent back with a
    user message saying why (`validation_feedback`), up to `parse_retries` times. Both
    loops extend one conversation; each LLM and tool call is recorded.
    """

    def __init__(
        self, name: str, client: LLMClient, *, prompt: str, system: str | None, parse: ParseMode,
        save: str | None, emit: str | None, schema: ReplySchema | None = None, parse_retries: int = 0,
        tools: Sequence[ToolClient] = (), max_tool_rounds: int = 8, **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.client = client
        self.prompt = compile_text(prompt)
        self.system = compile_text(system) if system is not None else None
        self.parse = parse
        self.schema = schema
        self.parse_retries = parse_retries
        self.tools = {tool.name: tool for tool in tools}
        self.max_tool_rounds = max_tool_rounds
        self.save = save
        self.emit = compile_text(emit) if emit is not None else None

    async def execute(self, context: StateContext) -> Event:
        scope = make_scope(context)
        prompt = rendered(self.prompt, scope, "prompt")
        system = rendered(self.system, scope, "system") if self.system is not None else None
        request = LLMRequest(
            self.client.name, self.name, prompt, system, context.run_id, json_mode=self.parse == "json",
            json_schema=self.schema.json_schema if self.schema is not None else None,
            tools=tuple(ToolSpec(t.name, t.description, t.parameters) for t in self.tools.values()),
            on_token=_token_relay(context, self.name) if context.observers.streams else None,
            session=context.bindings.setdefault(self.client.name, {}),
        )
        feedback_left = self.parse_retries
        tool_rounds = 0
        while True:
            reply = await self._call(context, request)
            if reply.tool_calls:
                if tool_rounds >= self.max_tool_rounds:
                    raise StateError(
                        "llm.tool_loop",
                        f"the model still asks for tools after {self.max_tool_rounds} rounds of tool calls "
                        "(max_tool_rounds)",
                        detail={"max_tool_rounds": self.max_tool_rounds,
                                "tools": [call.name for call in reply.tool_calls]},
                    )
                tool_rounds += 1
                results = await self._run_tools(context, reply.tool_calls)
                request = _answer(request, Message("assistant", reply.text, tool_calls=reply.tool_calls),
                                  tool_results_text(results), results)
                continue
            try:
                result = parse_reply(reply.text, self.parse)
                if self.schema is not None:
                    result = self.schema.validate(result)
            except (StateError, SchemaMismatch) as exc:
                problem = exc.message if isinstance(exc, StateError) else str(exc)
                if feedback_left <= 0:
                    raise self._parse_error(exc, reply.text) from None
                feedback_left -= 1
                request = _answer(request, Message("assistant", reply.text), validation_feedback(problem))
                continue
            return _finish(context, result, self.save, self.emit)

    async def _run_tools(self, context: StateContext, calls: tuple[ToolCall, ...]) -> tuple[ToolResult, ...]:
        """Run the calls concurrently, a few at a time; every outcome, an error too, becomes a result for the model.

        The model chooses how many calls a reply holds: past MAX_TOOL_CALLS_PER_REPLY the rest are
        answered with an error instead of run, so one reply cannot start hundreds of processes.
        """
        running = asyncio.Semaphore(MAX_CONCURRENT_TOOL_CALLS)

        async def bounded(call: ToolCall) -> ToolResult:
            async with running:
                return await self._run_tool(context, call)

        allowed, refused = calls[:MAX_TOOL_CALLS_PER_REPLY], calls[MAX_TOOL_CALLS_PER_REPLY:]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(call)) for call in allowed]
        too_many = StateError("tool.error", f"more than {MAX_TOOL_CALLS_PER_REPLY} tool calls in one reply; "
                                            "this call was not run")
        return (*(task.result() for task in tasks), *(_error_result(call, too_many) for call in refused))

    async def _run_tool(self, context: StateContext, call: ToolCall) -> ToolResult:
        started = time.perf_counter()
        tool = self.tools.get(call.name)
        await _tool_started(context, self.name, call.name, call.arguments, "llm", call.id)
        try:
            if tool is None:
                offered = ", ".join(self.tools) or "none"
                raise StateError("tool.error", f"no tool named '{_clip(call.name)}' in this state "
                                               f"(its tools: {offered})")
            if call.invalid is not None:
                raise StateError("tool.bad_arguments", f"tool '{call.name}': {call.invalid}",
                                 detail={"arguments": (call.raw or "")[:500]})
            value = to_jsonable_python(await tool.call(call.arguments), fallback=str)
        except Exception as exc:  # noqa: BLE001 - any failure of one call is the model's to see, not the state's
            error = exc if isinstance(exc, StateError) else StateError("tool.error", describe_exception(exc))
            await _tool_ended(context, self.name, ToolCallRecord(
                binding=call.name, args=call.arguments, error=error.as_dict(), duration=time.perf_counter() - started,
                via="llm", call_id=call.id))
            return _error_result(call, error)
        await _tool_ended(context, self.name, ToolCallRecord(
            binding=call.name, args=call.arguments, result=value, duration=time.perf_counter() - started, via="llm",
            call_id=call.id))
        return ToolResult(call.id, call.name, json.dumps(value))

    def _parse_error(self, exc: StateError | SchemaMismatch, text: str) -> StateError:
        """`llm.parse` for the last reply, with how many replies were tried when there was feedback."""
        if isinstance(exc, SchemaMismatch):
            exc = StateError("llm.parse", f"the reply does not match the schema: {exc}", detail={"reply": text[:500]})
        if self.parse_retries:
            exc.detail = {**(exc.detail or {}), "attempts": self.parse_retries + 1}
        return exc

    async def _call(self, context: StateContext, request: LLMRequest) -> LLMReply:
        model = getattr(self.client, "model", None)
        if context.observers.listens(LLMCallStarted):
            await context.observers.publish(LLMCallStarted(
                run_id=context.run_id, at=time.time(), step=context.step, state=self.name, binding=self.client.name,
                model=model, messages=len(request.history) + 1, tools=tuple(tool.name for tool in request.tools)))
        started = time.perf_counter()
        try:
            reply = await self.client.complete(request)
        except StateError as exc:
            # the same fields as a successful call's record (readers of records rely on them), plus the error
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            await _llm_ended(context, self.name, LLMCallRecord(
                binding=self.client.name, model=model, retries=detail.get("provider_retries", 0),
                error=exc.as_dict(), duration=time.perf_counter() - started))
            raise
        await _llm_ended(context, self.name, LLMCallRecord(
            binding=self.client.name, model=reply.model, prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason, retries=reply.retries,
            duration=time.perf_counter() - started, script=reply.script))
        return reply


def _token_relay(context: StateContext, state: str) -> Callable[[str], None]:
    """The `on_token` of a request: each piece of the reply becomes a TokenReceived event."""
    observers, run_id, step = context.observers, context.run_id, context.step

    def relay(text: str) -> None:
        observers.notify(TokenReceived(run_id=run_id, at=time.time(), step=step, state=state, text=text))

    return relay


async def _llm_ended(context: StateContext, state: str, record: LLMCallRecord) -> None:
    context.record_call(record)
    if context.observers.listens(LLMCallEnded):
        await context.observers.publish(LLMCallEnded(run_id=context.run_id, at=time.time(), step=context.step,
                                                     state=state, record=record))


async def _tool_started(context: StateContext, state: str, tool: str, arguments: Any, via: str | None,
                        call_id: str | None) -> None:
    if context.observers.listens(ToolCallStarted):
        await context.observers.publish(ToolCallStarted(run_id=context.run_id, at=time.time(), step=context.step,
                                                        state=state, tool=tool, arguments=arguments, via=via,
                                                        call_id=call_id))


async def _tool_ended(context: StateContext, state: str, record: ToolCallRecord) -> None:
    context.record_call(record)
    if context.observers.listens(ToolCallEnded):
        await context.observers.publish(ToolCallEnded(run_id=context.run_id, at=time.time(), step=context.step,
                                                      state=state, record=record))


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
        await _tool_started(context, self.name, self.client.name, args, None, None)
        started = time.perf_counter()
        try:
            result = await self.client.call(args)
        except StateError as exc:
            await _tool_ended(context, self.name, ToolCallRecord(
                binding=self.client.name, args=args, error=exc.as_dict(), duration=time.perf_counter() - started))
            raise
        await _tool_ended(context, self.name, ToolCallRecord(
            binding=self.client.name, args=args, result=result, duration=time.perf_counter() - started))
        return _finish(context, result, self.save, self.emit)


class WaitState(State):
    """`type: wait`: take a delivered event, or produce `timeout` once the timer ran out, or suspend the run.

    `wait_timeout` is the wait's timer, not an execution timeout: `State.timeout` stays None,
    since waiting costs nothing while the run is suspended. The deadline is fixed on the first
    visit and kept by the loop (`context.mailbox.deadline`) across suspensions, so resuming
    never restarts the timer. A delivery is looked at before the deadline: an event that
    arrived while the run was suspended wins over a timer that ran out meanwhile.
    """

    def __init__(
        self, name: str, *, events: Sequence[str], wait_timeout: float | None, save: str | None, **options: Any
    ) -> None:
        super().__init__(name, StateType.WAITING, **options)
        self.events = tuple(events)
        self.wait_timeout = wait_timeout
        self.save = save

    async def execute(self, context: StateContext) -> Event:
        delivery = context.mailbox.take(self.events)
        if delivery is not None:
            if self.save is not None:
                context.data[self.save] = delivery.data
            return Event(delivery.name, data=delivery.data, result=delivery.data)
        deadline = self._deadline(context)
        if deadline is not None and time.time() >= deadline:
            return Event("timeout")
        raise WaitForEvent(self.events, deadline)

    def _deadline(self, context: StateContext) -> float | None:
        """The resumed wait's deadline, or a fresh one from now on a first visit."""
        if context.mailbox.deadline is not None:
            return context.mailbox.deadline
        return time.time() + self.wait_timeout if self.wait_timeout else None


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


def _answer(request: LLMRequest, reply: Message, text: str, results: tuple[ToolResult, ...] = ()) -> LLMRequest:
    """The next request of a conversation: the model's reply, then a user message or (with `results`) tool results."""
    history = (*request.history, request.latest, reply)
    return dataclasses.replace(request, history=history, prompt=text, tool_results=results)


def _finish(context: StateContext, result: Any, save: str | None, emit: Renderer | None) -> Event:
    """Name the event first, then save: a failing `emit` leaves the context as it was."""
    event_name = "done" if emit is None else rendered(emit, make_scope(context, result=result), "emit")
    if save is not None:
        context.data[save] = result
    return Event(event_name, result=result)
