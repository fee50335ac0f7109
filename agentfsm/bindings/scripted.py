"""The `scripted` provider: deterministic replies listed in the YAML or a file, for offline runs and tests.

Rules (`{reply, state, match, times}`) are tried first, in order; then plain replies are
used in order. A rule's `match` is a regular expression searched in the prompt, and its
reply may insert the match's groups (`\\1`, `\\g<name>`), so a scripted model can answer
a family of prompts. Token counts are word counts, recorded like a real provider's.

`match` searches the latest user message: after a reply that did not parse or match the
state's `schema`, that is the feedback, which starts with `The reply is not valid:`. The
provider has no JSON mode; it ignores the request's `json_mode` and `json_schema`.
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
from agentfsm.bindings.llm import LLMReply, LLMRequest, count_tokens
from agentfsm.runtime.errors import StateError
from agentfsm.spec.models import ScriptedLLM, ScriptedReply
from agentfsm.spec.yamlsource import load_yaml_file

_REPLIES = TypeAdapter(list[str | ScriptedReply])


@dataclass(slots=True)
class _RunCursor:
    next_plain: int = 0
    rule_uses: dict[int, int] = field(default_factory=dict)


class ScriptedClient:
    """Replays scripted replies; each run has its own position in the script."""

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
        cursor = self._cursors.setdefault(request.run_id, _RunCursor())
        text = self._choose(cursor, request)
        prompt_text = " ".join([request.system or "", *(m["content"] for m in request.messages())])
        return LLMReply(text, self.model, count_tokens(prompt_text), count_tokens(text))

    def _choose(self, cursor: _RunCursor, request: LLMRequest) -> str:
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
                return _as_text(_expand(rule.reply, found))
            except re.error as exc:  # validated at load time; kept for replies built in Python
                raise StateError("llm.error", f"scripted binding '{self.name}': bad reply template: {exc}") from None
        if cursor.next_plain < len(self.plain):
            cursor.next_plain += 1
            return self.plain[cursor.next_plain - 1]
        raise StateError(
            "llm.error",
            f"scripted binding '{self.name}' has no reply left for this call "
            f"({len(self.plain)} plain replies used, no rule matched)",
            detail={"binding": self.name, "prompt": request.prompt[:200]},
        )

    def forget_run(self, run_id: str) -> None:
        self._cursors.pop(run_id, None)


class ForgetScriptedRuns:
    """A runtime hook dropping each scripted client's position in its script when a run ends."""

    def __init__(self, clients: list[ScriptedClient]) -> None:
        self.clients = clients

    def on_run_end(self, context: Any, result: Any) -> None:
        for client in self.clients:
            client.forget_run(context.run_id)


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
        return _REPLIES.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BindingError(f"{where}: {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
