"""The LLM binding interface, parsing of replies (`parse: text | json | lines`) and reply schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from agentfsm.bindings.imports import BindingError, import_reference
from agentfsm.limits import DataRefused, check_data
from agentfsm.runtime.errors import StateError


def loads_json(text: str | bytes) -> Any:
    """json.loads for untrusted text: nesting deeper than MAX_JSON_DEPTH, or a lone surrogate (`"\\ud800"`), is
    a ValueError like any other malformed JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    try:
        check_data(value)
    except DataRefused as exc:
        raise ValueError(f"the JSON {exc}") from None
    return value

@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: its name, what it does, and the JSON Schema (an object) of its arguments."""

    name: str
    description: str | None
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for.

    `arguments` is always a mapping; when the model's arguments were not a JSON object,
    it is empty, `invalid` says why and `raw` keeps the text the model sent (sent back as is).
    """

    id: str
    name: str
    arguments: dict[str, Any]
    invalid: str | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The answer to one tool call: `content` is the JSON-encoded result, or `{"error": {type, message}}`."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation, which each provider writes in its own wire format.

    `user`: a user message (`content`). `assistant`: the model's reply, its text and the
    tool calls it asked for. `tool`: the results of the previous assistant turn's tool
    calls, in call order; its `content` is their text as the scripted provider sees it
    (`tool_results_text`).
    """

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


def tool_results_text(results: tuple[ToolResult, ...] | list[ToolResult]) -> str:
    """The text of a `tool` turn: one line per result, `Result of NAME: CONTENT` or `Error from NAME: CONTENT`.

    NAME is the tool name the model called, CONTENT the JSON-encoded result (`391`,
    `"some text"`, `{"a": 1}`) or error (`{"error": {"type": ..., "message": ...}}`).
    It is what a scripted model's `match:` searches after tool calls.
    """
    return "\n".join(f"{'Error from' if r.is_error else 'Result of'} {r.name}: {r.content}" for r in results)


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call: the rendered prompts and who is asking.

    `prompt` is always the text of the latest message: the user's, or with `tool_results`
    the results of the tool calls the model asked for in its last reply (the text that
    `tool_results_text` makes). `history` holds the earlier turns of the conversation
    (`Message`s; `{"role", "content"}` mappings are accepted), oldest first; it is empty
    on a state's first call. `tools` are the tools the model may call. `json_mode` asks
    for a JSON reply (`parse: json`) and `json_schema` for one matching that schema; a
    provider that has no such mode ignores both. `on_token`, when set, is called with each
    piece of the reply's text as it arrives: the HTTP providers then stream the reply
    (`"stream": true`), the scripted one hands over its whole text at once. The reply
    returned is the same either way. `session` is the binding's memory within the run
    (the scripted provider keeps its place in the script there).
    """

    binding: str
    state: str
    prompt: str
    system: str | None = None
    run_id: str = ""
    history: tuple[Message, ...] = ()
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    on_token: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    session: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """What the binding remembers between the calls of this run (JSON it may change in place), or None."""

    def __post_init__(self) -> None:
        if any(isinstance(turn, dict) for turn in self.history):
            turns = tuple(Message(t["role"], t.get("content") or "") if isinstance(t, dict) else t
                          for t in self.history)
            object.__setattr__(self, "history", turns)

    @property
    def latest(self) -> Message:
        """The latest turn: the prompt as a user message, or the tool results."""
        if self.tool_results:
            return Message("tool", self.prompt, tool_results=self.tool_results)
        return Message("user", self.prompt)

    def messages(self) -> list[Message]:
        """The conversation, without the system prompt: the history, then the latest turn."""
        return [*self.history, self.latest]


@dataclass(frozen=True, slots=True)
class LLMReply:
    """What a provider answered, with the usage a real provider reports."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    retries: int = 0
    """Provider-level retries this call needed (rate limits, unavailable server, timeouts)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools the model asked to call; the state runs them and calls the model again with the results."""
    script: dict[str, Any] | None = None
    """Where a scripted binding stands in its script after this reply (recorded, so a resumed run picks up there)."""


# -- canonical JSON of requests and replies (what a trace keeps; what a replay reads back) -------------------


def _tool_call_json(call: ToolCall) -> dict[str, Any]:
    found: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if call.invalid is not None:
        found.update(invalid=call.invalid, raw=call.raw)
    return found


def message_json(message: Message) -> dict[str, Any]:
    """One turn as canonical JSON: role and content, with `tool_calls` / `tool_results` when it has them."""
    found: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        found["tool_calls"] = [_tool_call_json(call) for call in message.tool_calls]
    if message.tool_results:
        found["tool_results"] = [{"call_id": r.call_id, "name": r.name, "content": r.content, "is_error": r.is_error}
                                 for r in message.tool_results]
    return found


def request_json(request: LLMRequest, model: str | None = None) -> dict[str, Any]:
    """The whole request in a provider-neutral form: who asks, the system prompt, every message, the tools."""
    return {
        "binding": request.binding, "state": request.state, "model": model, "system": request.system,
        "messages": [message_json(message) for message in request.messages()],
        "json_mode": request.json_mode, "json_schema": request.json_schema,
        "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in request.tools],
    }


def reply_json(reply: LLMReply) -> dict[str, Any]:
    """The whole reply in a provider-neutral form (the scripted binding's place in its script too)."""
    return {"text": reply.text, "model": reply.model, "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens, "finish_reason": reply.finish_reason,
            "retries": reply.retries, "tool_calls": [_tool_call_json(call) for call in reply.tool_calls],
            "script": reply.script}


def parse_tool_arguments(text: Any) -> tuple[dict[str, Any], str | None]:
    """A model's tool arguments (a JSON text, or already a mapping): the mapping, or `{}` and why not."""
    if isinstance(text, dict):
        return text, None
    if not isinstance(text, str):
        return {}, "the arguments are not a JSON object"
    if not text.strip():
        return {}, None  # some servers send "" for a call without arguments
    try:
        value = loads_json(text)
    except json.JSONDecodeError as exc:
        return {}, f"the arguments are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        return {}, f"the arguments cannot be read: {exc}"
    if not isinstance(value, dict):
        return {}, "the arguments are not a JSON object"
    return value, None


class LLMClient(Protocol):
    """A provider bound to a name under `llms:`. Failures raise StateError with an `llm.*` type."""

    name: str

    async def complete(self, request: LLMRequest) -> LLMReply: ...


ParseMode = Literal["text", "json", "lines"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)\n\s*```", re.DOTALL)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def parse_reply(text: str, mode: ParseMode) -> Any:
    """The reply as the state's `parse:` asks; raises StateError `llm.parse`."""
    if mode == "text":
        return text
    if mode == "lines":
        return [_LIST_MARKER.sub("", line).strip() for line in text.splitlines() if line.strip()]
    return _parse_json(text)


def _parse_json(text: str) -> Any:
    candidates = [text.strip()]
    candidates += [block.strip() for block in _FENCE.findall(text)]
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    first_error: json.JSONDecodeError | None = None
    refused: ValueError | None = None
    for candidate in candidates:
        try:
            value = loads_json(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
            continue
        except ValueError as exc:  # nested too deep, a lone surrogate, an int too long: not a usable reply
            refused = refused or exc
            continue
        if isinstance(value, dict | list):
            return value
    if refused is not None:
        raise StateError("llm.parse", f"the reply is refused: {refused}", detail={"reply": text[:500]})
    reason = f": {first_error.msg} at line {first_error.lineno} column {first_error.colno}" if first_error else ""
    raise StateError("llm.parse", f"the reply is not a JSON object or list{reason}", detail={"reply": text[:500]})


def count_tokens(text: str | None) -> int:
    """A word count: what the scripted provider reports as tokens."""
    return len(text.split()) if text else 0


# -- reply schemas (`schema:` on an llm state) -----------------------------------------------

ERROR_TEXT_LIMIT = 500
"""How much of a validation error is fed back to the model and put in `llm.parse` messages."""


class SchemaMismatch(Exception):
    """A parsed reply that does not match the state's schema; the message says where and why, briefly."""


class ReplySchema:
    """The JSON Schema a reply must match, and the validation that goes with it."""

    json_schema: dict[str, Any]

    def validate(self, value: Any) -> Any:
        """The value to save; raises SchemaMismatch."""
        raise NotImplementedError


class InlineSchema(ReplySchema):
    """An inline JSON Schema, validated with `jsonschema` (Draft 2020-12 unless `$schema` names another)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import validators

        self.json_schema = schema
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        self._validator = cls(schema)

    def validate(self, value: Any) -> Any:
        from jsonschema.exceptions import best_match

        error = best_match(self._validator.iter_errors(value))
        if error is None:
            return value
        where = error.json_path if error.path else "the reply"
        raise SchemaMismatch(_shorten(f"{where}: {error.message}"))


class PydanticSchema(ReplySchema):
    """A pydantic model: the reply is validated by it and saved as `model_dump(mode="json")`."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.json_schema = model.model_json_schema()

    def validate(self, value: Any) -> Any:
        try:
            return self.model.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            parts = [f"{'.'.join(map(str, e['loc'])) or 'the reply'}: {e['msg']}" for e in errors[:3]]
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise SchemaMismatch(_shorten("; ".join(parts) + more)) from None


def make_reply_schema(schema: Any, base_dir: Path | None, where: str) -> ReplySchema:
    """The schema of a state's `schema:` (a dict, or `{python: module:Model}` imported now); raises BindingError."""
    reference = getattr(schema, "python", None)
    if reference is None:
        return InlineSchema(schema)
    model = import_reference(reference, base_dir, where)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise BindingError(f"{where}: '{reference}' is not a pydantic model (a subclass of pydantic.BaseModel)")
    try:
        return PydanticSchema(model)
    except Exception as exc:  # noqa: BLE001 - a model pydantic cannot describe as JSON Schema
        raise BindingError(f"{where}: {reference} has no JSON Schema: {type(exc).__name__}: {exc}") from None


def validation_feedback(error: str) -> str:
    """The user message sent after a reply that does not parse or validate (`match:` rules may look for it)."""
    return (f"The reply is not valid: {error}\n"
            "Answer again with only the corrected JSON, without any other text.")


def _shorten(text: str) -> str:
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 3] + "..."
