"""The runtime's object model: states, events, transitions, context and history records.

These are the objects a user builds a machine from in Python, and the objects a YAML
machine compiles into. They know nothing of YAML, Jinja2 or storage.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentfsm.runtime.calls import CallRecord, Usage
from agentfsm.runtime.waiting import Mailbox

if TYPE_CHECKING:
    from agentfsm.runtime.children import Children
    from agentfsm.runtime.events import RunEvent
    from agentfsm.runtime.observers import Observers


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


Callback = Callable[..., Any | Awaitable[Any]]
"""An entry, exit or transition callback; sync or async."""
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
    """One transition taken, as `context.history` and transition callbacks see it.

    A step that ends the run (a final or fail state's execution, an error no rule catches)
    takes no transition: it is a step (see `StepEnded`), not an entry here.
    """

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


class Unwatched:
    """The observers of a context no loop is driving: none (the loop sets the run's own)."""

    streams = False

    @staticmethod
    def listens(event_type: type[RunEvent]) -> bool:
        return False

    @staticmethod
    async def publish(event: RunEvent) -> None:
        return None

    @staticmethod
    def notify(event: RunEvent) -> None:
        return None


UNWATCHED = Unwatched()


class StateContext:
    """The data a run carries from state to state, plus its history and metadata.

    `data` is the user's dict (JSON values); `history` lists the transitions taken;
    `metadata` holds run-level facts (run id, status, error). `run_id`, `step` and
    `state` say where the run is now (`visits` counts entries per state, `mailbox` holds
    delivered external events, `usage` the tokens its LLM calls used so far). `observers`
    are the run's observers while the loop drives it (see `agentfsm.runtime.observers`);
    they are never stored with the run.
    """

    __slots__ = ("data", "history", "metadata", "run_id", "step", "state", "event", "calls", "observers", "visits",
                 "mailbox", "usage", "bindings", "children")

    def __init__(self, data: Mapping[str, Any] | None = None, *, metadata: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.history: list[StateTransition] = []
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.run_id: str = ""
        self.step: int = 0
        self.state: str | None = None
        self.event: Event | None = None
        """The event that led into the current state (None in the initial state)."""
        self.calls: list[CallRecord] = []
        """The LLM and tool calls of the step in progress."""
        self.observers: Observers | Unwatched = UNWATCHED
        self.visits: dict[str, int] = {}
        """How many times each state has been entered in this run (for `max_visits`)."""
        self.mailbox = Mailbox()
        """External events delivered to the run and not yet taken by a waiting state."""
        self.usage: Usage = {}
        """Token usage per LLM binding of every step on the run's path so far."""
        self.bindings: dict[str, dict[str, Any]] = {}
        """What bindings remember between the calls of this run, by binding (a scripted model's place in
        its script); JSON, recorded with the calls, so a resumed run picks up where it was."""
        self.children: Children | None = None
        """How the run's states run child runs (`agentfsm.runtime.children`); None: in memory."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def update(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Set several values: `update({"a": 1})` or `update(a=1)`."""
        if values:
            self.data.update(values)
        if more:
            self.data.update(more)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def add_transition(self, transition: StateTransition) -> None:
        """Append a transition to `history` (the loop does this for every transition it takes)."""
        self.history.append(transition)

    def get_last_transition(self) -> StateTransition | None:
        return self.history[-1] if self.history else None

    def record_call(self, record: CallRecord) -> None:
        """Attach an LLM or tool call record (binding, tokens, duration...) to the current step."""
        self.calls.append(record)

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
        self.entry_callbacks: list[Callback] = []
        self.exit_callbacks: list[Callback] = []

    def add_entry_callback(self, callback: Callback) -> None:
        """`callback(context)` runs each time the state is entered (sync or async; one that raises is logged)."""
        self.entry_callbacks.append(callback)

    def add_exit_callback(self, callback: Callback) -> None:
        """`callback(context)` runs each time the state is left, after its step (sync or async)."""
        self.exit_callbacks.append(callback)

    async def execute(self, context: StateContext) -> str | Event | None:
        return None

    @property
    def is_terminal(self) -> bool:
        return self.state_type in (StateType.FINAL, StateType.ERROR)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.state_type.value})"


def now() -> float:
    return time.time()
