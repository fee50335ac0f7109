"""A conversation with a model until it gives a usable answer: its tool calls run, bad replies are fed back.

A reply asking for tool calls has them run (concurrently, a few at a time), and the model
is called again with their results, up to `max_tool_rounds` such replies (one more is
`llm.tool_loop`). A reply that does not parse or match the schema is sent back with a user
message saying why (`validation_feedback`), up to `parse_retries` times. Both loops extend
one conversation; each LLM and tool call is recorded on the step and reported to the run's
observers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from agentfsm.bindings.known_secrets import known_secrets, redact, redact_value
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
    parse_reply,
    tool_results_text,
    validation_feedback,
)
from agentfsm.runtime.calls import LLMCallRecord, ToolCallRecord, call_ended, llm_call_started, tool_call_started
from agentfsm.runtime.errors import StateError, describe_exception

if TYPE_CHECKING:
    from agentfsm.bindings.tools import ToolClient
    from agentfsm.runtime.model import StateContext

MAX_TOOL_CALLS_PER_REPLY = 16
MAX_CONCURRENT_TOOL_CALLS = 4


@dataclass(frozen=True, slots=True)
class AnswerRules:
    """How a reply becomes an answer: parsed as `parse` asks, matching `schema`, after at most `parse_retries`
    rounds of feedback; and the tools the model may call, for at most `max_tool_rounds` replies."""

    parse: ParseMode = "text"
    schema: ReplySchema | None = None
    parse_retries: int = 0
    tools: Mapping[str, ToolClient] = field(default_factory=dict)
    max_tool_rounds: int = 8


async def converse(context: StateContext, state: str, client: LLMClient, request: LLMRequest,
                   rules: AnswerRules) -> Any:
    """Call the model until it answers with a reply that parses (and validates); returns the parsed answer."""
    feedback_left = rules.parse_retries
    tool_rounds = 0
    while True:
        reply = await _call(context, state, client, request)
        if reply.tool_calls:
            if tool_rounds >= rules.max_tool_rounds:
                raise StateError(
                    "llm.tool_loop",
                    f"the model still asks for tools after {rules.max_tool_rounds} rounds of tool calls "
                    "(max_tool_rounds)",
                    detail={"max_tool_rounds": rules.max_tool_rounds, "tools": [c.name for c in reply.tool_calls]},
                )
            tool_rounds += 1
            results = await _run_tools(context, state, rules.tools, reply.tool_calls)
            request = _answer(request, Message("assistant", reply.text, tool_calls=reply.tool_calls),
                              tool_results_text(results), results)
            continue
        try:
            result = parse_reply(reply.text, rules.parse)
            return rules.schema.validate(result) if rules.schema is not None else result
        except (StateError, SchemaMismatch) as exc:
            if feedback_left <= 0:
                raise _parse_error(exc, reply.text, rules.parse_retries) from None
            feedback_left -= 1
            problem = exc.message if isinstance(exc, StateError) else str(exc)
            request = _answer(request, Message("assistant", reply.text), validation_feedback(problem))


async def _call(context: StateContext, state: str, client: LLMClient, request: LLMRequest) -> LLMReply:
    model = getattr(client, "model", None)
    await llm_call_started(context, state, client.name, model, len(request.history) + 1,
                           tuple(tool.name for tool in request.tools),
                           getattr(client, "provider", None))
    started = time.perf_counter()
    try:
        reply = redacted_reply(await client.complete(request))
    except StateError as exc:
        # the same fields as a successful call's record (readers of records rely on them), plus the error
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        await call_ended(context, state, LLMCallRecord(
            binding=client.name, model=model, retries=detail.get("provider_retries", 0), error=exc.as_dict(),
            duration=time.perf_counter() - started))
        raise
    await call_ended(context, state, LLMCallRecord(
        binding=client.name, model=reply.model, prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason, retries=reply.retries,
        duration=time.perf_counter() - started, script=reply.script), request=request, reply=reply)
    return reply


async def _run_tools(context: StateContext, state: str, tools: Mapping[str, ToolClient],
                     calls: tuple[ToolCall, ...]) -> tuple[ToolResult, ...]:
    """Run the calls concurrently, a few at a time; every outcome, an error too, becomes a result for the model.

    The model chooses how many calls a reply holds: past MAX_TOOL_CALLS_PER_REPLY the rest are
    answered with an error instead of run, so one reply cannot start hundreds of processes.
    """
    running = asyncio.Semaphore(MAX_CONCURRENT_TOOL_CALLS)

    async def bounded(call: ToolCall) -> ToolResult:
        async with running:
            return await _run_tool(context, state, tools, call)

    allowed, refused = calls[:MAX_TOOL_CALLS_PER_REPLY], calls[MAX_TOOL_CALLS_PER_REPLY:]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(bounded(call)) for call in allowed]
    too_many = StateError("tool.error", f"more than {MAX_TOOL_CALLS_PER_REPLY} tool calls in one reply; "
                                        "this call was not run")
    return (*(task.result() for task in tasks), *(_error_result(call, too_many) for call in refused))


async def _run_tool(context: StateContext, state: str, tools: Mapping[str, ToolClient], call: ToolCall) -> ToolResult:
    started = time.perf_counter()
    tool = tools.get(call.name)
    await tool_call_started(context, state, call.name, call.arguments, "llm", call.id)
    try:
        if tool is None:
            raise StateError("tool.error", f"no tool named '{_clip(call.name)}' in this state "
                                           f"(its tools: {', '.join(tools) or 'none'})")
        if call.invalid is not None:
            raise StateError("tool.bad_arguments", f"tool '{call.name}': {call.invalid}",
                             detail={"arguments": (call.raw or "")[:500]})
        value = redact_value(to_jsonable_python(await tool.call(call.arguments), fallback=str))
    except Exception as exc:  # noqa: BLE001 - any failure of one call is the model's to see, not the state's
        error = exc if isinstance(exc, StateError) else StateError("tool.error", describe_exception(exc))
        await call_ended(context, state, ToolCallRecord(
            binding=call.name, args=call.arguments, error=error.as_dict(), duration=time.perf_counter() - started,
            via="llm", call_id=call.id))
        return _error_result(call, error)
    await call_ended(context, state, ToolCallRecord(
        binding=call.name, args=call.arguments, result=value, duration=time.perf_counter() - started, via="llm",
        call_id=call.id))
    return ToolResult(call.id, call.name, json.dumps(value))


def redacted_reply(reply: LLMReply) -> LLMReply:
    """The reply with every known secret taken out of its text and its tool calls: a server that echoes the
    request headers must not put the API key into the context (the store would hold `[redacted]`, the live
    context the key)."""
    if not known_secrets():
        return reply
    calls = tuple(dataclasses.replace(call, arguments=redact_value(call.arguments), raw=redact_value(call.raw))
                  for call in reply.tool_calls)
    return dataclasses.replace(reply, text=redact(reply.text), tool_calls=calls)


def _parse_error(exc: StateError | SchemaMismatch, text: str, parse_retries: int) -> StateError:
    """`llm.parse` for the last reply, with how many replies were tried when there was feedback."""
    if isinstance(exc, SchemaMismatch):
        exc = StateError("llm.parse", f"the reply does not match the schema: {exc}", detail={"reply": text[:500]})
    if parse_retries:
        exc.detail = {**(exc.detail or {}), "attempts": parse_retries + 1}
    return exc


def _answer(request: LLMRequest, reply: Message, text: str, results: tuple[ToolResult, ...] = ()) -> LLMRequest:
    """The next request of a conversation: the model's reply, then a user message or (with `results`) tool results."""
    history = (*request.history, request.latest, reply)
    return dataclasses.replace(request, history=history, prompt=text, tool_results=results)


def _error_result(call: ToolCall, error: StateError) -> ToolResult:
    content = json.dumps({"error": {"type": error.type, "message": error.message}})
    return ToolResult(call.id, call.name, content, is_error=True)


def _clip(text: str, limit: int = 200) -> str:
    """Model-chosen text, shortened for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
