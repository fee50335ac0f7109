"""`type: wait`: pause the run durably until an external event arrives or a timer runs out.

A wait with a timer and no `event:` is a pure delay: when it is due within the machine's
`inline_wait` the run sleeps in its process; longer, it suspends durably like any waiting
run and `agentfsm worker` (or `resume`) continues it once it is due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_value, make_scope, rendered
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import Event, State, StateContext, StateType
from agentfsm.runtime.waiting import WaitForEvent
from agentfsm.spec.diagnostics import did_you_mean
from agentfsm.spec.durations import duration_text, parse_duration
from agentfsm.spec.fields import TEMPLATE_KEY, Timer
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import EventNames, Identifier, Reporter, RoutedStateSpec
from agentfsm.spec.timestamps import parse_timestamp

WAIT_TIMEOUT_EVENT = "timeout"
"""The event a `wait` state produces when its timer runs out; no listed event may take this name."""


class WaitStateSpec(RoutedStateSpec):
    """Pause the run until an external event arrives or the timer runs out; the process may exit meanwhile.

    With a timer and no `event:` the state is a pure delay."""

    suspends: ClassVar[bool] = True

    type: Literal["wait"]
    event: EventNames | None = Field(
        None, description="The event name(s) the state waits for (`agentfsm send RUN NAME --data JSON`); rules "
        "route on the received name, or on `timeout` when the timer ran out. The oldest event it lists is taken; "
        "events sent to the same visit are then set aside, never taken by a later visit. Omitted: the state is a "
        "pure delay (it needs `timeout:` or `until:`).",
    )
    timeout: Timer | None = Field(
        None, description="The wait's timer: after this long without a listed event, the state produces the event "
        "`timeout` (no timer: wait for ever). A template is rendered when the state is entered and gives seconds "
        "or a duration text.", json_schema_extra={TEMPLATE_KEY: "value"},
    )
    until: str | None = Field(
        None, description="The timer as a moment: a template (or text) giving an ISO 8601 timestamp such as "
        "`2026-03-14T01:59:00Z` or seconds since the epoch; the state produces `timeout` then (at once when it "
        "is past).", json_schema_extra={TEMPLATE_KEY: "value"},
    )
    save: Identifier | None = Field(None, description="Context key the received event's data is saved under.")

    @property
    def events(self) -> list[str]:
        return list(self.event or ())

    @property
    def has_timer(self) -> bool:
        return self.timeout is not None or self.until is not None

    @property
    def next_label(self) -> str:
        """`next:` takes whichever event arrives, so its arrow names them (and the timer's `timeout`)."""
        names = [*self.events, WAIT_TIMEOUT_EVENT] if self.has_timer else self.events
        return " | ".join(names)

    def diagram_notes(self) -> list[str]:
        """The events it waits for and its timer (a template shows as written: it is rendered on entry)."""
        notes = [f"waits for: {' | '.join(self.events)}"] if self.events else []
        if self.timeout is not None:
            notes.append(f"timer: {duration_text(self.timeout) if isinstance(self.timeout, float) else self.timeout}")
        elif self.until is not None:
            notes.append(f"until: {self.until}")
        return notes

    def check(self, name: str, reporter: Reporter) -> None:
        """The events a wait lists are distinct and not `timeout`; its rules route only events it can produce."""
        super().check(name, reporter)
        where = ("states", name)
        if self.timeout is not None and self.until is not None:
            reporter.report((*where, "until"), "wait-two-timers",
                            f"states.{name}: has both timeout: and until:; a wait has one timer", key=True)
        if self.event is None and not self.has_timer:
            reporter.report(where, "wait-without-trigger",
                            f"states.{name}: waits for nothing; give 'event:' (an event to wait for) or "
                            "'timeout:'/'until:' (a delay)", key=True)
        seen: set[str] = set()
        for index, event in enumerate(self.events):
            path = (*where, "event", index)
            if event == WAIT_TIMEOUT_EVENT:
                reporter.report(path, "invalid-name",
                                f"states.{name}.event: '{WAIT_TIMEOUT_EVENT}' is reserved for the wait's timer; "
                                f"set 'timeout:' and route the event '{WAIT_TIMEOUT_EVENT}' instead")
            elif event in seen:
                reporter.report(path, "wait-duplicate-event", f"states.{name}.event: '{event}' is listed twice")
            seen.add(event)
        self._check_rules(name, seen, reporter)
        if self.has_timer and not self.takes_timeout:
            reporter.report((*where, "timeout" if self.timeout is not None else "until"), "wait-timeout-unhandled",
                            f"states.{name}: no rule takes the event '{WAIT_TIMEOUT_EVENT}'; when the timer runs out "
                            f"the run fails with transition.none (add {{event: {WAIT_TIMEOUT_EVENT}, to: ...}})",
                            key=True)

    def _check_rules(self, name: str, listed: set[str], reporter: Reporter) -> None:
        produced = listed | {WAIT_TIMEOUT_EVENT}
        for index, rule in enumerate(self.transitions):
            for position, event in enumerate(rule.event or ()):
                path = ("states", name, "transitions", index, "event", position)
                if event == WAIT_TIMEOUT_EVENT and not self.has_timer:
                    reporter.report(path, "wait-timeout-without-timer",
                                    f"states.{name}.transitions[{index}]: routes '{WAIT_TIMEOUT_EVENT}', but the wait "
                                    "has no timer; add 'timeout:' (such as 24h) or drop the rule")
                elif event not in produced:
                    hint = did_you_mean(event, listed)
                    waits_for = ", ".join(repr(e) for e in self.events) or "no event (it is a delay)"
                    reporter.report(path, "wait-unknown-event",
                                    f"states.{name}.transitions[{index}]: the wait never receives '{event}'; it "
                                    f"waits for {waits_for}{hint}")

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
    arrived while the run was suspended wins over a timer that ran out meanwhile. A timer due
    within `inline_wait` seconds is slept through in the process instead of suspending the run.
    """

    def __init__(self, name: str, *, events: Sequence[str], wait_timeout: float | str | None, until: str | None,
                 save: str | None, inline_wait: float = 0.0, **options: Any) -> None:
        super().__init__(name, StateType.WAITING, **options)
        self.events = tuple(events)
        self.wait_timeout = compile_value(wait_timeout) if isinstance(wait_timeout, str) else wait_timeout
        self.until = compile_value(until) if until is not None else None
        self.save = save
        self.inline_wait = inline_wait

    async def execute(self, context: StateContext) -> Event:
        delivery = context.mailbox.take(self.events)
        if delivery is not None:
            if self.save is not None:
                context.data[self.save] = delivery.data
            return Event(delivery.name, data=delivery.data, result=delivery.data)
        deadline = self._deadline(context)
        if deadline is not None:
            remaining = deadline - time.time()
            if remaining > 0 and remaining <= self.inline_wait and not self.events:
                await asyncio.sleep(remaining)
                remaining = 0
            if remaining <= 0:
                context.mailbox.timer_ran_out(WAIT_TIMEOUT_EVENT)
                return Event(WAIT_TIMEOUT_EVENT)
        raise WaitForEvent(self.events, deadline)

    def _deadline(self, context: StateContext) -> float | None:
        """The resumed wait's deadline, or a fresh one on a first visit."""
        if context.mailbox.deadline is not None:
            return context.mailbox.deadline
        if self.until is not None:
            return _moment(rendered(self.until, make_scope(context), "until"), "until")
        timeout = self.wait_timeout
        if callable(timeout):
            timeout = _seconds(rendered(timeout, make_scope(context), "timeout"))
        return time.time() + timeout if timeout is not None else None


def _seconds(value: Any) -> float:
    """A rendered `timeout:`: seconds, or a duration text."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise StateError("template.error", f"timeout: {exc}") from None


def _moment(value: Any, where: str) -> float:
    """A rendered `until:`: seconds since the epoch, or an ISO 8601 timestamp."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        moment = parse_timestamp(value)
        if moment is not None:
            return moment
    raise StateError("template.error", f"{where}: {str(value)[:60]!r} is not a timestamp (ISO 8601, such as "
                     "2026-03-14T01:59:00Z) nor seconds since the epoch")


def compile_wait(name: str, spec: WaitStateSpec, env: CompileEnv) -> State:
    return WaitState(name, events=spec.events, wait_timeout=spec.timeout, until=spec.until, save=spec.save,
                     inline_wait=env.inline_wait, **state_options(spec))


KIND = register(Kind("wait", WaitStateSpec, compile_wait))
