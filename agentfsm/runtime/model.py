"""The runtime's object model: states, events, transitions, context and history records.

These are the objects a user builds a machine from in Python, and the objects a YAML
machine compiles into. They know nothing of YAML, Jinja2 or storage.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentfsm.runtime.waiting import Mailbox


class StateType(str, enum.Enum):
    """The role a state plays in its machine."""

    INITIAL = "initial"
    PROCESSING = "processing"
    WAITING = "waiting"
    CHECKPOINT = "checkpoint"
    FINAL = "final"
    ERROR = "error"


@dataclass(slots=True)
class Event:
    """What a state's execution produced: an event name, its payload, and the state's own result."""

    name: str = "done"
    data: Any = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class RetryRule:
    """Retry a state's work on matching errors, with Step Functions' semantics.

    `max_attempts` counts retries (0 never retries); the n-th retry waits
    `interval * backoff_rate ** (n - 1)`, capped at `max_delay`; `jitter="full"` picks a
    uniformly random delay between 0 and that.
    """

    errors: tuple[str, ...] = ("*",)
    interval: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay: float | None = None
    jitter: Literal["full", "none"] = "none"


@dataclass(frozen=True, slots=True)
class CatchRule:
    """On a matching error, go to `target`, saving the error object under `save_as` when given."""

    errors: tuple[str, ...]
    target: str
    save_as: str | None = None


Guard = Callable[["StateContext", Event], bool]
StateAction = Callable[["StateContext"], None]
Action = Callable[["StateContext", Event], None]


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule leading from `source` to `target`.

    It matches when `trigger` is None (any event) or names the event, and `guard`
    (if any) returns true. `action` runs when the transition is taken.
    """

    source: str
    target: str
    trigger: str | tuple[str, ...] | None = None
    guard: Guard | None = None
    action: Action | None = None
    label: str | None = None

    def accepts(self, event_name: str) -> bool:
        trigger = self.trigger
        if trigger is None:
            return True
        if isinstance(trigger, str):
            return trigger == event_name
        return event_name in trigger


@dataclass(slots=True)
class StateTransition:
    """One recorded transition in `context.history`."""

    from_state: str
    to_state: str | None
    trigger: str
    timestamp: float
    data: dict[str, Any] = field(default_factory=dict)
    success: bool = True
    error: dict[str, Any] | None = None

    @property
    def event(self) -> str:
        return self.trigger


TokenObserver = Callable[[str, str], None]
"""Sees an LLM reply as it arrives: called with the state's name and each new piece of text, in order.

It runs inside the provider's read loop, so it must be quick and must not block; an
exception it raises ends the call (and the run, unless caught like any other error).
"""


class StateContext:
    """The data a run carries from state to state, plus its history and metadata.

    `data` is the user's dict (JSON values); `history` lists the transitions taken;
    `metadata` holds run-level facts (run id, status, error). `run_id`, `step` and
    `state` say where the run is now (`visits` counts entries per state, `mailbox` holds
    delivered external events). `on_token` is an optional live observer of LLM
    replies (see `TokenObserver`); it is never stored with the run.
    """

    __slots__ = ("data", "history", "metadata", "run_id", "step", "state", "event", "calls", "on_token", "visits",
                 "mailbox")

    def __init__(self, data: Mapping[str, Any] | None = None, *, metadata: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.history: list[StateTransition] = []
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.run_id: str = ""
        self.step: int = 0
        self.state: str | None = None
        self.event: Event | None = None
        """The event that led into the current state (None in the initial state)."""
        self.calls: list[dict[str, Any]] = []
        self.on_token: TokenObserver | None = None
        """Called with (state name, text delta) as an `llm` state's reply arrives; providers stream only when set."""
        self.visits: dict[str, int] = {}
        """How many times each state has been entered in this run (for `max_visits`)."""
        self.mailbox = Mailbox()
        """External events delivered to the run and not yet taken by a waiting state."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def update(self, values: Mapping[str, Any]) -> None:
        self.data.update(values)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def record_call(self, kind: str, **details: Any) -> None:
        """Attach an LLM or tool call record (binding, tokens, duration...) to the current step."""
        details["kind"] = kind
        self.calls.append(details)

    def __repr__(self) -> str:
        return f"StateContext(state={self.state!r}, step={self.step}, data={self.data!r})"


class State:
    """A state of a machine. Subclass it and override `execute`.

    `execute` returns the name of the next state, an `Event` to be routed by the
    state's transitions, or None (the event `done`).
    """

    def __init__(
        self,
        name: str,
        state_type: StateType = StateType.PROCESSING,
        *,
        description: str | None = None,
        timeout: float | None = None,
        retry: Iterable[RetryRule] = (),
        catch: Iterable[CatchRule] = (),
        max_visits: int | None = None,
        checkpoint: bool = False,
    ) -> None:
        self.name = name
        self.state_type = state_type
        self.description = description
        self.timeout = timeout
        self.retry = tuple(retry)
        self.catch = tuple(catch)
        self.max_visits = max_visits
        self.checkpoint = checkpoint
        self.enter_action: StateAction | None = None
        """Runs before `execute` on each visit (a YAML state's `on_enter`); errors are routed like execute's."""
        self.exit_action: StateAction | None = None
        """Runs after a successful `execute` (a YAML state's `on_exit`)."""

    async def execute(self, context: StateContext) -> str | Event | None:
        return None

    @property
    def is_terminal(self) -> bool:
        return self.state_type in (StateType.FINAL, StateType.ERROR)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.state_type.value})"


Callback = Callable[..., Any | Awaitable[Any]]
"""An entry, exit or transition callback; sync or async."""


def now() -> float:
    return time.time()
