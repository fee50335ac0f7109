"""`StateMetrics` (the mission's names): filled by hand, or by watching runs as an observer (`monitor(machine)`,
`observers=[metrics]`), in memory or recorded; memory is sampled while a long step runs."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Event, State, StateContext, StateMetrics
from agentfsm.observability.metrics import monitor

from tests.test_stats import BUSY


WATCHED: list[StateMetrics] = []
"""The metrics `Slow` waits on: it runs until their sampler has sampled twice while it runs."""


class Slow(State):
    """A state that takes a while (a python state the machine below calls): until the watched metrics have
    two samples more than when it started, however slowly a loaded machine runs the sampler."""

    async def execute(self, context: StateContext) -> Any:
        metrics = WATCHED[-1]
        wanted = len(metrics.memory_usage) + 2
        for _ in range(1000):
            if len(metrics.memory_usage) >= wanted:
                break
            await asyncio.sleep(0.01)
        return Event("done")


def test_filled_by_hand() -> None:
    metrics = StateMetrics()
    for seconds in (0.5, 0.25, 1.0):
        metrics.record_state_duration("fetch", seconds)
    metrics.record_transition("fetch", "parse")
    metrics.record_transition("fetch", "parse")
    metrics.record_error("parse")
    megabytes = metrics.record_memory_usage()
    summary = metrics.get_summary()
    assert summary["states"]["fetch"] == {"count": 3, "total_time": 1.75, "avg_time": pytest.approx(1.75 / 3),
                                          "min_time": 0.25, "max_time": 1.0, "p50_time": 0.5,
                                          "p95_time": pytest.approx(0.95)}
    assert summary["transitions"] == {"fetch->parse": 2} and summary["errors"] == {"parse": 1}
    assert summary["memory"]["samples"] == 1 and summary["memory"]["max_mb"] == megabytes > 1
    assert summary["execution_time"] is None  # no run was watched


@pytest.mark.parametrize("recorded", [False, True])
def test_a_monitored_run_fills_it(tmp_path: Path, recorded: bool) -> None:
    path = tmp_path / "busy.yaml"
    path.write_text(BUSY, encoding="utf-8")
    machine = agentfsm.load_machine(path)
    seen: list[Any] = []

    class Steps:
        def on_step_ended(self, *, event: Any) -> None:
            seen.append(event)

    if recorded:
        metrics = StateMetrics()

        async def go() -> Any:
            async with agentfsm.Runs(str(tmp_path / "runs.db")) as runs:
                return await runs.start(machine, observers=[metrics, Steps()])
        result = asyncio.run(go())
    else:
        metrics = monitor(machine)
        result = asyncio.run(machine.run({}, observers=[Steps()]))
    assert result.succeeded
    summary = metrics.get_summary()
    for state in ("ask", "compute", "recover", "done"):
        durations = [event.duration for event in seen if event.state == state]
        assert summary["states"][state]["count"] == len(durations)
        assert summary["states"][state]["total_time"] == pytest.approx(sum(durations))
    assert summary["transitions"] == {"ask->compute": 3, "compute->ask": 2, "compute->recover": 1,
                                      "recover->done": 1}
    assert summary["errors"] == {"compute": 1} and summary["error_types"] == {"tool.error": 1}
    brain = summary["llm"]["brain"]
    usage = result.usage["brain"]
    assert brain["calls"] == 3 and brain["prompt_tokens"] == usage["prompt_tokens"]
    assert brain["cost"] == pytest.approx((usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.6) / 1e6)
    assert summary["tools"]["calc"]["calls"] == 4 and summary["tools"]["calc"]["failures"] == 2
    assert summary["memory"]["samples"] >= 2 and summary["execution_time"] >= 0


def test_memory_is_sampled_while_a_long_step_runs(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text("agentfsm: 1\nname: slow\ninitial: wait_a_bit\nstates:\n"
                    "  wait_a_bit: {type: python, call: 'tests.test_metrics:Slow', next: done}\n"
                    "  done: {type: final}\n", encoding="utf-8")
    metrics = StateMetrics(memory_every=0.05)
    importlib.import_module("tests.test_metrics").WATCHED.append(metrics)  # the module the machine's call imports
    result = asyncio.run(agentfsm.load_machine(path).run({}, observers=[metrics]))
    assert result.succeeded
    summary = metrics.get_summary()
    # one sample at the start, one at the end, and the sampler's (at least two) while the step ran
    assert summary["memory"]["samples"] >= 4
    assert summary["states"]["wait_a_bit"]["max_time"] >= 0.05
