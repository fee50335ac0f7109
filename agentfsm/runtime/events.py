"""The typed event stream of a run: what observers receive, one frozen dataclass per kind of event.

Every event names its run and carries `at`, the wall-clock time it happened (seconds since
the epoch). Events hold values an observer may keep, send elsewhere or read later, with
one exception: `data` on step events is a read-only view of the run's live context data,
for observers that look at it while the step is reported (a watch, a breakpoint); copy
what you keep. Errors are the taxonomy's JSON objects (`{type, message, state, detail}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from agentfsm.runtime.calls import CallRecord, LLMCallRecord, ToolCallRecord

if TYPE_CHECKING:
    from agentfsm.runtime.loop import RunResult

_NO_DATA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent:
    """What every event has: the run it belongs to and when it happened."""

    run_id: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(RunEvent):
    """The loop starts (or, with `resumed`, continues) a run; `state` is the state about to run."""

    machine: str
    state: str
    step: int
    """Steps the run had taken before: 0 for a new run."""
    resumed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(RunEvent):
    """A state is entered: step `step`, its `visit`-th visit; `data` is the context it starts from (a live view)."""

    step: int
    state: str
    visit: int
    data: Mapping[str, Any] = field(default_factory=lambda: _NO_DATA, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEnded(RunEvent):
    """What one step did: the event it produced, where it leads, how long it took, its calls and error.

    `next_state` is None when the step ended the run (a final or fail state, or an error no
    rule caught). `event_data` is the data of the step's event (an error object, a received
    event's data), which the next state reads; `result` is the state's own result.
    """

    step: int
    state: str
    event: str | None
    next_state: str | None
    started_at: float
    duration: float
    retries: int = 0
    error: dict[str, Any] | None = None
    result: Any = None
    calls: tuple[CallRecord, ...] = ()
    event_data: Any = None
    data: Mapping[str, Any] = field(default_factory=lambda: _NO_DATA, repr=False, compare=False)
    """The context after the step (a read-only view of the live data: copy what you keep)."""
    visit: int = 1
    """Which visit of the state this was (as `StepStarted` said)."""
    rule: int | None = None
    """The transition rule that matched, as `TransitionTaken` has it (so one event tells the whole step)."""
    label: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionTaken(RunEvent):
    """The run moves from `source` to `target` on `event`.

    `rule` is the index of the transition rule that matched, among the source's rules;
    None when the state named its next state itself or an error was caught (`caught`).
    """

    step: int
    source: str
    target: str
    event: str
    rule: int | None = None
    label: str | None = None
    """How the rule reads (its event and guard), when it has a label."""
    caught: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRaised(RunEvent):
    """A step failed; `caught_by` names the state a catch rule sends the run to (None: the run ends)."""

    step: int
    state: str
    error: dict[str, Any]
    caught_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(RunEvent):
    """A state's work failed and is tried again after `delay` seconds (retry number `attempt`)."""

    step: int
    state: str
    attempt: int
    delay: float
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallStarted(RunEvent):
    """A state calls an LLM binding with a conversation of `messages` turns, offering `tools`."""

    step: int
    state: str
    binding: str
    model: str | None
    messages: int
    tools: tuple[str, ...] = ()
    provider: str | None = None
    """The binding's provider (`openai`, `anthropic`, `scripted`...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallEnded(RunEvent):
    """An LLM call came back (or failed): its record, as the step keeps it, and what was sent and answered.

    `request` is the provider's request (an `agentfsm.bindings.llm.LLMRequest`: the rendered
    system prompt, the messages, the tools offered) and `reply` its `LLMReply` (None when the
    call failed); the trace keeps both in canonical JSON, so a run can be replayed from it.
    """

    step: int
    state: str
    record: LLMCallRecord
    request: Any = field(default=None, repr=False, compare=False)
    reply: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted(RunEvent):
    """A tool is called: by a `tool` state, or (`via="llm"`) because a model asked for it."""

    step: int
    state: str
    tool: str
    arguments: Any
    via: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallEnded(RunEvent):
    """A tool call came back (or failed): its record, as the step keeps it."""

    step: int
    state: str
    record: ToolCallRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenReceived(RunEvent):
    """A piece of an LLM reply as it streams in, in order."""

    step: int
    state: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitStarted(RunEvent):
    """The run suspends in a waiting state until one of `events` arrives or `deadline` (epoch seconds) passes."""

    step: int
    """Steps the run has taken; the wait's own step is taken when it resumes."""
    state: str
    events: tuple[str, ...]
    deadline: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPaused(RunEvent):
    """The run stopped before its end without a result: interrupted (Ctrl-C, a cancelled task, `reason`
    "interrupted"), broken off by an error it could not record (a critical observer's, such as the
    store's: `reason` "stopped by StoreError"), or paused by an observer before `state` ran (a breakpoint:
    `reason` "breakpoint"; see `agentfsm.runtime.pausing`); its last recorded step is where it resumes."""

    step: int
    state: str | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakpointHit(RunEvent):
    """A breakpoint (`breakpoint`: `STATE` or `STATE:GUARD` as written) stops the run before `state` runs; the
    run then ends `paused` (`RunPaused` with reason "breakpoint"). `step`: the steps the run has taken."""

    step: int
    state: str
    breakpoint: str
    guard: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchChanged(RunEvent):
    """A watched expression (`name`, `expression`) has a new `value` after step `step` of `state` (the first
    report, `initial`, is its value when the watch began); `error` says why it could not be read (then `value`
    is None)."""

    step: int
    state: str | None
    name: str
    expression: str
    value: Any = None
    error: str | None = None
    initial: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnded(RunEvent):
    """The loop returned: the run succeeded, failed or waits (see `result.status`)."""

    result: RunResult


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStarted(RunEvent):
    """A state of the run started a child run (a nested machine, a branch, an agent), or found it finished
    (`reused`: a resumed parent reads a finished child's result instead of running it again)."""

    step: int
    child: str
    child_run: str
    reused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildEnded(RunEvent):
    """A child run of this run ended (`status`: succeeded, failed, cancelled, waiting)."""

    step: int
    child: str
    child_run: str
    status: str
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStep(RunEvent):
    """A child run (`child`: its name, `team/agent` for a grandchild) took a step."""

    child: str
    child_run: str
    step: int
    state: str
    next_state: str | None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSent(RunEvent):
    """An agent of a team sent a message on the team's bus (`run_id`: the sending agent's run, `step` its step)."""

    step: int
    team_run: str
    sender: str
    recipient: str | None
    """The agent it is addressed to; None: every other agent (`to: all`)."""
    topic: str | None
    content: Any
    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived(RunEvent):
    """An agent took a message from the team's bus (`run_id`: the agent's run, `step` its step)."""

    step: int
    team_run: str
    agent: str
    message_id: int
    sender: str | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryWritten(RunEvent):
    """An agent wrote the team's shared memory (`run_id`, `step`: the agent's): `op` set, cas, lock or unlock;
    `version` after the write."""

    step: int
    team_run: str
    agent: str
    op: str
    key: str
    value: Any
    version: int


EVENT_METHODS: dict[type[RunEvent], str] = {
    RunStarted: "on_run_started",
    StepStarted: "on_step_started",
    StepEnded: "on_step_ended",
    TransitionTaken: "on_transition",
    ErrorRaised: "on_error",
    RetryScheduled: "on_retry",
    LLMCallStarted: "on_llm_call_started",
    LLMCallEnded: "on_llm_call_ended",
    ToolCallStarted: "on_tool_call_started",
    ToolCallEnded: "on_tool_call_ended",
    TokenReceived: "on_token",
    WaitStarted: "on_wait",
    RunPaused: "on_pause",
    BreakpointHit: "on_breakpoint",
    WatchChanged: "on_watch",
    RunEnded: "on_run_ended",
    ChildStarted: "on_child_started",
    ChildEnded: "on_child_ended",
    ChildStep: "on_child_step",
    MessageSent: "on_message_sent",
    MessageReceived: "on_message_received",
    MemoryWritten: "on_memory_written",
}
"""The observer method each kind of event is delivered to (`on_event` receives every kind)."""
