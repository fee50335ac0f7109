"""The `openai` provider: the chat-completions protocol (OpenAI, Ollama, vLLM, llama.cpp, LM Studio...)."""

from __future__ import annotations

import json
import re
from typing import Any

from agentfsm.bindings.http_llm import HttpLLMClient, ReplyShapeError, field, token_count
from agentfsm.bindings.llm import LLMReply, LLMRequest, Message, ToolCall, parse_tool_arguments


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
        return body

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
