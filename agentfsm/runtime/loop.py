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

if TYPE_CHECKING:
    from agentfsm.runtime.machine import StateMachine

logger = logging.getLogger("agentfsm")

RunStatus = Literal["succeeded", "failed"]


@dataclass(slots=True)
class RunResult:
    """How a run ended: its status, the final state's output, the context and what it cost."""

    run_id: str
    status: RunStatus
    output: Any
    context: StateContext
    steps: int
    error: dict[str, Any] | None = None
    usage: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        """The `agentfsm run --json` object."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "output": self.output,
            "context": self.context.data,
            "steps": self.steps,
            "error": self.error,
            "usage": self.usage,
        }


def as_state_error(exc: BaseException, state: str) -> StateError:
    """Any exception from a state's work, as a taxonomy error naming the state."""
    if isinstance(exc, StateError):
        if exc.state is None:
            exc.state = state
        return exc
    return StateError("state.error", describe_exception(exc), state=state)


async def execute_with_policy(state: State, context: StateContext) -> tuple[str | Event | None, int]:
    """Run the state's work under its timeout and retry rules; returns (outcome, retries used)."""
    attempts = [0] * len(state.retry)
    retries = 0
    while True:
        try:
            if state.timeout is None:
                return await state.execute(context), retries
            async with asyncio.timeout(state.timeout) as deadline:
                try:
                    return await state.execute(context), retries
                finally:
                    expired = deadline.expired()
        except TimeoutError as exc:
            error = (
                StateError("timeout", f"took longer than {state.timeout:g}s", state=state.name)
                if state.timeout is not None and expired
                else as_state_error(exc, state.name)
            )
        except Exception as exc:  # noqa: BLE001 - every failure of user work becomes a taxonomy error
            error = as_state_error(exc, state.name)
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
    if detail is None:
        return {"retries": retries}
    if isinstance(detail, dict):
        return {**detail, "retries": retries}
    return detail


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


def _fold_usage(usage: dict[str, dict[str, int]], calls: list[dict[str, Any]]) -> None:
    for call in calls:
        if call.get("kind") != "llm":
            continue
        totals = usage.setdefault(call.get("binding", "?"), {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        totals["calls"] += 1
        totals["prompt_tokens"] += call.get("prompt_tokens", 0) or 0
        totals["completion_tokens"] += call.get("completion_tokens", 0) or 0


async def run_machine(
    machine: StateMachine,
    context: StateContext,
    *,
    hooks: Iterable[object] = (),
    run_id: str | None = None,
) -> RunResult:
    """Drive `machine` from its initial state (or `context.state`) until a final or fail state, or an error."""
    machine.check()
    hookset = HookSet([*machine.hooks, *hooks])
    context.run_id = run_id or context.run_id or new_run_id()
    states = machine.states
    rules_by_state = machine.rules_by_state()
    targets_by_state = {source: frozenset(rule.target for rule in rules) for source, rules in rules_by_state.items()}
    entry_callbacks, exit_callbacks, transition_callbacks = machine.callbacks()
    max_steps = machine.max_steps
    visits: dict[str, int] = {}
    usage: dict[str, dict[str, int]] = {}
    history = context.history
    name = context.state or machine.initial
    assert name is not None  # machine.check() guarantees an initial state
    output: Any = None
    failure: StateError | None = None
    status: RunStatus = "failed"

    if hookset.on_run_start:
        await hookset.call(hookset.on_run_start, context)

    while True:
        state = states[name]
        step = context.step + 1
        if step > max_steps:
            failure = StateError(
                "limit.max_steps", f"the run took more than max_steps ({max_steps}) steps", state=name
            )
            break
        context.step = step
        context.state = name
        machine.current_state = name
        visit = visits.get(name, 0) + 1
        visits[name] = visit
        if state.max_visits is not None and visit > state.max_visits:
            failure = StateError(
                "limit.max_visits", f"entered more than max_visits ({state.max_visits}) times", state=name
            )
            break
        if hookset.before_step:
            await hookset.call(hookset.before_step, context, name)
        if name in entry_callbacks:
            await run_callbacks(entry_callbacks[name], name, context)
        if context.calls:
            context.calls = []

        started_at = time.time()
        started = time.perf_counter()
        retries = 0
        error: StateError | None = None
        try:
            if state.enter_action is not None:
                state.enter_action(context)
            if state.timeout is None and not state.retry:
                outcome = await state.execute(context)
            else:
                outcome, retries = await execute_with_policy(state, context)
            if state.exit_action is not None:
                state.exit_action(context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - routed by catch or ends the run below
            error = as_state_error(exc, name)
            outcome = None

        event: Event
        target: str | None = None
        taken: Transition | None = None
        if error is not None:
            rule = None if (error.type in UNCATCHABLE or state.is_terminal) else find_catch_rule(state.catch, error)
            event = Event(error.type, error.as_dict())
            if rule is None:
                failure = error
            else:
                if rule.save_as:
                    context.data[rule.save_as] = error.as_dict()
                target = rule.target
        elif isinstance(outcome, Event):
            event = outcome
        elif isinstance(outcome, str):
            event = Event("done")
            target = outcome
        else:
            event = Event("done", result=outcome) if outcome is not None else Event("done")

        if failure is None and state.state_type is StateType.FINAL:
            output = event.result
            status = "succeeded"
        elif failure is None and state.state_type is StateType.ERROR:
            failure = _fail_state_error(name, event)
        elif failure is None and target is None:
            try:
                taken = select_transition(rules_by_state.get(name, ()), context, event)
                if taken is None:
                    failure = StateError(
                        "transition.none", f"no transition matches event '{event.name}'", state=name
                    )
                else:
                    target = taken.target
                    if taken.action is not None:
                        taken.action(context, event)
            except Exception as exc:  # noqa: BLE001 - a guard or transition `set` failed
                failure = as_state_error(exc, name)
        elif failure is None and error is None and target not in states:
            failure = StateError(
                "transition.invalid", f"returned '{target}', which is not a state of this machine", state=name
            )
        elif failure is None and error is None and name in targets_by_state and target not in targets_by_state[name]:
            failure = StateError("transition.invalid", f"has no transition to '{target}'", state=name)

        duration = time.perf_counter() - started
        if failure is None and target is not None:
            record = StateTransition(
                name, target, event.name, started_at, {"step": step, "duration": duration}, error is None,
                None if error is None else error.as_dict(),
            )
        else:
            record = StateTransition(
                name, None, event.name, started_at, {"step": step, "duration": duration}, failure is None,
                None if failure is None else failure.as_dict(),
            )
        history.append(record)

        if context.calls:
            _fold_usage(usage, context.calls)
        if name in exit_callbacks:
            await run_callbacks(exit_callbacks[name], name, context)
        if transition_callbacks and target is not None and failure is None:
            await run_callbacks(transition_callbacks, record, context)
        reported = error if error is not None else failure  # routing errors (transition.*, a guard) too
        if reported is not None and hookset.on_error:
            await hookset.call(hookset.on_error, context, reported)
        if hookset.after_step:
            step_record = StepRecord(
                context.run_id, step, name, event.name, record.to_state, started_at, duration, retries,
                record.error, event.result, list(context.calls),
            )
            await hookset.call(hookset.after_step, context, step_record)

        if failure is not None or state.is_terminal:
            break
        assert target is not None
        context.event = event
        name = target

    if failure is not None:
        if failure.type.startswith("limit.") and hookset.on_error:
            await hookset.call(hookset.on_error, context, failure)
        status = "failed"
    error_dict = None if failure is None else failure.as_dict()
    context.metadata["status"] = status
    context.metadata["error"] = error_dict
    context.metadata["output"] = output
    result = RunResult(context.run_id, status, output, context, context.step, error_dict, usage)
    if hookset.on_run_end:
        await hookset.call(hookset.on_run_end, context, result)
    return result


def _fail_state_error(name: str, event: Event) -> StateError:
    """The error a run ends with when it reaches an ERROR state that did not raise one itself."""
    message = event.result if isinstance(event.result, str) and event.result else f"reached error state '{name}'"
    return StateError("fail", message, state=name)
