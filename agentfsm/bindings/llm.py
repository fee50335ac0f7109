"""The LLM binding interface, parsing of replies (`parse: text | json | lines`) and reply schemas."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from agentfsm.bindings.imports import BindingError, import_reference
from agentfsm.runtime.errors import StateError


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call: the rendered prompts and who is asking.

    `prompt` is always the latest user message. `history` holds the earlier turns of the
    conversation (`{"role": "user" | "assistant", "content": ...}`), oldest first; it is
    empty except when a reply is fed back for correction (`parse_retries`). `json_mode`
    asks for a JSON reply (`parse: json`) and `json_schema` for one matching that schema;
    a provider that has no such mode ignores both.
    """

    binding: str
    state: str
    prompt: str
    system: str | None = None
    run_id: str = ""
    history: tuple[dict[str, str], ...] = ()
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None

    def messages(self) -> list[dict[str, str]]:
        """The conversation as chat messages, without the system prompt: the history, then the prompt."""
        return [*self.history, {"role": "user", "content": self.prompt}]


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
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
            continue
        if isinstance(value, dict | list):
            return value
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
