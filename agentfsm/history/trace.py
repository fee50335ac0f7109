"""A recorded run's trace: every event of the run as an ordered JSON entry, kept with the step it belongs to.

`TraceRecorder` is an observer on the typed event stream. It turns each event into an entry
(`trace_entry`), buffers the entries of a step, and hands them to the `StoreRecorder`, which
writes them in the step's own transaction (so tracing costs one insert per step, never a
transaction of its own). A large value (a long prompt, a reply, a tool's output) is stored once
per run under the digest of its text (`agentfsm.history.payloads`), and the entry refers to it as
`{"$ref": DIGEST}`: a conversation that grows by one message per call adds one message per call
to the store, not the whole conversation again. Secrets this process has read are redacted
before anything is digested or stored.

An entry as stored: `{"seq", "kind", "at", "step", ...fields}`; the reader adds `run_id` and
`branch` (see `agentfsm.history.traces` for reading, and docs/observability.md for every kind).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentfsm.bindings.known_secrets import known_secrets
from agentfsm.bindings.llm import reply_json, request_json
from agentfsm.history.payloads import Payloads, dumps
from agentfsm.history.recorder import redacted
from agentfsm.runtime.events import (
    EVENT_METHODS,
    ChildEnded,
    ChildStarted,
    ErrorRaised,
    LLMCallEnded,
    MemoryWritten,
    MessageReceived,
    MessageSent,
    RetryScheduled,
    RunEnded,
    RunEvent,
    RunPaused,
    RunStarted,
    StepEnded,
    StepStarted,
    ToolCallEnded,
    TransitionTaken,
    WaitStarted,
)
from agentfsm.runtime.model import StateContext
from agentfsm.store.base import CheckpointRow, TraceRow, TraceWrite

Builder = Callable[[Any], dict[str, Any]]
"""Makes an entry's own fields (its `kind` included) from an event."""


def _run_started(event: RunStarted) -> dict[str, Any]:
    return {"kind": "run_started", "machine": event.machine, "state": event.state, "resumed": event.resumed}


def _state_entered(event: StepStarted) -> dict[str, Any]:
    return {"kind": "state_entered", "state": event.state, "visit": event.visit}


def _state_exited(event: StepEnded) -> dict[str, Any]:
    entry = {"kind": "state_exited", "state": event.state, "event": event.event, "next_state": event.next_state,
             "duration": event.duration, "retries": event.retries, "result": event.result, "error": event.error}
    if event.event_data is not None:
        entry["event_data"] = event.event_data
    return entry


def _transition(event: TransitionTaken) -> dict[str, Any]:
    return {"kind": "transition", "source": event.source, "target": event.target, "event": event.event,
            "rule": event.rule, "label": event.label, "caught": event.caught}


def _error(event: ErrorRaised) -> dict[str, Any]:
    return {"kind": "error", "state": event.state, "error": event.error, "caught_by": event.caught_by}


def _retry(event: RetryScheduled) -> dict[str, Any]:
    return {"kind": "retry", "state": event.state, "attempt": event.attempt, "delay": event.delay,
            "error": event.error}


def _llm_call(event: LLMCallEnded) -> dict[str, Any]:
    record = event.record
    model = record.model
    return {
        "kind": "llm_call", "state": event.state, "binding": record.binding, "model": model,
        "request": None if event.request is None else request_json(event.request, model),
        "reply": None if event.reply is None else reply_json(event.reply),
        "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
        "duration": record.duration, "finish_reason": record.finish_reason, "retries": record.retries,
        "error": record.error,
    }


def _tool_call(event: ToolCallEnded) -> dict[str, Any]:
    record = event.record
    return {"kind": "tool_call", "state": event.state, "tool": record.binding, "arguments": record.args,
            "result": record.result, "error": record.error, "duration": record.duration, "via": record.via,
            "call_id": record.call_id}


def _wait(event: WaitStarted) -> dict[str, Any]:
    return {"kind": "wait", "state": event.state, "events": list(event.events), "deadline": event.deadline}


def _paused(event: RunPaused) -> dict[str, Any]:
    return {"kind": "paused", "state": event.state, "reason": event.reason}


def _run_ended(event: RunEnded) -> dict[str, Any]:
    result = event.result
    return {"kind": "run_ended", "status": result.status, "output": result.output, "error": result.error,
            "usage": result.usage, "waiting": result.waiting}


def _message_sent(event: MessageSent) -> dict[str, Any]:
    return {"kind": "message_sent", "team_run": event.team_run, "sender": event.sender,
            "recipient": event.recipient, "topic": event.topic, "data": event.content,
            "message_id": event.message_id}


def _message_received(event: MessageReceived) -> dict[str, Any]:
    return {"kind": "message_received", "team_run": event.team_run, "agent": event.agent,
            "sender": event.sender, "topic": event.topic, "message_id": event.message_id}


def _memory_write(event: MemoryWritten) -> dict[str, Any]:
    return {"kind": "memory_write", "team_run": event.team_run, "agent": event.agent, "op": event.op,
            "key": event.key, "value": event.value, "version": event.version}


def _child_started(event: ChildStarted) -> dict[str, Any]:
    return {"kind": "child_started", "child": event.child, "child_run": event.child_run, "reused": event.reused}


def _child_ended(event: ChildEnded) -> dict[str, Any]:
    return {"kind": "child_ended", "child": event.child, "child_run": event.child_run, "status": event.status,
            "error": event.error}


BUILDERS: dict[type[RunEvent], Builder] = {
    RunStarted: _run_started, StepStarted: _state_entered, StepEnded: _state_exited, TransitionTaken: _transition,
    ErrorRaised: _error, RetryScheduled: _retry, LLMCallEnded: _llm_call, ToolCallEnded: _tool_call,
    WaitStarted: _wait, RunPaused: _paused, RunEnded: _run_ended, MessageSent: _message_sent,
    MessageReceived: _message_received, MemoryWritten: _memory_write, ChildStarted: _child_started,
    ChildEnded: _child_ended,
}
"""How each kind of event becomes a trace entry; `register_entry` adds more."""


def register_entry(event_type: type[RunEvent], builder: Builder) -> None:
    """Trace another kind of event (a team's message, a memory write): `builder` returns its entry's fields,
    `kind` included. The event must have `step` (or the entry is filed under step 0)."""
    BUILDERS[event_type] = builder


def trace_entry(event: RunEvent) -> dict[str, Any] | None:
    """The entry for `event` (without `seq`), or None for an event the trace does not keep (tokens, starts)."""
    builder = BUILDERS.get(type(event))
    if builder is None:
        return None
    entry = builder(event)
    entry["at"] = event.at
    entry["step"] = _step_of(event)
    return entry


def _step_of(event: RunEvent) -> int:
    if isinstance(event, RunEnded):
        return event.result.steps
    return int(getattr(event, "step", 0) or 0)


_SHRUNK = ("result", "arguments", "request", "reply", "output", "event_data", "value", "data", "error")
"""The fields of an entry that hold data of any size."""


class TraceRecorder:
    """Turns a recorded run's events into trace entries, which the `StoreRecorder` writes with each step.

    A step is stored as one compact record (`kind: "step"`) that reading expands into its
    `state_entered`, `transition` and `state_exited` entries, numbered around the entries the step
    made meanwhile (calls, retries, errors): one event (`StepEnded`) and one small JSON object per step
    is what keeps an always-on trace cheap. Watching cannot break a run: a failure here is logged
    and the run goes on (not critical). Entries no step took (a run broken off) are written by
    `flush_quietly` in `agentfsm.history.advance`.
    """

    critical = False

    def __init__(self, context: StateContext, branch: str, first_seq: int = 1) -> None:
        self.context = context
        self.branch = branch
        self.seq = first_seq - 1
        self.entries: list[dict[str, Any] | list[Any]] = []
        self.payloads = Payloads()
        self.ended = context.step
        """The last step whose end was traced: an entry of a later step opens that step first."""
        self.entered: int | None = None
        """The number kept for the open step's `state_entered` entry."""
        # no on_event: it would receive tokens too, and make every provider stream
        for event_type in BUILDERS.keys() - _OWN:
            method = EVENT_METHODS.get(event_type)
            if method is not None:
                setattr(self, method, self.on_other)

    def on_run_started(self, *, event: RunStarted) -> None:
        self.add(trace_entry(event))

    def on_step_ended(self, *, event: StepEnded) -> None:
        entered = self.open(event.step)
        taken = self.context.mailbox.taken
        if taken is not None:
            self.add({"kind": "event_delivered", "event": taken.name, "data": taken.data}, event.at, event.step)
        transition = None
        if event.next_state is not None:
            self.seq += 1
            transition = self.seq
        self.seq += 1
        extra = None
        if event.result is not None or event.error is not None or event.event_data is not None:
            shrink = self.payloads.shrink
            extra = {"result": shrink(event.result, 0, "result"), "error": shrink(event.error, 0, "error")}
            if event.event_data is not None:
                extra["event_data"] = shrink(event.event_data, 0, "event_data")
        # positional (STEP_FIELDS): a list encodes in a third of the time a dict takes, on every step
        self.entries.append([entered, event.started_at, event.step, event.state, event.visit, event.event,
                             event.next_state, event.duration, event.retries, transition, event.rule, event.label,
                             self.seq, event.at, extra])
        self.ended, self.entered = event.step, None

    def open(self, step: int) -> int:
        """The number of `state_entered` for `step`, kept the first time an entry of that step comes."""
        if self.entered is None:
            self.seq += 1
            self.entered = self.seq
        return self.entered

    def on_error(self, *, event: ErrorRaised) -> None:
        self.within(event.step)
        self.add(trace_entry(event))

    def on_retry(self, *, event: RetryScheduled) -> None:
        self.within(event.step)
        self.add(trace_entry(event))

    def on_llm_call_ended(self, *, event: LLMCallEnded) -> None:
        self.within(event.step)
        self.add(trace_entry(event))

    def on_tool_call_ended(self, *, event: ToolCallEnded) -> None:
        self.within(event.step)
        self.add(trace_entry(event))

    def within(self, step: int) -> None:
        """An entry made while a step runs: that step's `state_entered` comes before it."""
        if step > self.ended:
            self.open(step)

    def on_wait(self, *, event: WaitStarted) -> None:
        self.entered = None  # the step was undone: it is entered again when the run resumes
        self.add(trace_entry(event))

    def on_pause(self, *, event: RunPaused) -> None:
        self.add(trace_entry(event))

    def on_run_ended(self, *, event: RunEnded) -> None:
        self.add(trace_entry(event))

    def on_other(self, *, event: RunEvent) -> None:
        """Events of kinds registered with `register_entry` (a team's messages, memory writes, child runs)."""
        entry = trace_entry(event)
        if entry is None:
            return
        if event.run_id != self.context.run_id:  # passed up by a child run (an agent): filed under this run's step
            entry["from_run"], entry["from_step"], entry["step"] = event.run_id, entry["step"], self.context.step
        self.within(entry["step"])
        self.add(entry)

    def add(self, entry: dict[str, Any] | None, at: float | None = None, step: int | None = None) -> None:
        """Buffer one entry (`at` and `step` fill in what a builder left out)."""
        if entry is None:
            return
        if at is not None:
            entry["at"] = at
        if step is not None:
            entry["step"] = step
        self.seq += 1
        entry["seq"] = self.seq
        for key in _SHRUNK:
            value = entry.get(key)
            if value is not None and not isinstance(value, int | float | bool):
                entry[key] = self.payloads.shrink(value, 0, key)
        self.entries.append(entry)

    def note(self, kind: str, **fields: Any) -> None:
        """Add an entry that is not an event of the stream (a breakpoint hit, a watched value), at the current step."""
        import time

        self.add({"kind": kind, **fields}, time.time(), self.context.step)

    def checkpoints(self, reached: list[CheckpointRow], step: int) -> None:
        for checkpoint in reached:
            self.add({"kind": "checkpoint", "name": checkpoint.name, "state": checkpoint.state,
                      "point": checkpoint.point}, checkpoint.created_at, step)

    def take(self) -> TraceWrite | None:
        """The buffered entries as one row (with the payloads they refer to), or None when there are none."""
        entries = self.entries
        if not entries:
            return None
        self.entries = []
        text = dumps(entries)
        if known_secrets():
            text = redacted(text)
        first = min(entry["seq"] if isinstance(entry, dict) else entry[0] for entry in entries)
        step = self.context.step
        return TraceWrite([TraceRow(first, self.seq, self.branch, step, text)], self.payloads.take())


STEP_FIELDS = ("seq", "at", "step", "state", "visit", "event", "next_state", "duration", "retries", "transition",
               "rule", "label", "exited", "ended", "extra")
"""The fields of a stored step record, in order: `seq` numbers its `state_entered` entry, `transition` and
`exited` the other two; `extra` holds the step's result, error and event data (null when it has none).
Reading expands a record into its entries: `agentfsm.history.trace_read.step_entries`."""


def lone_entry(seq: int, branch: str, step: int, at: float, entry: dict[str, Any]) -> TraceWrite:
    """A write of one entry made outside a run's drive (a rollback)."""
    text = dumps([{**entry, "seq": seq, "at": at, "step": step}])
    return TraceWrite([TraceRow(seq, seq, branch, step, redacted(text) if known_secrets() else text)])


_OWN = frozenset({RunStarted, StepStarted, StepEnded, TransitionTaken, ErrorRaised, RetryScheduled, LLMCallEnded,
                  ToolCallEnded, WaitStarted, RunPaused, RunEnded})
