"""The `anthropic` provider: Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

from agentfsm.bindings.http_llm import HttpLLMClient, ReplyShapeError, field, token_count
from agentfsm.bindings.llm import LLMReply, LLMRequest, Message, ToolCall, parse_tool_arguments

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
"""The Messages API requires `max_tokens`; this is sent when the binding sets none."""

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
"""Anthropic's stop reasons in the chat-completions words, so guards on `finish_reason` work with either provider."""


class AnthropicClient(HttpLLMClient):
    """POSTs `{base_url}/v1/messages` with `x-api-key` and `anthropic-version` headers."""

    DEFAULT_BASE_URL = "https://api.anthropic.com"
    DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
    PATH = "/v1/messages"

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": wire_messages(request.messages()),  # no JSON mode: the system prompt is the author's to write
        }
        if request.tools:
            body["tools"] = [
                {"name": tool.name, "input_schema": tool.parameters,
                 **({"description": tool.description} if tool.description else {})}
                for tool in request.tools
            ]
        if request.system:
            body["system"] = request.system
        if self.config.temperature is not None:  # the API takes 0..1; above that, its 400 says so
            body["temperature"] = self.config.temperature
        return body

    def _read_reply(self, data: Any) -> LLMReply:
        blocks = field(data, "content", list, "the reply")
        if not all(isinstance(block, dict) for block in blocks):
            raise ReplyShapeError("'content' holds something other than content blocks")
        stop = data.get("stop_reason")
        model = data.get("model")
        usage = data.get("usage")
        return LLMReply(
            text="".join(b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)),
            model=model if isinstance(model, str) and model else self.config.model,
            # input_tokens leaves out the tokens read from or written to the prompt cache
            prompt_tokens=token_count(usage, "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"),
            completion_tokens=token_count(usage, "output_tokens"),
            finish_reason=FINISH_REASONS.get(stop, stop) if isinstance(stop, str) else "stop",
            tool_calls=_tool_calls(blocks),
        )


def wire_messages(conversation: list[Message]) -> list[dict[str, Any]]:
    """The conversation in Messages API turns: `tool_use` blocks in the assistant's, `tool_result` ones in a user turn."""
    messages: list[dict[str, Any]] = []
    for turn in conversation:
        if turn.role == "tool":
            blocks = [{"type": "tool_result", "tool_use_id": result.call_id, "content": result.content,
                       **({"is_error": True} if result.is_error else {})} for result in turn.tool_results]
            messages.append({"role": "user", "content": blocks})
        elif turn.role == "assistant" and turn.tool_calls:
            content: list[dict[str, Any]] = [{"type": "text", "text": turn.content}] if turn.content else []
            content += [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                        for call in turn.tool_calls]
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def _tool_calls(blocks: list[dict[str, Any]]) -> tuple[ToolCall, ...]:
    """The `tool_use` blocks `{id, name, input}`; an input that is not an object is kept for the error fed back."""
    found = []
    for index, block in enumerate(blocks):
        if block.get("type") != "tool_use":
            continue
        name = field(block, "name", str, f"content[{index}]")
        block_id = block.get("id")
        arguments, invalid = parse_tool_arguments(block.get("input", {}))
        found.append(ToolCall(block_id if isinstance(block_id, str) and block_id else f"toolu_{index}",
                              name, arguments, invalid))
    return tuple(found)
