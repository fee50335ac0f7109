"""The `anthropic` provider: Anthropic's Messages API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentfsm.bindings.http_llm import HttpLLMClient, ReplyShapeError, StreamReader, field, token_count
from agentfsm.bindings.llm import LLMReply, LLMRequest, Message, ToolCall, loads_json, parse_tool_arguments

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
"""The Messages API requires `max_tokens`; this is sent when the binding sets none."""

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
"""Anthropic's stop reasons in the chat-completions words, so guards on `finish_reason` work with either provider."""

ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529,
}
"""The HTTP status each error type of an `error` event stands for, so it gets the same `llm.*` type."""


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
        if request.on_token is not None:
            body["stream"] = True
        return body

    def _stream_reader(self, emit: Callable[[str], None]) -> StreamReader:
        return AnthropicStream(emit, self._stream_error, self.config.model)

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


class AnthropicStream(StreamReader):
    """A streamed message: `message_start` (model, input usage), per content block a
    `content_block_start`, `content_block_delta`s (`text_delta` text, `input_json_delta`
    pieces of a tool_use block's input) and `content_block_stop`, then `message_delta`
    (stop reason, output usage) and `message_stop`; `ping`s anywhere; `error` on failure.
    """

    def __init__(self, emit: Callable[[str], None], fail: Callable[..., Any], model: str) -> None:
        super().__init__(emit, fail)
        self.model = model
        self.started = False
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.stop: str | None = None

    def feed(self, event: str, data: str) -> None:
        payload = loads_json(data)
        if not isinstance(payload, dict):
            raise ReplyShapeError(f"a {event!r} event is not a JSON object")
        kind = payload.get("type", event)
        if kind == "error":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            raise self.fail(ERROR_STATUS.get(error.get("type")), message if isinstance(message, str) else "")
        if kind == "message_start":
            message = field(payload, "message", dict, "message_start")
            self.started = True
            if isinstance(message.get("model"), str) and message["model"]:
                self.model = message["model"]
            if isinstance(message.get("usage"), dict):
                self.usage.update(message["usage"])
        elif kind == "content_block_start":
            block = field(payload, "content_block", dict, "content_block_start")
            index = field(payload, "index", int, "content_block_start")
            self.blocks[index] = {**block, "text": [block["text"]] if isinstance(block.get("text"), str) else [],
                                  "json": []}
        elif kind == "content_block_delta":
            delta = field(payload, "delta", dict, "content_block_delta")
            block = self.blocks.get(payload.get("index"))  # type: ignore[arg-type]
            if block is None:
                raise ReplyShapeError("a content_block_delta for a block that did not start")
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                block["text"].append(delta["text"])
                if block.get("type") == "text":
                    self.emit(delta["text"])
            elif delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                block["json"].append(delta["partial_json"])
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop = delta["stop_reason"]
            if isinstance(payload.get("usage"), dict):
                self.usage.update(payload["usage"])  # cumulative counts: the latest are the totals

    def reply(self) -> LLMReply:
        if not self.started:
            raise ReplyShapeError("the stream ended without a message_start")
        blocks = [self.blocks[index] for index in sorted(self.blocks)]
        text = "".join("".join(b["text"]) for b in blocks if b.get("type") == "text")
        calls = []
        for index, block in enumerate(blocks):
            if block.get("type") != "tool_use":
                continue
            name = field(block, "name", str, f"content block {index}")
            block_id = block.get("id")
            raw = "".join(block["json"])
            # input arrives as pieces of JSON text; with none, the block's own `input` (an empty object)
            arguments, invalid = parse_tool_arguments(raw if raw else block.get("input", {}))
            calls.append(ToolCall(block_id if isinstance(block_id, str) and block_id else f"toolu_{index}",
                                  name, arguments, invalid, raw if invalid else None))
        return LLMReply(
            text=text,
            model=self.model,
            prompt_tokens=token_count(self.usage, "input_tokens", "cache_creation_input_tokens",
                                      "cache_read_input_tokens"),
            completion_tokens=token_count(self.usage, "output_tokens"),
            finish_reason=FINISH_REASONS.get(self.stop, self.stop) if self.stop else "stop",
            tool_calls=tuple(calls),
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
