"""Typed records of the LLM and tool calls a step made, and the token usage they add up to.

A record is what the step keeps (`StepEnded.calls`, `context.calls`) and what the store
keeps as JSON (`as_json()`); `usage` folds LLM calls into the per-binding totals a
`RunResult` reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentfsm.runtime.budget import charge_call, refuse_if_spent

if TYPE_CHECKING:
    from agentfsm.runtime.model import StateContext

Usage = dict[str, dict[str, int]]
"""Token usage per LLM binding: `{binding: {"calls", "prompt_tokens", "completion_tokens"}}`."""


@dataclass(slots=True, kw_only=True)
class LLMCallRecord:
    """One call of an LLM binding: who answered, what it cost, how long it took, how it failed."""

    kind: Literal["llm"] = field(default="llm", init=False)
    binding: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    retries: int = 0
    """Provider-level retries the call needed (rate limits, unavailable server, timeouts)."""
    duration: float = 0.0
    error: dict[str, Any] | None = None
    script: dict[str, Any] | None = None
    """Where a scripted binding stands in its script after this call (a resumed run picks up there)."""

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "kind": "llm", "binding": self.binding, "model": self.model, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason,
            "retries": self.retries, "duration": self.duration,
        }
        if self.error is not None:
            record["error"] = self.error
        if self.script is not None:
            record["script"] = self.script
        return record


@dataclass(slots=True, kw_only=True)
class ToolCallRecord:
    """One call of a tool binding: its arguments and result (or error), and how long it took.

    `via` is `"llm"` for a call a model asked for natively (its `call_id` is the model's),
    None for a `tool` state's own call, whose result is the step's result.
    """

    kind: Literal["tool"] = field(default="tool", init=False)
    binding: str
    args: Any = None
    duration: float = 0.0
    result: Any = None
    error: dict[str, Any] | None = None
    via: str | None = None
    call_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": "tool", "binding": self.binding, "args": self.args,
                                  "duration": self.duration}
        if self.via is not None:
            record["result"] = self.result
        if self.error is not None:
            record["error"] = self.error
        if self.via is not None:
            record["via"] = self.via
            record["call_id"] = self.call_id
        return record


@dataclass(slots=True, kw_only=True)
class ChildCallRecord:
    """A child run the step ran (or found finished): the parent's step keeps it with its calls, so the child's
    usage rolls up into the parent's and its run id can be read from the parent's history."""

    kind: Literal["child"] = field(default="child", init=False)
    name: str
    run_id: str
    status: str
    usage: Usage = field(default_factory=dict)
    duration: float = 0.0
    reused: bool = False
    """The child had finished before this step ran (a resumed parent): its result was read, not made again."""

    def as_json(self) -> dict[str, Any]:
        return {"kind": "child", "name": self.name, "run_id": self.run_id, "status": self.status,
                "usage": self.usage, "duration": self.duration, "reused": self.reused}


CallRecord = LLMCallRecord | ToolCallRecord | ChildCallRecord


def add_usage(usage: Usage, calls: Iterable[CallRecord | Mapping[str, Any]]) -> None:
    """Fold the LLM calls among `calls` (records, or their stored JSON) into `usage`."""
    for call in calls:
        if isinstance(call, Mapping):
            if call.get("kind") == "child":
                merge_usage(usage, call.get("usage") or {})
                continue
        elif isinstance(call, ChildCallRecord):  # a child run's usage rolls up into its parent's
            merge_usage(usage, call.usage)
            continue
        if isinstance(call, LLMCallRecord):
            binding, prompt, completion = call.binding, call.prompt_tokens, call.completion_tokens
        elif isinstance(call, Mapping) and call.get("kind") == "llm":
            binding = call.get("binding", "?")
            prompt, completion = call.get("prompt_tokens", 0) or 0, call.get("completion_tokens", 0) or 0
        else:
            continue
        totals = usage.setdefault(binding, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        totals["calls"] += 1
        totals["prompt_tokens"] += prompt
        totals["completion_tokens"] += completion


def merge_usage(into: Usage, more: Mapping[str, Mapping[str, int]]) -> None:
    """Add the totals of `more` (another run's or branch's usage) to `into`."""
    for binding, totals in more.items():
        mine = into.setdefault(binding, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        for key in ("calls", "prompt_tokens", "completion_tokens"):
            mine[key] += int(totals.get(key, 0) or 0)


# -- telling a run's observers about calls ---------------------------------------------------------------


async def llm_call_started(context: StateContext, state: str, binding: str, model: str | None, messages: int,
                           tools: tuple[str, ...] = (), provider: str | None = None) -> None:
    """Publish `LLMCallStarted` (built only when some observer listens)."""
    from agentfsm.runtime.events import LLMCallStarted

    refuse_if_spent(state)
    if context.observers.listens(LLMCallStarted):
        await context.observers.publish(LLMCallStarted(run_id=context.run_id, at=time.time(), step=context.step,
                                                       state=state, binding=binding, model=model,
                                                       messages=messages, tools=tools, provider=provider))


async def tool_call_started(context: StateContext, state: str, tool: str, arguments: Any, via: str | None = None,
                            call_id: str | None = None) -> None:
    """Publish `ToolCallStarted` (built only when some observer listens)."""
    from agentfsm.runtime.events import ToolCallStarted

    if context.observers.listens(ToolCallStarted):
        await context.observers.publish(ToolCallStarted(run_id=context.run_id, at=time.time(), step=context.step,
                                                        state=state, tool=tool, arguments=arguments, via=via,
                                                        call_id=call_id))


async def call_ended(context: StateContext, state: str, record: CallRecord, *, request: Any = None,
                     reply: Any = None) -> None:
    """Attach a call's record to the step and publish `LLMCallEnded` (with the LLM `request` and `reply`) or
    `ToolCallEnded`."""
    from agentfsm.runtime.events import LLMCallEnded, ToolCallEnded

    context.record_call(record)
    if isinstance(record, LLMCallRecord):
        charge_call(record)
        if context.observers.listens(LLMCallEnded):
            await context.observers.publish(LLMCallEnded(run_id=context.run_id, at=time.time(), step=context.step,
                                                         state=state, record=record, request=request,
                                                         reply=reply))
    elif context.observers.listens(ToolCallEnded):
        await context.observers.publish(ToolCallEnded(run_id=context.run_id, at=time.time(), step=context.step,
                                                      state=state, record=record))


def token_relay(context: StateContext, state: str) -> Callable[[str], None] | None:
    """The `on_token` of an LLM request: each piece of the reply becomes a `TokenReceived` event (None when no
    observer wants tokens, so the provider does not stream)."""
    from agentfsm.runtime.events import TokenReceived

    if not context.observers.streams:
        return None
    observers, run_id, step = context.observers, context.run_id, context.step

    def relay(text: str) -> None:
        observers.notify(TokenReceived(run_id=run_id, at=time.time(), step=step, state=state, text=text))

    return relay
