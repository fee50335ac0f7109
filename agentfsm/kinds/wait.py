"""`type: wait`: pause the run durably until an external event arrives or a timer runs out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.runtime.model import Event, State, StateContext, StateType
from agentfsm.runtime.waiting import WaitForEvent
from agentfsm.spec.diagnostics import did_you_mean
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import EventNames, Identifier, PositiveDuration, Reporter, RoutedStateSpec

WAIT_TIMEOUT_EVENT = "timeout"
"""The event a `wait` state produces when its timer runs out; no listed event may take this name."""


class WaitStateSpec(RoutedStateSpec):
    """Pause the run until an external event arrives or the timer runs out; the process may exit meanwhile."""

    suspends: ClassVar[bool] = True

    type: Literal["wait"]
    event: EventNames = Field(
        description="The event name(s) the state waits for (`agentfsm send RUN NAME --data JSON`); rules route on "
        "the received name, or on `timeout` when the timer ran out. The oldest event it lists is taken; events "
        "sent to the same visit are then set aside, never taken by a later visit.",
    )
    timeout: PositiveDuration | None = Field(
        None, description="The wait's timer: after this long without a listed event, the state produces the event "
        "`timeout` (no timer: wait for ever).",
    )
    save: Identifier | None = Field(None, description="Context key the received event's data is saved under.")

    @property
    def next_label(self) -> str:
        """`next:` takes whichever event arrives, so its arrow names them (and the timer's `timeout`)."""
        names = [*self.event, WAIT_TIMEOUT_EVENT] if self.timeout is not None else list(self.event)
        return " | ".join(names)

    def check(self, name: str, reporter: Reporter) -> None:
        """The events a wait lists are distinct and not `timeout`; its rules route only events it can produce."""
        super().check(name, reporter)
        where = ("states", name)
        seen: set[str] = set()
        for index, event in enumerate(self.event):
            path = (*where, "event", index)
            if event == WAIT_TIMEOUT_EVENT:
                reporter.report(path, "invalid-name",
                                f"states.{name}.event: '{WAIT_TIMEOUT_EVENT}' is reserved for the wait's timer; "
                                f"set 'timeout:' and route the event '{WAIT_TIMEOUT_EVENT}' instead")
            elif event in seen:
                reporter.report(path, "wait-duplicate-event", f"states.{name}.event: '{event}' is listed twice")
            seen.add(event)
        self._check_rules(name, seen, reporter)
        if self.timeout is not None and not self.takes_timeout:
            reporter.report((*where, "timeout"), "wait-timeout-unhandled",
                            f"states.{name}: no rule takes the event '{WAIT_TIMEOUT_EVENT}'; when the timer runs out "
                            f"the run fails with transition.none (add {{event: {WAIT_TIMEOUT_EVENT}, to: ...}})",
                            key=True)

    def _check_rules(self, name: str, listed: set[str], reporter: Reporter) -> None:
        produced = listed | {WAIT_TIMEOUT_EVENT}
        for index, rule in enumerate(self.transitions):
            for position, event in enumerate(rule.event or ()):
                path = ("states", name, "transitions", index, "event", position)
                if event == WAIT_TIMEOUT_EVENT and self.timeout is None:
                    reporter.report(path, "wait-timeout-without-timer",
                                    f"states.{name}.transitions[{index}]: routes '{WAIT_TIMEOUT_EVENT}', but the wait "
                                    "has no timer; add 'timeout:' (such as 24h) or drop the rule")
                elif event not in produced:
                    hint = did_you_mean(event, listed)
                    reporter.report(path, "wait-unknown-event",
                                    f"states.{name}.transitions[{index}]: the wait never receives '{event}'; it "
                                    f"waits for {', '.join(repr(e) for e in self.event)}{hint}")

    @property
    def takes_timeout(self) -> bool:
        """Whether some way out accepts the timer's event: `next:`, a rule without `event:`, or one naming it."""
        if self.next is not None:
            return True
        return any(rule.event is None or WAIT_TIMEOUT_EVENT in rule.event for rule in self.transitions)


class WaitState(State):
    """Take a delivered event, or produce `timeout` once the timer ran out, or suspend the run.

    `wait_timeout` is the wait's timer, not an execution timeout: `State.timeout` stays None,
    since waiting costs nothing while the run is suspended. The deadline is fixed on the first
    visit and kept by the loop (`context.mailbox.deadline`) across suspensions, so resuming
    never restarts the timer. A delivery is looked at before the deadline: an event that
    arrived while the run was suspended wins over a timer that ran out meanwhile.
    """

    def __init__(self, name: str, *, events: Sequence[str], wait_timeout: float | None, save: str | None,
                 **options: Any) -> None:
        super().__init__(name, StateType.WAITING, **options)
        self.events = tuple(events)
        self.wait_timeout = wait_timeout
        self.save = save

    async def execute(self, context: StateContext) -> Event:
        delivery = context.mailbox.take(self.events)
        if delivery is not None:
            if self.save is not None:
                context.data[self.save] = delivery.data
            return Event(delivery.name, data=delivery.data, result=delivery.data)
        deadline = self._deadline(context)
        if deadline is not None and time.time() >= deadline:
            return Event(WAIT_TIMEOUT_EVENT)
        raise WaitForEvent(self.events, deadline)

    def _deadline(self, context: StateContext) -> float | None:
        """The resumed wait's deadline, or a fresh one from now on a first visit."""
        if context.mailbox.deadline is not None:
            return context.mailbox.deadline
        return time.time() + self.wait_timeout if self.wait_timeout else None


def compile_wait(name: str, spec: WaitStateSpec, env: CompileEnv) -> State:
    return WaitState(name, events=spec.event, wait_timeout=spec.timeout, save=spec.save, **state_options(spec))


KIND = register(Kind("wait", WaitStateSpec, compile_wait))
