"""Behaviour of the Python API: machines assembled in Python, without YAML.

Covers the seed's vocabulary (`StateMachine`, `State`, `StateContext`, `StateTransition`,
`StateType`, `Event`), callbacks, observers, retry/catch/timeout policies, the run
limits, definition errors, and many runs sharing one event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest

from agentfsm import (
    CatchRule,
    Event,
    MachineDefinitionError,
    RetryRule,
    State,
    StateContext,
    StateError,
    StateMachine,
    StateTransition,
    StateType,
    StepEnded,
)
from agentfsm.runtime.policy import retry_delay


class Step(State):
    """A state whose work is a function of the context (sync or async); counts its executions."""

    def __init__(
        self,
        name: str,
        work: Callable[[StateContext], Any] | None = None,
        state_type: StateType = StateType.PROCESSING,
        **options: Any,
    ) -> None:
        super().__init__(name, state_type, **options)
        self.work = work
        self.executions = 0

    async def execute(self, context: StateContext) -> Any:
        self.executions += 1
        if self.work is None:
            return None
        outcome = self.work(context)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        return outcome


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def linear(*names: str, max_steps: int = 1000) -> tuple[StateMachine, dict[str, Step]]:
    """a -> b -> ... -> last (final), each taking `done`."""
    machine = StateMachine("linear", max_steps=max_steps)
    states = {}
    for index, name in enumerate(names):
        states[name] = machine.add_state(
            Step(name), initial=index == 0, final=index == len(names) - 1
        )
    for source, target in zip(names, names[1:]):
        machine.add_transition(source, target, "done")
    return machine, states


def fail_with(error_type: str, message: str = "boom") -> Callable[[StateContext], Any]:
    def work(context: StateContext) -> Any:
        raise StateError(error_type, message)

    return work


# -- states, context, history ----------------------------------------------------------------


def test_start_returns_the_final_context_with_data_history_and_metadata() -> None:
    machine = StateMachine("basic")

    def first(ctx: StateContext) -> None:
        ctx.set("a", 1)

    def second(ctx: StateContext) -> str:
        ctx.update({"b": ctx.get("a") + 1, "c": ctx.get("missing", "fallback")})
        return "end"  # the next state's name

    machine.add_state(Step("start", first), initial=True)
    machine.add_state(Step("middle", second))
    end = machine.add_state(Step("end"), final=True)
    machine.add_transition("start", "middle")
    machine.add_transition("middle", "end")

    context = run(machine.start())

    assert isinstance(context, StateContext)
    assert context.data == {"a": 1, "b": 2, "c": "fallback"}
    assert context.get("b") == 2 and context["a"] == 1 and "c" in context
    assert context.metadata["status"] == "succeeded"
    assert context.metadata["error"] is None
    assert end.executions == 1
    # the transitions taken; the final state's execution is a step, not a transition (as the seed's history)
    assert [(h.from_state, h.to_state, h.trigger) for h in context.history] == [
        ("start", "middle", "done"),
        ("middle", "end", "done"),
    ]
    for record in context.history:
        assert isinstance(record, StateTransition)
        assert record.event == record.trigger
        assert record.success is True and record.error is None
        assert isinstance(record.timestamp, float) and record.timestamp > 0
        assert isinstance(record.data, dict)
    timestamps = [h.timestamp for h in context.history]
    assert timestamps == sorted(timestamps)
    assert [h.data["step"] for h in context.history] == [1, 2]
    assert context.get_last_transition() is context.history[-1]


def test_start_accepts_initial_data_or_an_existing_context() -> None:
    machine = StateMachine("ctx")

    def double(ctx: StateContext) -> None:
        ctx.set("n", ctx.get("n") * 2)

    machine.add_state(Step("double", double), initial=True)
    machine.add_state(Step("end"), final=True)
    machine.add_transition("double", "end")

    from_dict = run(machine.start({"n": 21}))
    assert from_dict.get("n") == 42

    mine = StateContext({"n": 5})
    returned = run(machine.start(mine))
    assert returned is mine
    assert mine.get("n") == 10
    assert mine.metadata["status"] == "succeeded"


def test_event_routing_with_triggers_guards_and_actions() -> None:
    machine = StateMachine("review")

    def review(ctx: StateContext) -> Event:
        return Event("scored", {"score": ctx.get("score")})

    seen: list[Any] = []

    def accepted(ctx: StateContext) -> None:
        seen.append((ctx.event.name, ctx.event.data))

    machine.add_state(Step("review", review), initial=True)
    machine.add_state(Step("accepted", accepted))
    machine.add_state(Step("rejected"))
    machine.add_state(Step("end"), final=True)
    # the first rule whose trigger accepts the event and whose guard holds wins
    machine.add_transition("review", "rejected", "other")  # wrong trigger: never taken
    machine.add_transition(
        "review", "accepted", "scored",
        guard=lambda ctx, ev: ev.data["score"] >= 5,
        action=lambda ctx, ev: ctx.set("verdict", f"accepted with {ev.data['score']}"),
    )
    machine.add_transition("review", "rejected", ("scored", "other"))
    machine.add_transition("accepted", "end")
    machine.add_transition("rejected", "end")

    good = run(machine.start({"score": 7}))
    assert [h.to_state for h in good.history] == ["accepted", "end"]
    assert good.history[0].trigger == "scored"
    assert good.get("verdict") == "accepted with 7"
    assert seen == [("scored", {"score": 7})]

    bad = run(machine.start({"score": 2}))
    assert [h.to_state for h in bad.history] == ["rejected", "end"]
    assert "verdict" not in bad.data


def test_possible_transitions_and_can_transition_to() -> None:
    machine = StateMachine("graph")
    machine.add_state(Step("a"), initial=True)
    machine.add_state(Step("b"))
    machine.add_state(Step("c"), final=True)
    machine.add_transition("a", "b", "go")
    machine.add_transition("a", "c", "skip")
    machine.add_transition("b", "c")

    # before a run, the current state is the initial one
    assert [(t.source, t.target, t.trigger) for t in machine.get_possible_transitions()] == [
        ("a", "b", "go"), ("a", "c", "skip"),
    ]
    assert [t.target for t in machine.get_possible_transitions("b")] == ["c"]
    assert machine.get_possible_transitions("c") == []
    assert machine.can_transition_to("b")
    assert machine.can_transition_to("c")
    assert not machine.can_transition_to("a")
    assert machine.can_transition_to("c", from_state="b")
    assert not machine.can_transition_to("b", from_state="b")


# -- final and error states ------------------------------------------------------------------


def test_final_state_executes_exactly_once_and_ends_the_run() -> None:
    machine = StateMachine("final-once")
    start = machine.add_state(Step("start"), initial=True)
    final = machine.add_state(Step("end", lambda ctx: Event("done", result={"answer": 42})), final=True)
    machine.add_transition("start", "end")
    # even a (misguided) rule out of the final state does not keep the run going
    machine.add_transition("end", "start")

    result = run(machine.run())

    assert final.state_type is StateType.FINAL
    assert start.executions == 1
    assert final.executions == 1
    assert result.status == "succeeded" and result.succeeded
    assert result.output == {"answer": 42}
    assert result.steps == 2


def test_error_state_ends_the_run_as_failed() -> None:
    machine = StateMachine("error-state")
    machine.add_state(Step("start", lambda ctx: "broken"), initial=True)
    broken = machine.add_state(Step("broken", state_type=StateType.ERROR))
    machine.add_state(Step("never"), final=True)
    machine.add_transition("start", "broken")
    machine.add_transition("start", "never")
    machine.add_transition("broken", "never")

    result = run(machine.run())

    assert broken.executions == 1
    assert result.status == "failed" and not result.succeeded
    assert result.error["type"] == "fail"
    assert result.error["state"] == "broken"
    assert "broken" in result.error["message"]
    assert result.context.metadata["status"] == "failed"
    assert result.context.metadata["error"] == result.error
    assert "never" not in [h.to_state for h in result.context.history]


def test_final_flag_keeps_an_error_state_an_error_state() -> None:
    machine = StateMachine("flags")
    error = machine.add_state(Step("e", state_type=StateType.ERROR), final=True)
    start = machine.add_state(Step("s"), initial=True)
    assert error.state_type is StateType.ERROR
    assert start.state_type is StateType.INITIAL


# -- callbacks -------------------------------------------------------------------------------


def test_entry_exit_and_transition_callbacks_run_in_order_sync_and_async() -> None:
    log: list[str] = []
    machine = StateMachine("callbacks")
    machine.add_state(Step("a", lambda ctx: log.append("exec:a")), initial=True)
    machine.add_state(Step("b", lambda ctx: log.append("exec:b")), final=True)
    machine.add_transition("a", "b")

    def on_enter(name: str, ctx: StateContext) -> None:
        log.append(f"enter:{name}")

    async def on_enter_async(name: str, ctx: StateContext) -> None:
        await asyncio.sleep(0)
        log.append(f"enter-async:{name}")

    async def on_exit(name: str, ctx: StateContext) -> None:
        await asyncio.sleep(0)
        log.append(f"exit:{name}")

    def on_transition(transition: StateTransition, ctx: StateContext) -> None:
        assert isinstance(transition, StateTransition)
        log.append(f"transition:{transition.from_state}->{transition.to_state}:{transition.trigger}")

    async def on_transition_async(transition: StateTransition, ctx: StateContext) -> None:
        log.append(f"transition-async:{transition.from_state}->{transition.to_state}")

    for state in ("a", "b"):
        machine.add_entry_callback(state, on_enter)
        machine.add_entry_callback(state, on_enter_async)
        machine.add_exit_callback(state, on_exit)
    machine.add_transition_callback(on_transition)
    machine.add_transition_callback(on_transition_async)

    result = run(machine.run())

    assert result.status == "succeeded"
    assert log == [
        "enter:a", "enter-async:a", "exec:a", "exit:a",
        "transition:a->b:done", "transition-async:a->b",
        "enter:b", "enter-async:b", "exec:b", "exit:b",
    ]


def test_a_failing_callback_is_logged_and_the_run_still_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    machine = StateMachine("bad-callbacks")
    machine.add_state(Step("a"), initial=True)
    machine.add_state(Step("b"), final=True)
    machine.add_transition("a", "b")

    def exploding_entry(name: str, ctx: StateContext) -> None:
        raise RuntimeError("entry exploded")

    async def exploding_transition(transition: StateTransition, ctx: StateContext) -> None:
        raise ValueError("transition exploded")

    machine.add_entry_callback("a", exploding_entry)
    machine.add_entry_callback("a", lambda name, ctx: log.append("after-exploding"))
    machine.add_transition_callback(exploding_transition)

    with caplog.at_level(logging.WARNING, logger="agentfsm"):
        result = run(machine.run())

    assert result.status == "succeeded"
    assert log == ["after-exploding"]  # later callbacks still run
    failures = [r for r in caplog.records if r.name.startswith("agentfsm") and r.levelno >= logging.WARNING]
    assert len(failures) == 2
    assert "exploding_entry" in failures[0].getMessage()
    assert "exploding_transition" in failures[1].getMessage()
    assert failures[0].exc_info and "entry exploded" in str(failures[0].exc_info[1])
    assert failures[1].exc_info and "transition exploded" in str(failures[1].exc_info[1])


# -- observers -------------------------------------------------------------------------------


class RecordingObserver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.records: list[StepEnded] = []
        self.errors: list[StateError] = []
        self.result: Any = None

    def on_run_started(self, *, event: Any) -> None:
        self.calls.append(("on_run_started", event.run_id))

    def on_step_started(self, *, event: Any) -> None:
        self.calls.append(("on_step_started", event.state))

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.calls.append(("on_step_ended", event.state))
        self.records.append(event)

    def on_error(self, *, event: Any) -> None:
        self.calls.append(("on_error", event.error["type"]))
        error = event.error
        self.errors.append(StateError(error["type"], error["message"], state=error["state"], detail=error["detail"]))

    def on_run_ended(self, *, event: Any) -> None:
        self.calls.append(("on_run_ended", event.result.status))
        self.result = event.result


class AsyncRecordingObserver(RecordingObserver):
    async def on_run_started(self, *, event: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_run_started(event=event)

    async def on_step_started(self, *, event: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_step_started(event=event)

    async def on_step_ended(self, *, event: StepEnded) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_step_ended(event=event)

    async def on_error(self, *, event: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_error(event=event)

    async def on_run_ended(self, *, event: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_run_ended(event=event)


def hooked_machine() -> StateMachine:
    """work fails with tool.error (caught) -> recover -> end(final, output)."""
    machine = StateMachine("hooked")
    machine.add_state(
        Step("work", fail_with("tool.error", "tool broke"), catch=[CatchRule(("tool",), "recover")]),
        initial=True,
    )
    machine.add_state(Step("recover", lambda ctx: Event("recovered", result="fixed")))
    machine.add_state(Step("end", lambda ctx: Event("done", result="output!")), final=True)
    machine.add_transition("recover", "end", "recovered")
    return machine


@pytest.mark.parametrize("observer_class", [RecordingObserver, AsyncRecordingObserver])
@pytest.mark.parametrize("attach", ["add_observer", "run_argument"])
def test_observers_see_every_step(observer_class: type[RecordingObserver], attach: str) -> None:
    machine = hooked_machine()
    watcher = observer_class()
    if attach == "add_observer":
        machine.add_observer(watcher)
        result = run(machine.run())
    else:
        result = run(machine.run(observers=[watcher]))

    assert result.status == "succeeded"
    assert watcher.calls == [
        ("on_run_started", result.run_id),
        ("on_step_started", "work"), ("on_error", "tool.error"), ("on_step_ended", "work"),
        ("on_step_started", "recover"), ("on_step_ended", "recover"),
        ("on_step_started", "end"), ("on_step_ended", "end"),
        ("on_run_ended", "succeeded"),
    ]
    assert watcher.result is result
    assert watcher.errors[0].state == "work" and watcher.errors[0].message == "tool broke"

    work, recover, end = watcher.records
    for number, record in enumerate(watcher.records, start=1):
        assert isinstance(record, StepEnded)
        assert record.run_id == result.run_id
        assert record.step == number
        assert isinstance(record.started_at, float) and record.started_at > 0
        assert record.duration >= 0
        assert record.retries == 0
        assert isinstance(record.calls, tuple)
    assert (work.state, work.event, work.next_state) == ("work", "tool.error", "recover")
    assert work.error == {"type": "tool.error", "message": "tool broke", "state": "work", "detail": None}
    assert (recover.state, recover.event, recover.next_state, recover.result) == (
        "recover", "recovered", "end", "fixed",
    )
    assert recover.error is None
    assert (end.state, end.event, end.next_state, end.result) == ("end", "done", None, "output!")


def test_observers_attached_to_the_machine_and_to_a_run_both_fire() -> None:
    machine, _ = linear("a", "b")
    on_machine, on_run = RecordingObserver(), AsyncRecordingObserver()
    machine.add_observer(on_machine)
    run(machine.run(observers=[on_run]))
    run(machine.run())
    assert [c for c in on_machine.calls if c[0] == "on_step_started"] == [("on_step_started", "a"), ("on_step_started", "b")] * 2
    assert [c for c in on_run.calls if c[0] == "on_step_started"] == [("on_step_started", "a"), ("on_step_started", "b")]


def test_on_error_and_on_run_end_see_a_failed_run() -> None:
    machine, _ = linear("a", "b")
    machine.states["a"].work = fail_with("tool.error")  # type: ignore[attr-defined]
    watcher = RecordingObserver()
    result = run(machine.run(observers=[watcher]))
    assert result.status == "failed"
    assert watcher.calls[-3:] == [("on_error", "tool.error"), ("on_step_ended", "a"), ("on_run_ended", "failed")]
    assert watcher.records[0].next_state is None
    assert watcher.records[0].error["type"] == "tool.error"


@pytest.mark.parametrize(
    ("outcome", "error_type"),
    [(Event("unexpected"), "transition.none"), ("nowhere", "transition.invalid")],
)
def test_on_error_sees_routing_errors_that_end_the_run(outcome: Any, error_type: str) -> None:
    machine, _ = linear("a", "b")
    machine.states["a"].work = lambda ctx: outcome  # type: ignore[attr-defined]
    watcher = RecordingObserver()
    result = run(machine.run(observers=[watcher]))
    assert result.error["type"] == error_type
    assert [e.type for e in watcher.errors] == [error_type]
    assert watcher.errors[0].state == "a"
    assert watcher.calls[-3:] == [("on_error", error_type), ("on_step_ended", "a"), ("on_run_ended", "failed")]


def test_on_error_sees_a_guard_that_raises_and_an_error_state() -> None:
    machine = StateMachine("guarded")
    machine.add_state(Step("a"), initial=True)
    machine.add_state(Step("b"), final=True)
    machine.add_transition("a", "b", guard=lambda ctx, ev: 1 / 0)
    watcher = RecordingObserver()
    result = run(machine.run(observers=[watcher]))
    assert result.error["type"] == "state.error" and "ZeroDivisionError" in result.error["message"]
    assert [e.type for e in watcher.errors] == ["state.error"]

    machine = StateMachine("to-error")
    machine.add_state(Step("a"), initial=True)
    machine.add_state(Step("oops", state_type=StateType.ERROR))
    machine.add_transition("a", "oops")
    watcher = RecordingObserver()
    run(machine.run(observers=[watcher]))
    assert [(e.type, e.state) for e in watcher.errors] == [("fail", "oops")]


# -- retry -----------------------------------------------------------------------------------


def flaky(failures: int, error_type: str = "state") -> Callable[[StateContext], Any]:
    """Fails `failures` times (a plain exception, or a StateError of `error_type`), then succeeds."""
    attempts = {"n": 0}

    def work(ctx: StateContext) -> None:
        attempts["n"] += 1
        ctx.set("attempts", attempts["n"])
        if attempts["n"] <= failures:
            if error_type == "state":
                raise RuntimeError(f"failure {attempts['n']}")
            raise StateError(error_type, f"failure {attempts['n']}")

    return work


def retry_machine(work: Callable[[StateContext], Any], *rules: RetryRule, **options: Any) -> tuple[StateMachine, Step]:
    machine = StateMachine("retry")
    state = machine.add_state(Step("work", work, retry=rules, **options), initial=True)
    machine.add_state(Step("end"), final=True)
    machine.add_transition("work", "end")
    return machine, state


def test_retry_a_state_that_fails_twice_then_succeeds() -> None:
    machine, state = retry_machine(flaky(2), RetryRule(("state.error",), interval=0.001, max_attempts=3))
    watcher = RecordingObserver()
    result = run(machine.run(observers=[watcher]))
    assert result.status == "succeeded"
    assert state.executions == 3
    assert result.context.get("attempts") == 3
    assert watcher.records[0].retries == 2
    assert watcher.records[0].error is None


def test_retry_exhausted_ends_in_the_error() -> None:
    machine, state = retry_machine(flaky(100), RetryRule(("*",), interval=0.001, max_attempts=2))
    result = run(machine.run())
    assert result.status == "failed"
    assert state.executions == 3  # the first attempt and two retries
    assert result.error["type"] == "state.error"
    assert result.error["state"] == "work"
    assert result.error["message"] == "RuntimeError: failure 3"
    assert result.error["detail"] == {"retries": 2}


def test_max_attempts_zero_never_retries() -> None:
    machine, state = retry_machine(flaky(1), RetryRule(("*",), interval=0.001, max_attempts=0))
    result = run(machine.run())
    assert result.status == "failed"
    assert state.executions == 1


@pytest.mark.parametrize(
    ("patterns", "retried"),
    [
        (("tool",), True),  # a dotted prefix
        (("tool.error",), True),  # the exact type
        (("*",), True),
        (("tool.err",), False),  # not a whole segment
        (("llm",), False),
        (("timeout", "tool"), True),
    ],
)
def test_retry_errors_match_by_dotted_prefix(patterns: tuple[str, ...], retried: bool) -> None:
    machine, state = retry_machine(flaky(1, "tool.error"), RetryRule(patterns, interval=0.001, max_attempts=1))
    result = run(machine.run())
    assert state.executions == (2 if retried else 1)
    assert result.status == ("succeeded" if retried else "failed")


def test_only_the_first_matching_retry_rule_applies() -> None:
    # as in Step Functions: the first rule matches and is exhausted; the second is never tried
    machine, state = retry_machine(
        flaky(100, "tool.error"),
        RetryRule(("tool",), interval=0.001, max_attempts=1),
        RetryRule(("*",), interval=0.001, max_attempts=5),
    )
    result = run(machine.run())
    assert result.status == "failed"
    assert state.executions == 2


def test_the_loop_waits_the_computed_backoff_between_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any) -> Any:
        slept.append(delay)
        return await real_sleep(0)

    rule = RetryRule(("*",), interval=0.5, max_attempts=4, backoff_rate=3.0, max_delay=2.0)
    machine, state = retry_machine(flaky(4), rule)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    result = run(machine.run())
    monkeypatch.undo()
    assert result.status == "succeeded"
    assert state.executions == 5
    assert slept == pytest.approx([0.5, 1.5, 2.0, 2.0])


def test_retry_delay_interval_and_backoff() -> None:
    rule = RetryRule(interval=1.0, backoff_rate=2.0)
    assert [retry_delay(rule, n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    constant = RetryRule(interval=0.25, backoff_rate=1.0)
    assert [retry_delay(constant, n) for n in range(1, 4)] == [0.25, 0.25, 0.25]
    tripling = RetryRule(interval=0.1, backoff_rate=3.0)
    assert [retry_delay(tripling, n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.3, 0.9])


def test_retry_delay_is_capped_by_max_delay() -> None:
    rule = RetryRule(interval=1.0, backoff_rate=2.0, max_delay=5.0)
    assert [retry_delay(rule, n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert retry_delay(RetryRule(interval=10.0, max_delay=3.0), 1) == 3.0


def test_retry_delay_full_jitter_stays_within_bounds() -> None:
    rule = RetryRule(interval=1.0, backoff_rate=2.0, max_delay=6.0, jitter="full")
    rng = random.Random(1234)
    for retry_number, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 6.0), (8, 6.0)]:
        samples = [retry_delay(rule, retry_number, rng) for _ in range(300)]
        assert all(0.0 <= sample <= cap for sample in samples)
        assert len(set(samples)) > 250  # actually random, not a constant
        assert max(samples) > cap * 0.8 and min(samples) < cap * 0.2  # spread over the whole range
    # the same seed gives the same delays (testable, reproducible)
    assert retry_delay(rule, 3, random.Random(7)) == retry_delay(rule, 3, random.Random(7))
    # without jitter there is no randomness
    plain = RetryRule(interval=1.0, backoff_rate=2.0)
    assert {retry_delay(plain, 3, random.Random(seed)) for seed in range(20)} == {4.0}


# -- catch -----------------------------------------------------------------------------------


def test_catch_routes_the_error_and_saves_it() -> None:
    machine = StateMachine("catch")
    machine.add_state(
        Step(
            "work",
            fail_with("tool.error", "disk on fire"),
            catch=[CatchRule(("llm",), "wrong"), CatchRule(("tool",), "recover", save_as="problem")],
        ),
        initial=True,
    )
    machine.add_state(Step("wrong"))
    recover = machine.add_state(Step("recover"))
    machine.add_state(Step("end"), final=True)
    machine.add_transition("wrong", "end")
    machine.add_transition("recover", "end")

    result = run(machine.run())

    assert result.status == "succeeded"
    assert recover.executions == 1
    assert result.context.get("problem") == {
        "type": "tool.error", "message": "disk on fire", "state": "work", "detail": None,
    }
    first = result.context.history[0]
    assert (first.from_state, first.to_state, first.trigger) == ("work", "recover", "tool.error")
    assert first.success is False
    assert first.error["type"] == "tool.error"
    assert [h.to_state for h in result.context.history] == ["recover", "end"]


def test_catch_after_retries_are_exhausted_keeps_the_retry_count() -> None:
    machine = StateMachine("retry-then-catch")
    work = machine.add_state(
        Step(
            "work", flaky(100),
            retry=[RetryRule(("state",), interval=0.001, max_attempts=2)],
            catch=[CatchRule(("*",), "recover", save_as="err")],
        ),
        initial=True,
    )
    machine.add_state(Step("recover"))
    machine.add_state(Step("end"), final=True)
    machine.add_transition("recover", "end")
    result = run(machine.run())
    assert result.status == "succeeded"
    assert work.executions == 3
    assert result.context.get("err")["type"] == "state.error"
    assert result.context.get("err")["detail"] == {"retries": 2}


def test_an_error_no_catch_rule_matches_fails_the_run() -> None:
    machine = StateMachine("uncaught")
    machine.add_state(
        Step("work", fail_with("llm.parse", "not json"), catch=[CatchRule(("tool",), "recover")]), initial=True
    )
    machine.add_state(Step("recover"), final=True)
    result = run(machine.run())
    assert result.status == "failed"
    assert result.error == {"type": "llm.parse", "message": "not json", "state": "work", "detail": None}
    assert result.context.history == []  # a failing step that ends the run takes no transition


def test_a_plain_exception_becomes_state_error_naming_the_state() -> None:
    machine, _ = linear("a", "b")
    machine.states["a"].work = lambda ctx: {}["nope"]  # type: ignore[attr-defined]
    result = run(machine.run())
    assert result.status == "failed"
    assert result.error["type"] == "state.error"
    assert result.error["state"] == "a"
    assert "KeyError" in result.error["message"]


# -- timeout ---------------------------------------------------------------------------------


def sleeper(flags: dict[str, Any], seconds: float = 5.0) -> Callable[[StateContext], Any]:
    async def work(ctx: StateContext) -> None:
        flags["started"] = flags.get("started", 0) + 1
        try:
            await asyncio.sleep(seconds)
            flags["finished"] = True
        except asyncio.CancelledError:
            flags["cancelled"] = flags.get("cancelled", 0) + 1
            raise
        finally:
            flags["cleaned_up"] = flags.get("cleaned_up", 0) + 1

    return work


def test_timeout_cancels_the_work_and_fails_with_type_timeout() -> None:
    flags: dict[str, Any] = {}
    machine = StateMachine("slow")
    machine.add_state(Step("slow", sleeper(flags), timeout=0.05), initial=True)
    machine.add_state(Step("end"), final=True)
    machine.add_transition("slow", "end")

    result = run(machine.run())

    assert result.status == "failed"
    assert result.error["type"] == "timeout"
    assert result.error["state"] == "slow"
    assert flags == {"started": 1, "cancelled": 1, "cleaned_up": 1}


def test_timeout_is_retried_and_caught_like_any_error() -> None:
    flags: dict[str, Any] = {}
    machine = StateMachine("slow-retry")
    machine.add_state(
        Step(
            "slow", sleeper(flags), timeout=0.02,
            retry=[RetryRule(("timeout",), interval=0.001, max_attempts=2)],
            catch=[CatchRule(("timeout",), "give_up", save_as="why")],
        ),
        initial=True,
    )
    machine.add_state(Step("give_up"), final=True)
    result = run(machine.run())
    assert result.status == "succeeded"
    assert flags == {"started": 3, "cancelled": 3, "cleaned_up": 3}
    assert result.context.get("why")["type"] == "timeout"
    assert result.context.get("why")["detail"] == {"retries": 2}


def test_work_that_finishes_within_its_timeout_succeeds() -> None:
    flags: dict[str, Any] = {}
    machine = StateMachine("quick")
    machine.add_state(Step("quick", sleeper(flags, 0.001), timeout=5.0), initial=True)
    machine.add_state(Step("end"), final=True)
    machine.add_transition("quick", "end")
    result = run(machine.run())
    assert result.status == "succeeded"
    assert flags == {"started": 1, "finished": True, "cleaned_up": 1}


def test_a_timeout_error_raised_by_the_work_itself_is_not_a_state_timeout() -> None:
    def work(ctx: StateContext) -> None:
        raise TimeoutError("upstream timed out")

    machine = StateMachine("own-timeout")
    machine.add_state(Step("call", work, timeout=5.0), initial=True)
    machine.add_state(Step("end"), final=True)
    machine.add_transition("call", "end")
    result = run(machine.run())
    assert result.status == "failed"
    assert result.error["type"] == "state.error"
    assert "upstream timed out" in result.error["message"]


# -- limits and routing errors ---------------------------------------------------------------


def looping_machine(**options: Any) -> tuple[StateMachine, Step, Step]:
    machine = StateMachine("loop", max_steps=options.pop("max_steps", 1000))
    ping = machine.add_state(Step("ping", **options), initial=True)
    pong = machine.add_state(Step("pong"))
    machine.add_state(Step("end"), final=True)
    machine.add_transition("ping", "pong")
    machine.add_transition("pong", "ping")
    machine.add_transition("pong", "end")  # never reached: the first rule wins
    return machine, ping, pong


def test_max_visits_ends_the_run_failed_naming_the_state() -> None:
    machine, ping, _ = looping_machine(max_visits=3)
    watcher = RecordingObserver()
    result = run(machine.run(observers=[watcher]))
    assert result.status == "failed"
    assert result.error["type"] == "limit.max_visits"
    assert result.error["state"] == "ping"
    assert "max_visits (3)" in result.error["message"]
    assert ping.executions == 3
    assert watcher.errors[-1].type == "limit.max_visits"
    assert str(watcher.errors[-1]).startswith("state 'ping': limit.max_visits")


def test_max_steps_ends_the_run_failed_naming_the_state() -> None:
    machine, ping, pong = looping_machine(max_steps=5)
    result = run(machine.run())
    assert result.status == "failed"
    assert result.error["type"] == "limit.max_steps"
    assert "max_steps (5)" in result.error["message"]
    assert result.error["state"] == "pong"  # steps 1..5: ping pong ping pong ping; the 6th would be pong
    assert ping.executions + pong.executions == 5
    assert result.steps == 5
    assert result.context.metadata["status"] == "failed"


def test_no_matching_transition_names_the_state_and_the_event() -> None:
    machine = StateMachine("stuck")
    machine.add_state(Step("decide", lambda ctx: Event("maybe", {"x": 1})), initial=True)
    machine.add_state(Step("yes"), final=True)
    machine.add_transition("decide", "yes", "yes")
    machine.add_transition("decide", "yes", "maybe", guard=lambda ctx, ev: False)

    result = run(machine.run())

    assert result.status == "failed"
    assert result.error["type"] == "transition.none"
    assert result.error["state"] == "decide"
    assert "'maybe'" in result.error["message"]
    assert result.context.history == [] and result.steps == 1


def test_a_state_without_any_rule_fails_with_transition_none() -> None:
    machine = StateMachine("dead-end")
    machine.add_state(Step("alone"), initial=True)
    machine.add_state(Step("end"), final=True)
    result = run(machine.run())
    assert result.error["type"] == "transition.none"
    assert result.error["state"] == "alone"
    assert "'done'" in result.error["message"]


def test_returning_an_unknown_state_name_is_transition_invalid() -> None:
    machine = StateMachine("typo")
    machine.add_state(Step("start", lambda ctx: "ned"), initial=True)
    end = machine.add_state(Step("end"), final=True)
    machine.add_transition("start", "end")
    result = run(machine.run())
    assert result.status == "failed"
    assert result.error["type"] == "transition.invalid"
    assert result.error["state"] == "start"
    assert "'ned'" in result.error["message"]
    assert end.executions == 0


def test_returning_a_state_with_no_rule_to_it_is_transition_invalid() -> None:
    machine = StateMachine("shortcut")
    machine.add_state(Step("start", lambda ctx: "secret"), initial=True)
    secret = machine.add_state(Step("secret"), final=True)
    machine.add_state(Step("end"), final=True)
    machine.add_transition("start", "end")
    result = run(machine.run())
    assert result.error["type"] == "transition.invalid"
    assert "'secret'" in result.error["message"]
    assert secret.executions == 0


def test_a_state_without_rules_may_return_any_state_name() -> None:
    machine = StateMachine("free")
    machine.add_state(Step("start", lambda ctx: "end"), initial=True)
    end = machine.add_state(Step("end"), final=True)
    result = run(machine.run())
    assert result.status == "succeeded"
    assert end.executions == 1


# -- definition errors -----------------------------------------------------------------------


def test_a_machine_without_an_initial_state_cannot_run() -> None:
    machine = StateMachine("headless")
    machine.add_state(Step("a"))
    machine.add_state(Step("b"), final=True)
    machine.add_transition("a", "b")
    with pytest.raises(MachineDefinitionError, match="no initial state"):
        run(machine.start())


def test_a_machine_without_states_cannot_run() -> None:
    with pytest.raises(MachineDefinitionError, match="no states"):
        run(StateMachine("empty").start())


def test_a_transition_to_an_unknown_state_is_a_definition_error() -> None:
    machine = StateMachine("dangling")
    started = Step("a")
    machine.add_state(started, initial=True)
    machine.add_state(Step("b"), final=True)
    machine.add_transition("a", "c")
    with pytest.raises(MachineDefinitionError, match="unknown state 'c'"):
        run(machine.start())
    assert started.executions == 0


def test_a_transition_from_an_unknown_state_or_a_catch_to_one_is_a_definition_error() -> None:
    machine, _ = linear("a", "b")
    machine.add_transition("ghost", "b")
    with pytest.raises(MachineDefinitionError, match="ghost"):
        run(machine.start())

    machine = StateMachine("bad-catch")
    machine.add_state(Step("a", catch=[CatchRule(("*",), "nowhere")]), initial=True)
    machine.add_state(Step("b"), final=True)
    machine.add_transition("a", "b")
    with pytest.raises(MachineDefinitionError, match="nowhere"):
        run(machine.start())


def test_duplicate_states_and_two_initial_states_are_definition_errors() -> None:
    machine = StateMachine("dupes")
    machine.add_state(Step("a"), initial=True)
    with pytest.raises(MachineDefinitionError, match="'a' is already defined"):
        machine.add_state(Step("a"))
    with pytest.raises(MachineDefinitionError, match="initial state is already 'a'"):
        machine.add_state(Step("b"), initial=True)


# -- many runs on one event loop -------------------------------------------------------------


def test_many_runs_share_one_event_loop_concurrently() -> None:
    tracker = {"in_flight": 0, "max_in_flight": 0}

    async def wait(ctx: StateContext) -> None:
        tracker["in_flight"] += 1
        tracker["max_in_flight"] = max(tracker["max_in_flight"], tracker["in_flight"])
        try:
            await asyncio.sleep(0.05)
            ctx.set("doubled", ctx.get("i") * 2)
        finally:
            tracker["in_flight"] -= 1

    machine = StateMachine("sleepy")
    machine.add_state(Step("wait", wait), initial=True)
    machine.add_state(Step("end", lambda ctx: Event("done", result=ctx.get("doubled"))), final=True)
    machine.add_transition("wait", "end")

    async def main() -> list[Any]:
        return await asyncio.gather(*(machine.run({"i": i}) for i in range(200)))

    results = run(main())

    assert len(results) == 200
    assert all(r.status == "succeeded" for r in results)
    assert [r.output for r in results] == [2 * i for i in range(200)]  # each run kept its own context
    assert len({r.run_id for r in results}) == 200
    assert tracker["in_flight"] == 0
    assert tracker["max_in_flight"] > 1


# -- many runs of one machine ---------------------------------------------------------------------


class Tally(State):
    """Adds its run's `n` to `total` three times, yielding to the other runs in between."""

    async def execute(self, context: StateContext) -> str | None:
        for _ in range(3):
            await asyncio.sleep(random.random() / 1000)
            context.set("total", context.get("total", 0) + context.get("n"))
        return None


def test_one_machine_runs_200_runs_at_once_sharing_nothing() -> None:
    machine = StateMachine("tally")
    machine.add_state(Tally("add"), initial=True)
    machine.add_state(Step("check", lambda ctx: Event("big" if ctx.get("total") > 300 else "small")))
    machine.add_state(Step("big"), final=True)
    machine.add_state(Step("small"), final=True)
    machine.add_transition("add", "check")
    machine.add_transition("check", "big", "big")
    machine.add_transition("check", "small", "small")

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(machine.run({"n": n}) for n in range(200)))

    results = run(all_at_once())
    assert len({result.run_id for result in results}) == 200
    for n, result in enumerate(results):
        assert result.status == "succeeded" and result.context.data == {"n": n, "total": 3 * n}
        expected = "big" if 3 * n > 300 else "small"
        assert [(t.from_state, t.to_state) for t in result.context.history] == [("add", "check"), ("check", expected)]
        assert result.context.state == expected and result.steps == 3
    assert machine.current_state is None  # the seed's convenience follows start() only; runs keep their own


def test_a_slow_observer_slows_a_run_without_changing_it() -> None:
    class Slow:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def on_event(self, *, event: Any) -> None:
            await asyncio.sleep(0.002)
            self.seen.append(type(event).__name__)

    machine = hooked_machine()
    plain = run(machine.run())
    slow = Slow()
    watched = run(machine.run(observers=[slow]))
    assert (watched.status, watched.output, watched.steps) == (plain.status, plain.output, plain.steps)
    assert [(t.from_state, t.to_state) for t in watched.context.history] == \
        [(t.from_state, t.to_state) for t in plain.context.history]
    assert slow.seen[0] == "RunStarted" and slow.seen[-1] == "RunEnded" and slow.seen.count("StepEnded") == 3


def test_a_run_stopped_by_a_critical_observer_tells_the_others_it_paused() -> None:
    class Breaks:
        critical = True

        def on_step_ended(self, *, event: StepEnded) -> None:
            if event.step == 2:
                raise OSError("disk full")

    class Watches:
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any]] = []

        def on_step_ended(self, *, event: StepEnded) -> None:
            self.seen.append(("step", event.state))

        def on_pause(self, *, event: Any) -> None:
            self.seen.append(("paused", (event.step, event.state, event.reason)))

    machine, _ = linear("a", "b", "c")
    watcher = Watches()
    with pytest.raises(OSError, match="disk full"):
        run(machine.run(observers=[Breaks(), watcher]))
    # the critical observer runs first and stops the run: the watcher never sees step 2 end
    assert watcher.seen == [("step", "a"), ("paused", (2, "b", "stopped by OSError"))]


def test_a_state_changed_after_a_first_run_runs_as_it_is_now() -> None:
    failures = iter([True, True, False])

    def flaky(context: StateContext) -> None:
        if next(failures):
            raise StateError("tool.error", "flaky")

    machine, states = linear("a", "b")
    states["a"].work = flaky
    assert run(machine.run()).status == "failed"
    states["a"].retry = (RetryRule(("tool",), max_attempts=2, interval=0),)
    retried = run(machine.run())
    assert (retried.status, states["a"].executions) == ("succeeded", 3)
