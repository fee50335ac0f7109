"""Replaying a recorded run offline: the machine runs again, in memory, and every LLM and tool call is served from
the recording by matching its request; the first place the replay parts from the recording is its divergence.

A call is served by the first call of the same binding not served yet whose request is equal (an LLM call's
canonical request, `bindings.llm.request_json`, minus the model, which only the reply names; a tool call's
arguments). A request with no such recording stops the replay there: the divergence names the step, the state
and the request, with a diff against the call the recording made next on that binding. Otherwise, once the
replay ends, its steps are compared with the recorded ones (the state and where it led), then its status and
output. Bindings named `live` call their real provider or tool instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentfsm.bindings.llm import LLMReply, LLMRequest, ToolCall, request_json
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.events import StepEnded, StepStarted
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.testing.expect import diff
from agentfsm.testing.recording import RecordedCall, RecordedStep, Recording, normal


LABELS = ("recorded", "replay")
"""How a divergence's diff names its sides."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where a replay first differed from its recording."""

    step: int
    state: str | None
    what: str
    diff: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "state": self.state, "what": self.what, "diff": self.diff}


@dataclass(slots=True)
class ReplayResult:
    run_id: str
    divergence: Divergence | None
    status: str | None
    output: Any
    steps: int
    served: dict[str, int] = field(default_factory=lambda: {"llm": 0, "tool": 0})
    live: int = 0

    @property
    def identical(self) -> bool:
        return self.divergence is None

    def as_dict(self) -> dict[str, Any]:
        """The JSON `agentfsm replay --json` prints."""
        return {"run_id": self.run_id, "identical": self.identical, "steps": self.steps, "served": self.served,
                "live": self.live, "status": self.status, "output": self.output,
                "divergence": None if self.divergence is None else self.divergence.as_dict()}


class _Replay:
    """One replay's state: the recorded calls not served yet, the step the replay is at, what it did."""

    def __init__(self, recording: Recording, point: int) -> None:
        self.queues: dict[tuple[str, str], list[RecordedCall]] = {}
        for call in recording.calls_from(point):
            self.queues.setdefault((call.kind, call.binding), []).append(call)
        self.recorded = recording.steps_from(point)
        self.step = point
        self.state: str | None = None
        self.taken: list[RecordedStep] = []
        self.divergence: Divergence | None = None
        self.served = {"llm": 0, "tool": 0}
        self.task: asyncio.Task[RunResult] | None = None

    def on_step_started(self, *, event: StepStarted) -> None:
        self.step, self.state = event.step, event.state

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.taken.append(RecordedStep(event.step, event.state, event.event, event.event_data, event.next_state))

    def serve(self, kind: str, binding: str, request: Any, describe: str) -> RecordedCall:
        """The recorded call answering this request, or stop the replay here (its divergence)."""
        queue = self.queues.get((kind, binding), [])
        for index, call in enumerate(queue):
            if _comparable(call.request) == _comparable(request):
                self.served[kind] += 1
                return queue.pop(index)
        expected = queue[0].request if queue else None
        what = f"{describe} has no recording" + ("" if queue else f" (the recording has no more {kind} calls of "
                                                                  f"'{binding}')")
        self.stop(Divergence(self.step, self.state, what, diff(_comparable(expected), _comparable(request), LABELS)
                             if queue else None))
        raise AssertionError("unreachable")  # stop() raises

    def stop(self, divergence: Divergence) -> None:
        """End the replay at once: no catch or retry rule of the machine may turn this into another path."""
        if self.divergence is None:
            self.divergence = divergence
        task = asyncio.current_task()
        if task is not None:
            task.cancel()
        raise asyncio.CancelledError


def _comparable(value: Any) -> Any:
    """An LLM request without its model (named by the reply, not the request), as JSON."""
    if isinstance(value, dict) and "messages" in value:
        value = {key: item for key, item in value.items() if key != "model"}
    return normal(value)


class ServedLLM:
    """An LLM binding answering from the recording."""

    def __init__(self, name: str, replay: _Replay) -> None:
        self.name = name
        self.replay = replay

    async def complete(self, request: LLMRequest) -> LLMReply:
        canonical = request_json(request)
        call = self.replay.serve("llm", self.name, canonical, f"the request to '{self.name}' from state "
                                                                f"'{request.state}'")
        if call.answer is None:
            error = call.error or {"type": "llm.error", "message": "the recorded call failed"}
            raise StateError(str(error.get("type", "llm.error")), str(error.get("message", "")))
        reply = call.answer
        script = reply.get("script")
        if request.session is not None and script is not None:
            request.session.clear()
            request.session.update(script)
        text = str(reply.get("text") or "")
        if request.on_token is not None and text:
            request.on_token(text)
        calls = tuple(ToolCall(str(c.get("id")), str(c.get("name")), dict(c.get("arguments") or {}),
                               c.get("invalid"), c.get("raw")) for c in reply.get("tool_calls") or ())
        return LLMReply(text, str(reply.get("model") or ""), int(reply.get("prompt_tokens") or 0),
                        int(reply.get("completion_tokens") or 0), str(reply.get("finish_reason") or "stop"),
                        int(reply.get("retries") or 0), calls, script)


class ServedTool:
    """A tool binding answering from the recording."""

    description: str | None = None

    def __init__(self, name: str, replay: _Replay, real: Any = None) -> None:
        self.name = name
        self.replay = replay
        self.real = real

    @property
    def parameters(self) -> dict[str, Any]:
        return self.real.parameters if self.real is not None else {"type": "object"}

    async def call(self, args: Mapping[str, Any]) -> Any:
        call = self.replay.serve("tool", self.name, normal(dict(args)), f"the call of tool '{self.name}'")
        if call.error is not None:
            raise StateError(str(call.error.get("type", "tool.error")), str(call.error.get("message", "")),
                             detail=call.error.get("detail"))
        return call.answer


def served_bindings(replay: _Replay, llms: Collection[str], tools: Collection[str], live: Collection[str]
                    ) -> tuple[dict[str, ServedLLM], dict[str, ServedTool]]:
    return ({name: ServedLLM(name, replay) for name in llms if name not in live},
            {name: ServedTool(name, replay) for name in tools if name not in live})


def _compare(recorded: list[RecordedStep], taken: list[RecordedStep]) -> Divergence | None:
    """The first step where the replay went elsewhere than the recording."""
    for mine, theirs in zip(taken, recorded, strict=False):
        if mine.state != theirs.state:
            return Divergence(mine.step, mine.state, f"the recording ran state '{theirs.state}' at this step, "
                                                     f"the replay '{mine.state}'")
        if mine.next_state != theirs.next_state or mine.event != theirs.event:
            return Divergence(mine.step, mine.state,
                              f"the recording went on to '{theirs.next_state}' (event '{theirs.event}'), the replay "
                              f"to '{mine.next_state}' (event '{mine.event}')")
    if len(taken) < len(recorded):
        missing = recorded[len(taken)]
        return Divergence(missing.step, missing.state, f"the replay stopped before step {missing.step} "
                                                       f"(state '{missing.state}') of the recording")
    if len(taken) > len(recorded):
        extra = taken[len(recorded)]
        return Divergence(extra.step, extra.state, f"the replay went on past the recording's end, to step "
                                                   f"{extra.step} (state '{extra.state}')")
    return None


async def _drive(machine: StateMachine, context: StateContext, replay: _Replay, recording: Recording,
                 observers: list[object]) -> RunResult:
    """Run to the end, delivering the recorded events when the replay waits where the recording did."""
    result = await machine.run(context=context, observers=observers, run_id=recording.run_id)
    while result.status == "waiting":
        later = [s for s in replay.recorded if s.step > result.steps and s.state == result.context.state]
        if not later:
            return result
        if later[0].event == "timeout":
            result.context.mailbox.deadline = 1.0  # long past: the wait's timer has run out, as it had
        else:
            result.context.mailbox.deliver(str(later[0].event), later[0].event_data)
        result = await machine.run(context=result.context, observers=observers, run_id=recording.run_id)
    return result


async def replay_run(machine: StateMachine, context: StateContext, recording: Recording, replay: _Replay,
                     observers: list[object] = ()) -> ReplayResult:  # type: ignore[assignment]
    """Run `machine` from `context` with bindings served by `replay`, and compare it with the recording."""
    task = asyncio.ensure_future(_drive(machine, context, replay, recording, [replay, *observers]))
    replay.task = task
    try:
        result: RunResult | None = await task
    except asyncio.CancelledError:
        if replay.divergence is None:
            raise  # cancelled from outside (Ctrl-C): not a divergence
        result = None
    divergence = replay.divergence or _compare(replay.recorded, replay.taken)
    if divergence is None and result is not None:
        divergence = _outcome(recording, result)
    steps = replay.taken[-1].step if replay.taken else replay.step
    return ReplayResult(recording.run_id, divergence, result.status if result else None,
                        result.output if result else None, steps, dict(replay.served))


def _outcome(recording: Recording, result: RunResult) -> Divergence | None:
    last = recording.steps[-1] if recording.steps else None
    where = (last.step, last.state) if last else (0, None)
    if result.status != recording.status:
        return Divergence(*where, f"the recording ended {recording.status}, the replay {result.status}")
    if normal(result.output) != normal(recording.output):
        return Divergence(*where, "the output differs",
                          diff(normal(recording.output), normal(result.output), LABELS))
    return None


def new_replay(recording: Recording, point: int) -> _Replay:
    """The state of a replay of `recording` from `point` (1: the start)."""
    return _Replay(recording, point)
