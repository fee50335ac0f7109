"""A recorded run as replay reads it: its steps, and every LLM and tool call with its full request and answer.

Built from the run's trace (the observability layer's `llm_call` and `tool_call` entries, `agentfsm trace`) and its
history (`Runs.history`): nothing here records anything of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentfsm.store.base import StepRow


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One LLM or tool call of the recorded run, with what answered it."""

    kind: Literal["llm", "tool"]
    step: int
    state: str
    binding: str
    request: Any
    """An LLM call's canonical request (`bindings.llm.request_json`); a tool call's arguments."""
    answer: Any
    """An LLM call's canonical reply (`bindings.llm.reply_json`); a tool call's result."""
    error: dict[str, Any] | None = None
    via: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedStep:
    step: int
    state: str | None
    event: str | None
    event_data: Any
    next_state: str | None


@dataclass(slots=True)
class Recording:
    """What replay needs of a recorded run."""

    run_id: str
    machine: str
    source: str | None
    """The machine's source text as the run started it (None: built in Python)."""
    path: str | None
    inputs: dict[str, Any]
    status: str
    output: Any
    error: dict[str, Any] | None
    steps: list[RecordedStep]
    calls: list[RecordedCall] = field(default_factory=list)
    llms: dict[str, str] = field(default_factory=dict)
    """The `--llm` overrides the run started with (a live binding calls what the run called)."""

    @property
    def has_calls(self) -> bool:
        return bool(self.calls)

    def steps_from(self, point: int) -> list[RecordedStep]:
        """The steps taken at and after point `point` (the steps numbered `point` and above)."""
        return [step for step in self.steps if step.step >= point]

    def calls_from(self, point: int) -> list[RecordedCall]:
        return [call for call in self.calls if call.step >= point]


def normal(value: Any) -> Any:
    """A value as the trace stores it (JSON), so a live request compares equal to its recording."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def recorded_calls(entries: Iterable[dict[str, Any]], steps: Sequence[StepRow]) -> list[RecordedCall]:
    """The LLM and tool calls of the trace entries recorded on the steps of `steps` (the head branch's lineage:
    entries of steps another branch abandoned are left out)."""
    kept = {(row.branch, row.step) for row in steps}
    calls = []
    for entry in entries:
        if (entry.get("branch"), entry.get("step")) not in kept:
            continue
        if entry.get("kind") == "llm_call":
            calls.append(RecordedCall("llm", entry["step"], str(entry.get("state")), str(entry.get("binding")),
                                      entry.get("request"), entry.get("reply"), entry.get("error")))
        elif entry.get("kind") == "tool_call":
            calls.append(RecordedCall("tool", entry["step"], str(entry.get("state")), str(entry.get("tool")),
                                      normal(entry.get("arguments")), entry.get("result"), entry.get("error"),
                                      entry.get("via")))
    return calls


def recorded_steps(rows: Sequence[StepRow]) -> list[RecordedStep]:
    return [RecordedStep(row.step, row.state, row.event, row.event_data, row.next_state)
            for row in rows if row.step > 0]
