"""The step loop: enter state -> execute (timeout, retries) -> event -> select transition -> record -> next.

This is the one place a run advances. It knows nothing of YAML, templates or storage;
everything above it watches the run through observers (see `observers.py`), and the
run's position lives in its context, so one machine can drive many runs at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from agentfsm.limits import deadline
from agentfsm.runtime.budget import budget_scope
from agentfsm.runtime.calls import Usage, add_usage
from agentfsm.runtime.errors import UNCATCHABLE, StateError, as_state_error
from agentfsm.runtime.events import (
    ErrorRaised,
    RetryScheduled,
    RunEnded,
    RunPaused,
    RunStarted,
    StepEnded,
    StepStarted,
    TransitionTaken,
    WaitStarted,
)
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.model import UNWATCHED, Event, State, StateContext, StateTransition, StateType
from agentfsm.runtime.observers import Observers
from agentfsm.runtime.pausing import PauseRun, enter_run, leave_run
from agentfsm.runtime.plan import Plan
from agentfsm.runtime.policy import find_catch_rule, find_retry_rule, retry_delay
from agentfsm.runtime.waiting import WaitForEvent

if TYPE_CHECKING:
    from agentfsm.runtime.machine import StateMachine

logger = logging.getLogger("agentfsm")

RunStatus = Literal["running", "waiting", "paused", "succeeded", "failed", "cancelled"]
"""A run's status. The loop ends runs as `succeeded`, `failed` or `waiting`; the store adds the others."""


@dataclass(slots=True)
class RunResult:
    """How a run ended: its status, the final state's output, the context and what it cost.

    A `waiting` run has `waiting` set: `{"state", "events", "deadline"}` (deadline in seconds
    since the epoch, or None); a `paused` one (an observer paused it before a state, see
    `agentfsm.runtime.pausing`) has `paused`: `{"state", "reason", "detail"}`.
    """

    run_id: str
    status: RunStatus
    output: Any
    context: StateContext
    steps: int
    error: dict[str, Any] | None = None
    usage: Usage = field(default_factory=dict)
    waiting: dict[str, Any] | None = None
    paused: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


# -- one state's work ----------------------------------------------------------------------------------


def _cancelled_from_outside() -> bool:
    """True when the running task is being cancelled (by the caller), not by user code raising CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _attempt(state: State, context: StateContext) -> str | Event | None:
    """One attempt at a state's work (execute, then its exit action), under its timeout."""
    try:
        if state.timeout is None:
            outcome = await state.execute(context)
        else:
            outcome = await _execute_before_deadline(state, context, state.timeout)
        if state.exit_action is not None:
            state.exit_action(context)
        return outcome
    except asyncio.CancelledError as exc:
        if _cancelled_from_outside():
            raise
        raise as_state_error(exc, state.name) from None
    except SystemExit as exc:  # user code must not end the process
        raise as_state_error(exc, state.name) from None


async def _execute_before_deadline(state: State, context: StateContext, seconds: float) -> str | Event | None:
    return await before_deadline(state.execute, state.name, context, seconds)


async def before_deadline(execute: Callable[[StateContext], Awaitable[Any]], name: str, context: StateContext,
                          seconds: float) -> Any:
    """A state's work, failed with `timeout` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            try:
                with deadline(seconds):  # renders cannot be interrupted by asyncio: they watch this instead
                    return await execute(context)
            except TimeoutError as exc:  # the state's own TimeoutError, not our deadline
                raise as_state_error(exc, name) from None
    except TimeoutError:
        raise StateError("timeout", f"took longer than {seconds:g}s", state=name) from None


@dataclass(slots=True)
class Work:
    """What a state's work came to: its outcome or its error, and how many retries it took."""

    outcome: str | Event | None = None
    error: StateError | None = None
    retries: int = 0


async def perform(state: State, context: StateContext, policied: bool) -> Work:
    """Run a state's enter action and its work (with its timeout and retry rules); errors are returned."""
    work = Work()
    try:
        if state.enter_action is not None:
            state.enter_action(context)
        if policied:
            await execute_with_policy(state, context, work)
        else:
            work.outcome = await _attempt(state, context)
    except WaitForEvent:
        raise
    except Exception as exc:  # noqa: BLE001 - routed by catch rules, or it ends the run
        work.error = as_state_error(exc, state.name)
    return work


async def execute_with_policy(state: State, context: StateContext, work: Work) -> None:
    """Run the state's work under its timeout and retry rules, counting retries in `work`; raises the last error.

    A failed attempt leaves no trace: the context is restored to what it was before it,
    so a retry starts afresh and a catch target sees the data the state started from.
    """
    attempts = [0] * len(state.retry)
    while True:
        before = dict(context.data)
        try:
            work.outcome = await _attempt(state, context)
            return
        except Exception as exc:  # noqa: BLE001 - every failure of user work becomes a taxonomy error
            error = as_state_error(exc, state.name)
        context.data.clear()
        context.data.update(before)
        index = find_retry_rule(state.retry, error)
        if index is None or attempts[index] >= state.retry[index].max_attempts:
            error.detail = _with_retries(error.detail, work.retries)
            raise error
        attempts[index] += 1
        work.retries += 1
        delay = retry_delay(state.retry[index], attempts[index])
        logger.info("state %r: %s; retry %d in %.3fs", state.name, error.type, work.retries, delay)
        if context.observers.listens(RetryScheduled):
            await context.observers.publish(RetryScheduled(
                run_id=context.run_id, at=time.time(), step=context.step, state=state.name, attempt=work.retries,
                delay=delay, error=error.as_dict()))
        await asyncio.sleep(delay)


def _with_retries(detail: Any, retries: int) -> Any:
    if retries == 0:
        return detail
    if isinstance(detail, dict):
        return {**detail, "retries": retries}
    return {"retries": retries} if detail is None else {"detail": detail, "retries": retries}


async def run_callbacks(callbacks: Iterable[Any], *args: Any) -> None:
    """Entry, exit and transition callbacks: sync or async; a failing one is logged, never fatal."""
    for callback in callbacks:
        try:
            outcome = callback(*args)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # noqa: BLE001 - a user callback must not break the run
            logger.warning("callback %r failed", getattr(callback, "__name__", callback), exc_info=True)


# -- where a step leads -----------------------------------------------------------------------------


@dataclass(slots=True)
class StepEnd:
    """How a step ended: its event, the next state (None: the run ends), its own error and what ends the run."""

    event: Event
    target: str | None = None
    error: StateError | None = None
    """The state's work failed with this (caught when `target` is set)."""
    failure: StateError | None = None
    """The run ends failed with this."""
    rule: int | None = None


def _terminal_output(outcome: str | Event | None) -> Any:
    """A final state's output: an Event's result, or whatever else `execute` returned."""
    return outcome.result if isinstance(outcome, Event) else outcome


def _fail_state_error(name: str, outcome: str | Event | None) -> StateError:
    """The error a run ends with when it reaches an ERROR state that did not raise one itself."""
    message = _terminal_output(outcome)
    if not (isinstance(message, str) and message):
        message = f"reached error state '{name}'"
    return StateError("fail", message, state=name)


def resolve(plan: Plan, name: str, context: StateContext, work: Work) -> StepEnd:
    """Where the step leads: a catch rule's target after an error, the end after a final or fail state, or a rule's target."""
    state = plan.states[name]
    if work.error is not None:
        error = work.error
        event = Event(error.type, error.as_dict())
        catch = None if (error.type in UNCATCHABLE or state.is_terminal) else find_catch_rule(state.catch, error)
        if catch is None:
            return StepEnd(event, error=error, failure=error)
        if catch.save_as:
            context.data[catch.save_as] = error.as_dict()
        return StepEnd(event, catch.target, error=error)
    outcome = work.outcome
    if state.state_type is StateType.FINAL:
        return StepEnd(outcome if isinstance(outcome, Event) else Event("done", result=_terminal_output(outcome)))
    if state.state_type is StateType.ERROR:
        return StepEnd(Event("fail"), failure=_fail_state_error(name, outcome))
    try:
        route = plan.route(name, context, outcome)
    except StateError as exc:
        exc.state = name
        return StepEnd(outcome if isinstance(outcome, Event) else Event("done"), failure=exc)
    return StepEnd(route.event, route.target, rule=route.rule)


# -- a run --------------------------------------------------------------------------------------------


class _Drive:
    """One drive of a run by the loop, from its position to its end, a wait, or an interruption."""

    __slots__ = ("machine", "plan", "context", "observers", "output", "failure", "waiting", "halted")

    def __init__(self, machine: StateMachine, plan: Plan, context: StateContext) -> None:
        self.machine, self.plan, self.context, self.observers = machine, plan, context, context.observers
        self.output: Any = None
        self.failure: StateError | None = None
        self.waiting: dict[str, Any] | None = None
        self.halted: dict[str, Any] | None = None

    async def drive(self) -> RunResult:
        context = self.context
        name: str | None = context.state or self.machine.initial
        assert name is not None  # the plan checked the machine has an initial state
        if self.observers.listens(RunStarted):
            await self.observers.publish(RunStarted(run_id=context.run_id, at=time.time(), machine=self.machine.name,
                                                    state=name, step=context.step, resumed=context.step > 0))
        while name is not None:
            name = await self.step(name)
        return await self.finish()

    def limit_error(self, name: str, state: State) -> StateError | None:
        if self.context.step >= self.machine.max_steps:
            return StateError("limit.max_steps", f"the run took more than max_steps ({self.machine.max_steps}) steps",
                              state=name)
        if state.max_visits is not None and self.context.visits.get(name, 0) >= state.max_visits:
            return StateError("limit.max_visits", f"entered more than max_visits ({state.max_visits}) times",
                              state=name)
        return None

    async def step(self, name: str) -> str | None:
        """Take one step from state `name`; returns the next state, or None when the run stops."""
        context, plan = self.context, self.plan
        state = plan.states[name]
        limit = self.limit_error(name, state)
        if limit is not None:
            self.failure = limit
            await self.publish_error(limit, None)
            return None
        visit = context.visits[name] = context.visits.get(name, 0) + 1
        context.step += 1
        context.state = name
        if context.calls:
            context.calls = []
        if self.observers.listens(StepStarted):
            try:
                await self.observers.publish(StepStarted(run_id=context.run_id, at=time.time(), step=context.step,
                                                         state=name, visit=visit, data=MappingProxyType(context.data)))
            except PauseRun as pause:  # an observer (a breakpoint) stops the run before the state runs
                await self.halt(name, pause)
                return None
        if state.entry_callbacks or name in plan.entry:
            await self.enter_callbacks(name, state)
        started_at, started = time.time(), time.perf_counter()
        before_wait = dict(context.data) if state.state_type is StateType.WAITING else None
        try:
            # a timeout, retry or catch rules: the work runs under its policy (a failed attempt leaves no trace)
            work = await perform(state, context, state.timeout is not None or bool(state.retry or state.catch))
        except WaitForEvent as pause:  # the step did not happen: the run stops just before it
            await self.suspend(name, pause, before_wait)
            return None
        end = resolve(plan, name, context, work)
        await self.conclude(name, state, work, end, started_at, time.perf_counter() - started)
        return end.target

    async def enter_callbacks(self, name: str, state: State) -> None:
        if name in self.plan.entry:
            await run_callbacks(self.plan.entry[name], name, self.context)
        if state.entry_callbacks:
            await run_callbacks(state.entry_callbacks, self.context)

    async def suspend(self, name: str, pause: WaitForEvent, before: dict[str, Any] | None) -> None:
        context = self.context
        if before is not None:
            context.data.clear()
            context.data.update(before)
        context.step -= 1
        context.visits[name] -= 1
        self.waiting = {"state": name, "events": list(pause.events), "deadline": pause.deadline}
        context.mailbox.deadline = pause.deadline  # running the context again keeps this wait's timer
        if self.observers.listens(WaitStarted):
            await self.observers.publish(WaitStarted(run_id=context.run_id, at=time.time(), step=context.step,
                                                     state=name, events=pause.events, deadline=pause.deadline))

    async def halt(self, name: str, pause: PauseRun) -> None:
        """Stop before `name` runs: its step is undone, as a wait's is, and the run ends `paused` there."""
        context = self.context
        context.step -= 1
        context.visits[name] -= 1
        self.halted = {"state": name, "reason": pause.reason, "detail": pause.detail}
        if self.observers.listens(RunPaused):
            await self.observers.publish(RunPaused(run_id=context.run_id, at=time.time(), step=context.step,
                                                   state=name, reason=pause.reason))

    async def conclude(self, name: str, state: State, work: Work, end: StepEnd, started_at: float,
                       duration: float) -> None:
        """Record the step: history, usage, callbacks, then the events observers (the store's recorder too) see."""
        context, plan = self.context, self.plan
        if end.failure is not None:
            self.failure = end.failure
        elif end.target is None and state.state_type is StateType.FINAL:
            self.output = end.event.result
        reported = end.error if end.error is not None else end.failure
        record = None
        if end.target is not None:
            details: dict[str, Any] = {"step": context.step, "duration": duration}
            if context.calls:
                details["calls"] = [call.as_json() for call in context.calls]
            record = StateTransition(name, end.target, end.event.name, started_at, details, end.error is None,
                                     None if end.error is None else end.error.as_dict())
            context.history.append(record)
        if context.calls:
            add_usage(context.usage, context.calls)
        if name in plan.exit:
            await run_callbacks(plan.exit[name], name, context)
        if state.exit_callbacks:
            await run_callbacks(state.exit_callbacks, context)
        if record is not None and plan.on_transition:
            await run_callbacks(plan.on_transition, record, context)
        if reported is not None:
            await self.publish_error(reported, end.target if end.error is not None else None)
        if self.observers.listens(StepEnded) or self.observers.listens(TransitionTaken):
            await self.publish_step(name, work, end, started_at, duration, reported)
        context.mailbox.taken = None
        context.mailbox.deadline = None  # a resumed wait's timer belongs to that wait only
        if end.target is not None:
            context.event = end.event

    async def publish_error(self, error: StateError, caught_by: str | None) -> None:
        if self.observers.listens(ErrorRaised):
            context = self.context
            await self.observers.publish(ErrorRaised(run_id=context.run_id, at=time.time(), step=context.step,
                                                     state=error.state or context.state or "", error=error.as_dict(),
                                                     caught_by=caught_by))

    async def publish_step(self, name: str, work: Work, end: StepEnd, started_at: float, duration: float,
                           reported: StateError | None) -> None:
        context, observers, now = self.context, self.observers, time.time()
        label = None if end.rule is None else self.plan.rules[name][end.rule].label
        if end.target is not None and observers.listens(TransitionTaken):
            await observers.publish(TransitionTaken(
                run_id=context.run_id, at=now, step=context.step, source=name, target=end.target,
                event=end.event.name, rule=end.rule, label=label, caught=end.error is not None))
        if observers.listens(StepEnded):
            await observers.publish(StepEnded(
                run_id=context.run_id, at=now, step=context.step, state=name, event=end.event.name,
                next_state=end.target, started_at=started_at, duration=duration, retries=work.retries,
                error=None if reported is None else reported.as_dict(), result=end.event.result,
                calls=tuple(context.calls), event_data=end.event.data, data=MappingProxyType(context.data),
                visit=context.visits.get(name, 1), rule=end.rule, label=label))

    async def finish(self) -> RunResult:
        context = self.context
        status: RunStatus = "waiting" if self.waiting is not None else "paused" if self.halted is not None else (
            "succeeded" if self.failure is None else "failed")
        error = None if self.failure is None else self.failure.as_dict()
        output = self.output if self.failure is None else None
        context.metadata.update(status=status, error=error, output=output)
        usage = {binding: dict(totals) for binding, totals in context.usage.items()}
        result = RunResult(context.run_id, status, output, context, context.step, error, usage, self.waiting,
                           self.halted)
        if self.observers.listens(RunEnded):
            await self.observers.publish(RunEnded(run_id=context.run_id, at=time.time(), result=result))
        return result

    def paused(self, reason: str) -> None:
        """Tell observers the run stopped before its end (delivered at once: the task is being torn down)."""
        context = self.context
        if self.observers.listens(RunPaused):
            self.observers.notify(RunPaused(run_id=context.run_id, at=time.time(), step=context.step,
                                            state=context.state, reason=reason))


async def run_machine(
    machine: StateMachine,
    context: StateContext,
    *,
    observers: Iterable[object] = (),
    run_id: str | None = None,
) -> RunResult:
    """Drive `machine` from its initial state (or `context.state`) until a final or fail state, an error, or a wait.

    A context that has run before carries its position (`state`, `step`, `visits`, `event`),
    so a run resumed from a stored point continues exactly where it stopped.
    """
    plan = machine.plan()
    context.run_id = run_id or context.run_id or new_run_id()
    context.observers = Observers([*machine.observers, *observers])
    drive = _Drive(machine, plan, context)
    running = enter_run(context)
    try:
        with budget_scope(machine.budget, machine.pricer, context.usage, resumed=context.step > 0):
            return await drive.drive()
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        drive.paused("interrupted")
        raise
    except Exception as exc:  # the run could not go on (a critical observer such as the store failed)
        drive.paused(f"stopped by {type(exc).__name__}")
        raise
    finally:
        leave_run(running)
        context.observers = UNWATCHED
