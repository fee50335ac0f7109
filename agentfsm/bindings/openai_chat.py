"""The `openai` provider: the chat-completions protocol (OpenAI, Ollama, vLLM, llama.cpp, LM Studio...)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from agentfsm.bindings.http_llm import HttpLLMClient, ReplyShapeError, StreamReader, field, token_count
from agentfsm.bindings.llm import LLMReply, LLMRequest, Message, ToolCall, loads_json, parse_tool_arguments


class OpenAIClient(HttpLLMClient):
    """POSTs `{base_url}/chat/completions` with `Authorization: Bearer <key>`."""

    DEFAULT_BASE_URL = "https://api.openai.com/v1"
    DEFAULT_KEY_ENV = "OPENAI_API_KEY"
    PATH = "/chat/completions"

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        messages = wire_messages(request.messages())
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": tool.name, "parameters": tool.parameters,
                                                  **({"description": tool.description} if tool.description else {})}}
                for tool in request.tools
            ]
        if request.json_mode and self.sends_json_mode:
            requested = response_format(request, messages)
            if requested is not None:
                body["response_format"] = requested
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            # OpenAI's own API has replaced `max_tokens` (which its reasoning models refuse);
            # compatible servers (Ollama, vLLM, llama.cpp) know the older name
            limit = "max_completion_tokens" if self.is_providers_own_server else "max_tokens"
            body[limit] = self.config.max_tokens
        if request.on_token is not None:
            # usage comes in a last chunk only when asked for; servers that ignore this report none (0 tokens)
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _stream_reader(self, emit: Callable[[str], None]) -> StreamReader:
        return OpenAIStream(emit, self._stream_error, self.config.model)

    @property
    def sends_json_mode(self) -> bool:
        """Whether `parse: json` states ask for `response_format`: the binding's `json_mode`, else only on OpenAI's host.

        Many compatible servers refuse a `response_format` they do not know, so it is opt-in there.
        """
        if self.config.json_mode is not None:
            return self.config.json_mode
        return self.is_providers_own_server

    def _read_reply(self, data: Any) -> LLMReply:
        choices = field(data, "choices", list, "the reply")
        if not choices:
            raise ReplyShapeError("'choices' is empty")
        message = field(choices[0], "message", dict, "choices[0]")
        finish = choices[0].get("finish_reason")
        model = data.get("model")
        usage = data.get("usage")
        return LLMReply(
            text=_content_text(message),
            model=model if isinstance(model, str) and model else self.config.model,
            prompt_tokens=token_count(usage, "prompt_tokens"),
            completion_tokens=token_count(usage, "completion_tokens"),
            finish_reason=finish if isinstance(finish, str) else "stop",
            tool_calls=_tool_calls(message),
        )


class OpenAIStream(StreamReader):
    """A streamed chat completion: `data: {chunk}` events, then `data: [DONE]`.

    Each chunk's `choices[0].delta` carries a piece of `content` (or of a `refusal`) and
    `tool_calls` fragments: the first fragment of a call has its `index`, `id` and
    `function.name`, later ones more of `function.arguments`, which are joined. The last
    chunk (with `stream_options.include_usage`) has an empty `choices` and the `usage`.
    """

    def __init__(self, emit: Callable[[str], None], fail: Callable[..., Any], model: str) -> None:
        super().__init__(emit, fail)
        self.model = model
        self.chunks = 0
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: Any = None

    def feed(self, event: str, data: str) -> None:
        if data.strip() == "[DONE]":
            return
        chunk = loads_json(data)
        if not isinstance(chunk, dict):
            raise ReplyShapeError("a chunk is not a JSON object")
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            raise self.fail(code if isinstance(code, int) and code >= 400 else None,
                            message if isinstance(message, str) else "")
        self.chunks += 1
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise ReplyShapeError("'choices' is not a list in a chunk")
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if isinstance(choice.get("finish_reason"), str):
                self.finish = choice["finish_reason"]
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise ReplyShapeError("choices[0].delta is not a JSON object")
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.text.append(content)
                self.emit(content)
            if isinstance(delta.get("refusal"), str):
                self.refusal.append(delta["refusal"])
            self._add_tool_calls(delta.get("tool_calls"))

    def _add_tool_calls(self, fragments: Any) -> None:
        if fragments is None:
            return
        if not isinstance(fragments, list):
            raise ReplyShapeError("choices[0].delta.tool_calls is not a list")
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                raise ReplyShapeError("a tool call fragment is not a JSON object")
            index = fragment.get("index", position)
            call = self.calls.setdefault(index if isinstance(index, int) else position,
                                         {"id": None, "name": "", "arguments": []})
            if isinstance(fragment.get("id"), str) and fragment["id"]:
                call["id"] = fragment["id"]
            function = fragment.get("function") or {}
            if isinstance(function.get("name"), str) and not call["name"]:
                call["name"] = function["name"]  # sent whole, in the call's first fragment
            if isinstance(function.get("arguments"), str):
                call["arguments"].append(function["arguments"])

    def reply(self) -> LLMReply:
        if not self.chunks:
            raise ReplyShapeError("the stream ended without a reply")
        tool_calls = []
        for position, index in enumerate(sorted(self.calls)):
            call = self.calls[index]
            name = call["name"]
            if not name:
                raise ReplyShapeError(f"tool call {index} in the stream has no function name")
            raw = "".join(call["arguments"])
            arguments, invalid = parse_tool_arguments(raw)
            tool_calls.append(ToolCall(call["id"] or f"call_{position}", name, arguments, invalid, raw))
        text = "".join(self.text) if self.text else "".join(self.refusal)
        return LLMReply(
            text=text,
            model=self.model,
            prompt_tokens=token_count(self.usage, "prompt_tokens"),
            completion_tokens=token_count(self.usage, "completion_tokens"),
            finish_reason=self.finish or "stop",
            tool_calls=tuple(tool_calls),
        )


def wire_messages(conversation: list[Message]) -> list[dict[str, Any]]:
    """The conversation in chat-completions messages: tool calls on the assistant's, one `tool` message per result."""
    messages: list[dict[str, Any]] = []
    for turn in conversation:
        if turn.role == "tool":
            messages += [{"role": "tool", "tool_call_id": result.call_id, "content": result.content}
                         for result in turn.tool_results]
        elif turn.role == "assistant" and turn.tool_calls:
            messages.append({
                "role": "assistant", "content": turn.content or None,
                "tool_calls": [
                    {"id": call.id, "type": "function",
                     "function": {"name": call.name,
                                  "arguments": call.raw if call.raw is not None else json.dumps(call.arguments)}}
                    for call in turn.tool_calls
                ],
            })
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """`message.tool_calls[] {id, function: {name, arguments}}`; arguments that are not a JSON object are kept raw."""
    calls = message.get("tool_calls")
    if calls is None:
        return ()
    if not isinstance(calls, list):
        raise ReplyShapeError("choices[0].message.tool_calls is not a list")
    found = []
    for index, call in enumerate(calls):
        where = f"choices[0].message.tool_calls[{index}]"
        function = field(call, "function", dict, where)
        name = field(function, "name", str, where + ".function")
        call_id = call.get("id")
        raw = function.get("arguments")
        arguments, invalid = parse_tool_arguments(raw)
        found.append(ToolCall(
            call_id if isinstance(call_id, str) and call_id else f"call_{index}", name, arguments, invalid,
            raw if isinstance(raw, str) else None,
        ))
    return tuple(found)


def response_format(request: LLMRequest, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Structured output for a `parse: json` state: its schema when it has one, else any JSON object.

    JSON mode without a schema is refused by OpenAI (400) unless a message says "JSON": then none is asked for.
    """
    if request.json_schema is None:
        said = any("json" in (message.get("content") or "").lower() for message in messages)
        return {"type": "json_object"} if said else None
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.state)[:64] or "reply"
    # strict: false, because strict mode accepts only a subset of JSON Schema; the state validates the reply anyway
    return {"type": "json_schema", "json_schema": {"name": name, "schema": request.json_schema, "strict": False}}


def _content_text(message: dict[str, Any]) -> str:
    """The message's text: a string, text parts (some compatible servers), or a refusal when there is no content."""
    content = message.get("content")
    if content is None:
        refusal = message.get("refusal")
        return refusal if isinstance(refusal, str) else ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(part["text"] for part in content if isinstance(part.get("text"), str))
    raise ReplyShapeError("choices[0].message.content is neither text nor a list of parts")
