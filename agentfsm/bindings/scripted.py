"""The `scripted` provider: deterministic replies listed in the YAML or a file, for offline runs and tests.

Rules (`{reply, state, match, times}`) are tried first, in order; then plain replies are
used in order. A rule's `match` is a regular expression searched in the prompt, and its
reply may insert the match's groups (`\\1`, `\\g<name>`), so a scripted model can answer
a family of prompts. Token counts are word counts, recorded like a real provider's.

A rule may carry `tool_calls: [{name, arguments}]` (with or without a `reply`): in an
`llm` state with `tools:` they run like a real model's native tool calls, then the
model is called again with their results. Their ids are `call_1`, `call_2`... in the run.

`match` searches the latest message (`LLMRequest.prompt`): the prompt on a state's first
call; after a reply that did not parse or match the state's `schema`, the feedback, which
starts with `The reply is not valid:`; after tool calls, their results, one line per call
in the order asked, `Result of NAME: JSON` or `Error from NAME: {"error": {"type": ...,
"message": ...}}` (`tool_results_text`), so `match: 'Result of calc: (\\d+)'` reads a
calculator's answer. The provider has no JSON mode; it ignores the request's `json_mode`
and `json_schema`, and the tools offered (it calls what its script says).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agentfsm.bindings.imports import BindingError
from agentfsm.bindings.llm import LLMReply, LLMRequest, ToolCall, count_tokens
from agentfsm.runtime.errors import StateError
from agentfsm.spec.models import ScriptedLLM, ScriptedReply
from agentfsm.spec.yamlsource import load_yaml_file

_REPLIES: TypeAdapter[list[str | ScriptedReply]] | None = None
"""Reads a replies file; made when one is read (a pydantic adapter costs milliseconds to build)."""


@dataclass(slots=True)
class _RunCursor:
    next_plain: int = 0
    rule_uses: dict[int, int] = field(default_factory=dict)
    tool_calls: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"plain": self.next_plain, "rules": {str(k): v for k, v in self.rule_uses.items()},
                "tool_calls": self.tool_calls}

    @classmethod
    def from_json(cls, position: dict[str, Any]) -> _RunCursor:
        rules = position.get("rules") or {}
        return cls(int(position.get("plain", 0)), {int(k): int(v) for k, v in rules.items()},
                   int(position.get("tool_calls", 0)))


class ScriptedClient:
    """Replays scripted replies; each run has its own position in the script, kept in the request's session."""

    provider = "scripted"

    def __init__(self, name: str, config: ScriptedLLM, base_dir: Path | None) -> None:
        self.name = name
        self.model = config.model
        replies: list[str | ScriptedReply] = list(config.replies)
        if config.replies_file:
            replies += _read_replies_file(name, config.replies_file, base_dir)
        self.rules = [(i, r, re.compile(r.match) if r.match else None) for i, r in enumerate(replies)
                      if isinstance(r, ScriptedReply)]
        self.plain = [r for r in replies if isinstance(r, str)]
        self._cursors: dict[str, _RunCursor] = {}

    async def complete(self, request: LLMRequest) -> LLMReply:
        if request.session is not None:
            cursor = _RunCursor.from_json(request.session)
        else:
            cursor = self._cursors.setdefault(request.run_id, _RunCursor())
        text, calls = self._choose(cursor, request)
        prompt_text = " ".join([request.system or "", *(m.content for m in request.messages())])
        tool_calls = []
        for call in calls:
            cursor.tool_calls += 1
            tool_calls.append(ToolCall(f"call_{cursor.tool_calls}", call["name"], call["arguments"]))
        completion = count_tokens(text) + sum(count_tokens(json.dumps(c)) for c in calls)
        position = cursor.as_json()
        if request.session is not None:
            request.session.clear()
            request.session.update(position)
        if request.on_token is not None and text:
            request.on_token(text)
        return LLMReply(text, self.model, count_tokens(prompt_text), completion,
                        finish_reason="tool_calls" if tool_calls else "stop", tool_calls=tuple(tool_calls),
                        script=position)

    def _choose(self, cursor: _RunCursor, request: LLMRequest) -> tuple[str, list[dict[str, Any]]]:
        for index, rule, pattern in self.rules:
            if rule.state is not None and rule.state != request.state:
                continue
            if rule.times is not None and cursor.rule_uses.get(index, 0) >= rule.times:
                continue
            found = pattern.search(request.prompt) if pattern is not None else None
            if pattern is not None and found is None:
                continue
            cursor.rule_uses[index] = cursor.rule_uses.get(index, 0) + 1
            try:
                text = _as_text(_expand(rule.reply, found)) if rule.reply is not None else ""
                calls = [_expand(call.model_dump(), found) for call in rule.tool_calls]
                return text, calls
            except re.error as exc:  # validated at load time; kept for replies built in Python
                raise StateError("llm.error", f"scripted binding '{self.name}': bad reply template: {exc}") from None
        if cursor.next_plain < len(self.plain):
            cursor.next_plain += 1
            return self.plain[cursor.next_plain - 1], []
        raise StateError(
            "llm.error",
            f"scripted binding '{self.name}' has no reply left for this call "
            f"({len(self.plain)} plain replies used, no rule matched)",
            detail={"binding": self.name, "prompt": request.prompt[:200]},
        )


def _expand(reply: Any, found: re.Match[str] | None) -> Any:
    """Insert the match's groups into every string of the reply."""
    if found is None:
        return reply
    if isinstance(reply, str):
        return found.expand(reply)
    if isinstance(reply, dict):
        return {key: _expand(value, found) for key, value in reply.items()}
    if isinstance(reply, list):
        return [_expand(value, found) for value in reply]
    return reply


def _as_text(reply: Any) -> str:
    return reply if isinstance(reply, str) else json.dumps(reply)


def _read_replies_file(name: str, relative: str, base_dir: Path | None) -> Sequence[str | ScriptedReply]:
    path = (base_dir or Path.cwd()) / relative
    where = f"llms.{name}.replies_file"
    document, problems = load_yaml_file(path, str(path), mapping_root=False)  # a bare list of replies is fine
    errors = [p for p in problems if p.severity == "error"]
    if errors or document is None:
        raise BindingError(f"{where}: {errors[0] if errors else 'cannot read ' + str(path)}")
    data = document.data
    if isinstance(data, dict):
        data = data.get("replies", data)
    try:
        return _replies().validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BindingError(f"{where}: {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _replies() -> TypeAdapter[list[str | ScriptedReply]]:
    global _REPLIES
    if _REPLIES is None:
        _REPLIES = TypeAdapter(list[str | ScriptedReply])
    return _REPLIES
