"""`StateMetrics`: the mission's metrics object (durations per state, transitions, errors, memory), filled by hand
or by watching runs: it is an observer on the typed event stream.

    metrics = StateMetrics()
    result = await machine.run(inputs, observers=[metrics])     # or monitor(machine): every run of it
    metrics.get_summary()

One `StateMetrics` may watch any number of runs, one after the other or at once; its summary
adds them up. For a stored run, `agentfsm stats RUN` (`agentfsm.service.stats`) reads the
same figures back from the store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentfsm.runtime.budget import call_cost
from agentfsm.runtime.events import (
    ErrorRaised,
    LLMCallEnded,
    RunEnded,
    RunPaused,
    RunStarted,
    StepEnded,
    ToolCallEnded,
    TransitionTaken,
)
from agentfsm.runtime.machine import StateMachine

MB = 1024 * 1024


def _percentile(ordered: list[float], rank: float) -> float:
    where = (len(ordered) - 1) * rank / 100
    low = int(where)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (where - low)


class StateMetrics:
    """Durations per state, transitions, errors, LLM and tool calls and memory, of the runs it watches.

    `memory_every`: seconds between two memory samples while a watched run advances (it is
    also sampled when a run starts and ends).
    """

    critical = False

    def __init__(self, *, memory_every: float = 1.0) -> None:
        self.state_durations: dict[str, list[float]] = {}
        self.transition_counts: dict[str, int] = {}
        """`SOURCE->TARGET` -> times taken."""
        self.error_counts: dict[str, int] = {}
        """State -> errors raised there."""
        self.error_types: dict[str, int] = {}
        self.memory_usage: list[tuple[float, float]] = []
        """(time, resident MB) samples."""
        self.llm_calls: dict[str, dict[str, Any]] = {}
        self.tool_calls: dict[str, dict[str, Any]] = {}
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.memory_every = memory_every
        self._samplers: dict[str, asyncio.Task[None]] = {}
        self._process: Any = None

    # -- recording by hand (the mission's names) ----------------------------------------------------------

    def record_state_duration(self, state: str, duration: float) -> None:
        """One visit of `state` took `duration` seconds."""
        self.state_durations.setdefault(state, []).append(duration)

    def record_transition(self, from_state: str, to_state: str) -> None:
        key = f"{from_state}->{to_state}"
        self.transition_counts[key] = self.transition_counts.get(key, 0) + 1

    def record_error(self, state: str, error_type: str | None = None) -> None:
        """An error in `state` (of the taxonomy's `error_type`, when known)."""
        self.error_counts[state] = self.error_counts.get(state, 0) + 1
        if error_type is not None:
            self.error_types[error_type] = self.error_types.get(error_type, 0) + 1

    def record_memory_usage(self) -> float:
        """Sample this process's resident memory now; returns it in MB."""
        if self._process is None:
            import psutil

            self._process = psutil.Process()
        megabytes = self._process.memory_info().rss / MB
        self.memory_usage.append((time.time(), megabytes))
        return megabytes

    def get_summary(self) -> dict[str, Any]:
        """Everything recorded: `execution_time` (seconds from the first run's start to the last one's end),
        `states` (count, total_time, avg_time, min_time, max_time, p50_time, p95_time), `transitions`, `errors`
        (per state) and `error_types`, `llm` and `tools` (per binding), `memory` (min_mb, max_mb, avg_mb,
        samples)."""
        states = {}
        for state, durations in self.state_durations.items():
            if durations:
                ordered = sorted(durations)
                states[state] = {"count": len(ordered), "total_time": sum(ordered),
                                 "avg_time": sum(ordered) / len(ordered), "min_time": ordered[0],
                                 "max_time": ordered[-1], "p50_time": _percentile(ordered, 50),
                                 "p95_time": _percentile(ordered, 95)}
        memory: dict[str, Any] = {}
        if self.memory_usage:
            values = [megabytes for _, megabytes in self.memory_usage]
            memory = {"min_mb": min(values), "max_mb": max(values), "avg_mb": sum(values) / len(values),
                      "samples": len(values)}
        elapsed = None
        if self.start_time is not None and self.end_time is not None:
            elapsed = max(0.0, self.end_time - self.start_time)
        return {"execution_time": elapsed, "states": states, "transitions": dict(self.transition_counts),
                "errors": dict(self.error_counts), "error_types": dict(self.error_types),
                "llm": {name: dict(one) for name, one in self.llm_calls.items()},
                "tools": {name: dict(one) for name, one in self.tool_calls.items()}, "memory": memory}

    # -- watching runs (observer methods) -------------------------------------------------------------------

    async def on_run_started(self, *, event: RunStarted) -> None:
        if self.start_time is None:
            self.start_time = event.at
        self.record_memory_usage()
        if self.memory_every > 0 and event.run_id not in self._samplers:
            self._samplers[event.run_id] = asyncio.ensure_future(self._sample_while_running())

    async def _sample_while_running(self) -> None:
        while True:
            await asyncio.sleep(self.memory_every)
            self.record_memory_usage()

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.record_state_duration(event.state, event.duration)

    def on_transition(self, *, event: TransitionTaken) -> None:
        self.record_transition(event.source, event.target)

    def on_error(self, *, event: ErrorRaised) -> None:
        self.record_error(event.state, str(event.error.get("type")))

    def on_llm_call_ended(self, *, event: LLMCallEnded) -> None:
        record = event.record
        one = self.llm_calls.setdefault(record.binding, {"calls": 0, "failures": 0, "prompt_tokens": 0,
                                                         "completion_tokens": 0, "latency": 0.0, "cost": None})
        one["calls"] += 1
        one["failures"] += record.error is not None
        one["prompt_tokens"] += record.prompt_tokens
        one["completion_tokens"] += record.completion_tokens
        one["latency"] += record.duration
        cost = call_cost(record)  # priced by the machine making the call, as its budget is
        if cost is not None:
            one["cost"] = (one["cost"] or 0.0) + cost

    def on_tool_call_ended(self, *, event: ToolCallEnded) -> None:
        record = event.record
        one = self.tool_calls.setdefault(record.binding, {"calls": 0, "failures": 0, "duration": 0.0})
        one["calls"] += 1
        one["failures"] += record.error is not None
        one["duration"] += record.duration

    def on_run_ended(self, *, event: RunEnded) -> None:
        self._stopped(event.run_id, event.at)

    def on_pause(self, *, event: RunPaused) -> None:
        self._stopped(event.run_id, event.at)

    def _stopped(self, run_id: str, at: float) -> None:
        self.end_time = at if self.end_time is None else max(self.end_time, at)
        sampler = self._samplers.pop(run_id, None)
        if sampler is not None:
            sampler.cancel()
        self.record_memory_usage()


def monitor(machine: StateMachine, metrics: StateMetrics | None = None) -> StateMetrics:
    """Watch every run of `machine` from now on (the mission's monitored machine): returns the metrics it fills."""
    metrics = StateMetrics() if metrics is None else metrics
    machine.add_observer(metrics)
    return metrics
