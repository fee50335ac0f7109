"""The LLM binding interface, and parsing of replies (`parse: text | json | lines`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agentfsm.runtime.errors import StateError


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One call: the rendered prompts and who is asking."""

    binding: str
    state: str
    prompt: str
    system: str | None = None
    run_id: str = ""


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
