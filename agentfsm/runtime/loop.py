"""The step loop: enter state -> execute (timeout, retries) -> event -> select transition -> record -> next.

This is the one place a run advances. It knows nothing of YAML, templates or storage;
everything above it plugs in through hooks (see `hooks.py`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentfsm.runtime.errors import UNCATCHABLE, StateError, describe_exception
from agentfsm.runtime.hooks import HookSet, StepRecord
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.model import Event, State, StateContext, StateTransition, StateType, Transition
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
    since the epoch, or None).
    """

    run_id: str
    status: RunStatus
    output: Any
    context: StateContext
    steps: int
    error: dict[str, Any] | None = None
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        """The `agentfsm run --json` object."""
        result = {
            "run_id": self.run_id,
            "status": self.status,
            "output": self.output,
            "context": self.context.data,
            "steps": self.steps,
            "error": self.error,
            "usage": self.usage,
        }
        if self.waiting is not None:
            result["waiting"] = self.waiting
        return result


def as_state_error(exc: BaseException, state: str) -> StateError:
    """Any exception from a state's work, as a taxonomy error naming the state."""
    if isinstance(exc, StateError):
        if exc.state is None:
            exc.state = state
        return exc
    return StateError("state.error", describe_exception(exc), state=state)


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
    try:
        async with asyncio.timeout(seconds):
            try:
                return await state.execute(context)
            except TimeoutError as exc:  # the state's own TimeoutError, not our deadline
                raise as_state_error(exc, state.name) from None
    except TimeoutError:
        raise StateError("timeout", f"took longer than {seconds:g}s", state=state.name) from None


async def execute_with_policy(state: State, context: StateContext) -> tuple[str | Event | None, int]:
    """Run the state's work under its timeout, retry and catch rules; returns (outcome, retries used).

    A failed attempt leaves no trace: the context is restored to what it was before it,
    so a retry starts afresh and a catch target sees the data the state started from.
    """
    attempts = [0] * len(state.retry)
    retries = 0
    while True:
        before = dict(context.data)
        try:
            return await _attempt(state, context), retries
        except Exception as exc:  # noqa: BLE001 - every failure of user work becomes a taxonomy error
            error = as_state_error(exc, state.name)
        context.data.clear()
        context.data.update(before)
        index = find_retry_rule(state.retry, error)
        if index is None or attempts[index] >= state.retry[index].max_attempts:
            error.detail = _with_retries(error.detail, retries)
            raise error
        attempts[index] += 1
        retries += 1
        delay = retry_delay(state.retry[index], attempts[index])
        logger.info("state %r: %s; retry %d in %.3fs", state.name, error.type, retries, delay)
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


def select_transition(rules: tuple[Transition, ...], context: StateContext, event: Event) -> Transition | None:
    """The first rule whose trigger accepts the event and whose guard holds."""
    for rule in rules:
        if rule.accepts(event.name) and (rule.guard is None or rule.guard(context, event)):
            return rule
    return None


def _fold_usage(usage: dict[str, dict[str, int]], calls: Iterable[dict[str, Any]]) -> None:
    for call in calls:
        if call.get("kind") != "llm":
            continue
        totals = usage.setdefault(call.get("binding", "?"), {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        totals["calls"] += 1
        totals["prompt_tokens"] += call.get("prompt_tokens", 0) or 0
        totals["completion_tokens"] += call.get("completion_tokens", 0) or 0


class _Plan:
    """What a run needs to know about its machine, computed once so the loop only looks things up."""

    __slots__ = ("states", "rules", "targets", "terminal", "policied", "entry", "exit", "on_transition")

    def __init__(self, machine: StateMachine) -> None:
        self.states = machine.states
        self.rules = machine.rules_by_state()
        self.targets = {source: frozenset(rule.target for rule in rules) for source, rules in self.rules.items()}
        self.terminal = frozenset(name for name, state in self.states.items() if state.is_terminal)
        self.policied = frozenset(
            name for name, state in self.states.items() if state.timeout is not None or state.retry or state.catch
        )
        self.entry, self.exit, self.on_transition = machine.callbacks()

    def route(self, name: str, context: StateContext, outcome: str | Event | None) -> tuple[Event, str]:
        """The event a successful step produced and the state it leads to; raises StateError when none."""
        if isinstance(outcome, str):
            if outcome not in self.states:
                raise StateError("transition.invalid", f"returned '{outcome}', which is not a state of this machine")
            if name in self.targets and outcome not in self.targets[name]:
                raise StateError("transition.invalid", f"has no transition to '{outcome}'")
            return Event("done"), outcome
        event = outcome if isinstance(outcome, Event) else Event("done", result=outcome)
        try:
            rule = select_transition(self.rules.get(name, ()), context, event)
            if rule is not None and rule.action is not None:
                rule.action(context, event)
        except Exception as exc:  # noqa: BLE001 - a guard or a rule's `set` failed
            raise as_state_error(exc, name) from None
        if rule is None:
            raise StateError("transition.none", f"no transition matches event '{event.name}'")
        return event, rule.target


def _terminal_output(outcome: str | Event | None) -> Any:
    """A final state's output: an Event's result, or whatever else `execute` returned."""
    return outcome.result if isinstance(outcome, Event) else outcome


def _fail_state_error(name: str, outcome: str | Event | None) -> StateError:
    """The error a run ends with when it reaches an ERROR state that did not raise one itself."""
    message = _terminal_output(outcome)
    if not (isinstance(message, str) and message):
        message = f"reached error state '{name}'"
    return StateError("fail", message, state=name)


async def run_machine(
    machine: StateMachine,
    context: StateContext,
    *,
    hooks: Iterable[object] = (),
    run_id: str | None = None,
) -> RunResult:
    """Drive `machine` from its initial state (or `context.state`) until a final or fail state, an error, or a wait.

    A context that has run before carries its position (`state`, `step`, `visits`, `event`),
    so a run resumed from a stored point continues exactly where it stopped.
    """
    machine.check()
    plan = _Plan(machine)
    hookset = HookSet([*machine.hooks, *hooks])
    context.run_id = run_id or context.run_id or new_run_id()
    max_steps = machine.max_steps
    visits = context.visits
    usage: dict[str, dict[str, int]] = {}
    for earlier in context.history:  # a resumed run's usage counts the steps it took before
        _fold_usage(usage, earlier.data.get("calls") or ())
    name = context.state or machine.initial
    assert name is not None  # machine.check() guarantees an initial state
    output: Any = None
    failure: StateError | None = None
    waiting: dict[str, Any] | None = None

    if hookset.on_run_start:
        await hookset.call(hookset.on_run_start, context)

    while failure is None:
        state = plan.states[name]
        visit = visits.get(name, 0) + 1
        if context.step >= max_steps:
            failure = StateError("limit.max_steps", f"the run took more than max_steps ({max_steps}) steps", state=name)
        elif state.max_visits is not None and visit > state.max_visits:
            failure = StateError("limit.max_visits", f"entered more than max_visits ({state.max_visits}) times",
                                 state=name)
        if failure is not None:
            if hookset.on_error:
                await hookset.call(hookset.on_error, context, failure)
            break
        visits[name] = visit
        context.step += 1
        context.state = name
        machine.current_state = name
        if context.calls:
            context.calls = []
        if hookset.before_step:
            await hookset.call(hookset.before_step, context, name)
        if name in plan.entry:
            await run_callbacks(plan.entry[name], name, context)

        started_at = time.time()
        started = time.perf_counter()
        retries = 0
        error: StateError | None = None
        outcome: str | Event | None = None
        before_wait = dict(context.data) if state.state_type is StateType.WAITING else None
        try:
            if state.enter_action is not None:
                state.enter_action(context)
            if name in plan.policied:
                outcome, retries = await execute_with_policy(state, context)
            else:
                outcome = await _attempt(state, context)
        except WaitForEvent as pause:  # the step did not happen: the run stops just before it
            if before_wait is not None:
                context.data.clear()
                context.data.update(before_wait)
            context.step -= 1
            visits[name] = visit - 1
            waiting = {"state": name, "events": list(pause.events), "deadline": pause.deadline}
            context.mailbox.deadline = pause.deadline  # running the context again keeps this wait's timer
            break
        except Exception as exc:  # noqa: BLE001 - routed by catch below, or it ends the run
            error = as_state_error(exc, name)

        event: Event
        target: str | None = None
        if error is not None:
            event = Event(error.type, error.as_dict())
            rule = None if (error.type in UNCATCHABLE or name in plan.terminal) else find_catch_rule(state.catch, error)
            if rule is None:
                failure = error
            else:
                if rule.save_as:
                    context.data[rule.save_as] = error.as_dict()
                target = rule.target
        elif state.state_type is StateType.FINAL:
            event = outcome if isinstance(outcome, Event) else Event("done", result=_terminal_output(outcome))
            output = event.result
        elif state.state_type is StateType.ERROR:
            event = Event("fail")
            failure = _fail_state_error(name, outcome)
        else:
            try:
                event, target = plan.route(name, context, outcome)
            except StateError as exc:
                event = outcome if isinstance(outcome, Event) else Event("done")
                exc.state = name
                failure = exc

        duration = time.perf_counter() - started
        reported = error if error is not None else failure
        details: dict[str, Any] = {"step": context.step, "duration": duration}
        if context.calls:
            details["calls"] = list(context.calls)
        record = StateTransition(
            name, target, event.name, started_at, details,
            failure is None and error is None, None if reported is None else reported.as_dict(),
        )
        context.history.append(record)

        if context.calls:
            _fold_usage(usage, context.calls)
        if name in plan.exit:
            await run_callbacks(plan.exit[name], name, context)
        if plan.on_transition and target is not None:
            await run_callbacks(plan.on_transition, record, context)
        if reported is not None and hookset.on_error:
            await hookset.call(hookset.on_error, context, reported)
        if hookset.after_step:
            step_record = StepRecord(
                context.run_id, context.step, name, event.name, target, started_at, duration, retries,
                record.error, event.result, list(context.calls), event.data,
            )
            await hookset.call(hookset.after_step, context, step_record)
        context.mailbox.taken = None
        context.mailbox.deadline = None  # a resumed wait's timer belongs to that wait only

        if target is None:
            break
        context.event = event
        name = target

    status: RunStatus = "succeeded" if failure is None else "failed"
    if waiting is not None:
        status = "waiting"
    error_dict = None if failure is None else failure.as_dict()
    context.metadata["status"] = status
    context.metadata["error"] = error_dict
    context.metadata["output"] = output
    result = RunResult(context.run_id, status, output, context, context.step, error_dict, usage, waiting)
    if hookset.on_run_end:
        await hookset.call(hookset.on_run_end, context, result)
    return result
