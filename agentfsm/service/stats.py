"""`agentfsm stats`: what a run did and what it cost, added up from its stored trace; and a machine's runs together.

    stats = await run_stats(runs.store, run_id)          # a `RunStats`; `views.stats_json(stats)` is its JSON
    summary = await machine_stats(runs.store, "agent", since=7 * 86400)

A run's stats cover everything its trace holds (every branch it took, so work a rollback
abandoned is counted: it was done and paid for). A run with child runs (a team's agents,
nested machines, parallel branches, map items) has their stats too, each on its own, and a
total. The trace is read as stored, a page of rows at a time, without putting its large
values back (`agentfsm.history.trace_read`): a 10,000-step run is read in well under a second.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentfsm.history.trace import STEP_FIELDS
from agentfsm.service.costs import Pricing, Pricings, run_usage, usage_cost
from agentfsm.store.base import FINISHED, Damaged, RunFilter, RunRow
from agentfsm.store.core import Store

_STATE, _DURATION, _NEXT, _EVENT, _TRANSITION = (STEP_FIELDS.index(name) for name in
                                                   ("state", "duration", "next_state", "event", "transition"))
_AT, _ENDED = STEP_FIELDS.index("at"), STEP_FIELDS.index("ended")

PAGE = 5000
"""Trace rows read at a time: a store finds a page by scanning the run's rows, so few large pages read a long run
fastest (a row is one step's entries, without its large values: a page holds a few MB at most)."""


def summarize(values: list[float]) -> dict[str, float | int]:
    """count, total, mean, p50, p95 and max of some durations (percentiles interpolated between ranks)."""
    if not values:
        return {"count": 0, "total": 0.0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    total = sum(ordered)
    return {"count": len(ordered), "total": total, "mean": total / len(ordered), "p50": percentile(ordered, 50),
            "p95": percentile(ordered, 95), "max": ordered[-1]}


def percentile(ordered: list[float], rank: float) -> float:
    """The `rank` percentile of sorted values, interpolated linearly between the two nearest."""
    if not ordered:
        return 0.0
    where = (len(ordered) - 1) * rank / 100
    low = int(where)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (where - low)


@dataclass(slots=True)
class LLMStats:
    """One LLM binding's calls in a run."""

    models: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    tokens_by_model: dict[str | None, list[int]] = field(default_factory=dict)
    """Model the call named -> [prompt, completion] tokens (what is priced, once the trace is read)."""
    cost: float | None = None

    def price(self, binding: str, pricing: Pricing) -> None:
        for model, (prompt, completion) in self.tokens_by_model.items():
            cost = pricing.price(binding, model, prompt, completion)
            if cost is not None:
                self.cost = (self.cost or 0.0) + cost


@dataclass(slots=True)
class ToolStats:
    """One tool's calls in a run."""

    calls: int = 0
    failures: int = 0
    durations: list[float] = field(default_factory=list)


@dataclass(slots=True)
class RunStats:
    """What one run did (its own steps and calls), with its child runs' stats beside it."""

    run: RunRow
    states: dict[str, list[float]] = field(default_factory=dict)
    """State -> the duration of each visit, in seconds."""
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(source, target, event) -> times taken."""
    errors: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    """State -> retries scheduled."""
    llm: dict[str, LLMStats] = field(default_factory=dict)
    tools: dict[str, ToolStats] = field(default_factory=dict)
    memory: list[dict[str, Any]] = field(default_factory=list)
    first_at: float | None = None
    last_at: float | None = None
    children: list[RunStats] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(len(durations) for durations in self.states.values())

    @property
    def duration(self) -> float:
        """Seconds from the first traced moment to the last (waits between drives included)."""
        return 0.0 if self.first_at is None or self.last_at is None else max(0.0, self.last_at - self.first_at)

    def seen(self, at: Any) -> None:
        if isinstance(at, int | float):
            if self.first_at is None or at < self.first_at:
                self.first_at = at
            if self.last_at is None or at > self.last_at:
                self.last_at = at

    def descendants(self) -> list[RunStats]:
        found = []
        for child in self.children:
            found.append(child)
            found.extend(child.descendants())
        return found


# -- reading one run's trace ----------------------------------------------------------------------------


def _add_step(stats: RunStats, record: list[Any]) -> None:
    state = record[_STATE]
    stats.states.setdefault(state, []).append(float(record[_DURATION] or 0.0))
    if record[_TRANSITION] is not None:
        stats.transitions[(state, record[_NEXT], record[_EVENT] or "")] += 1
    stats.seen(record[_AT])
    stats.seen(record[_ENDED] if len(record) > _ENDED else None)


def _add_llm(stats: RunStats, entry: dict[str, Any]) -> None:
    binding = str(entry.get("binding") or "?")
    found = stats.llm.setdefault(binding, LLMStats())
    model = entry.get("model")
    prompt, completion = int(entry.get("prompt_tokens") or 0), int(entry.get("completion_tokens") or 0)
    found.models[str(model or "?")] += 1
    found.calls += 1
    found.failures += entry.get("error") is not None
    found.prompt_tokens += prompt
    found.completion_tokens += completion
    found.latencies.append(float(entry.get("duration") or 0.0))
    tokens = found.tokens_by_model.setdefault(model if isinstance(model, str) else None, [0, 0])
    tokens[0] += prompt
    tokens[1] += completion


def _add_entry(stats: RunStats, entry: dict[str, Any]) -> None:
    kind = entry.get("kind")
    stats.seen(entry.get("at"))
    if kind == "llm_call":
        _add_llm(stats, entry)
    elif kind == "tool_call":
        tool = stats.tools.setdefault(str(entry.get("tool") or "?"), ToolStats())
        tool.calls += 1
        tool.failures += entry.get("error") is not None
        tool.durations.append(float(entry.get("duration") or 0.0))
    elif kind == "error":
        error = entry.get("error")
        stats.errors[str(error.get("type") if isinstance(error, dict) else "?")] += 1
    elif kind == "retry":
        stats.retries[str(entry.get("state") or "?")] += 1
    elif kind == "memory":
        stats.memory.append({key: entry.get(key) for key in ("at", "step", "rss", "peak", "pid")})
    elif kind == "state_exited":  # a step kept as separate entries rather than one record
        stats.states.setdefault(str(entry.get("state")), []).append(float(entry.get("duration") or 0.0))
    elif kind == "transition":
        stats.transitions[(str(entry.get("source")), str(entry.get("target")), str(entry.get("event") or ""))] += 1


async def _own_stats(store: Store, run: RunRow) -> RunStats:
    stats = RunStats(run)
    after = 0
    while True:
        rows = await store.trace(run.id, after=after, limit=PAGE)
        for row in rows:
            try:
                stored = json.loads(row.entries)
            except ValueError as exc:
                raise Damaged(f"trace entry {row.seq} of run {run.id} is damaged ({exc})") from None
            for item in stored:
                if isinstance(item, list):
                    _add_step(stats, item)
                elif isinstance(item, dict):
                    _add_entry(stats, item)
        if len(rows) < PAGE:
            return stats
        after = rows[-1].last


async def run_stats(store: Store, run_id: str, pricings: Pricings | None = None) -> RunStats:
    """A run's stats from its trace, with each of its child runs' (and theirs) as `children`."""
    pricings = pricings or Pricings(store)
    run = await store.get_run(run_id)
    stats = await _own_stats(store, run)
    if stats.llm:  # a run without LLM calls needs no prices (nor its machine's source)
        pricing = await pricings.of(run)
        for binding, one in stats.llm.items():
            one.price(binding, pricing)
    kids = await store.list_runs(RunFilter(parent_run=run.id))
    for child in sorted(kids, key=lambda row: (row.parent_step or 0, row.created_at)):
        stats.children.append(await run_stats(store, child.id, pricings))
    return stats


# -- a machine's runs together ------------------------------------------------------------------------------


@dataclass(slots=True)
class MachineStats:
    """A machine's runs (since some time) added up: statuses, steps, durations, tokens and cost."""

    machine: str
    since: float | None
    statuses: Counter[str] = field(default_factory=Counter)
    steps: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    """Seconds from creation to end, of the runs that ended."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    cost: float | None = None
    unpriced: set[str] = field(default_factory=set)

    @property
    def runs(self) -> int:
        return sum(self.statuses.values())

    @property
    def success_rate(self) -> float | None:
        """Succeeded runs among those that ended (succeeded, failed, cancelled); None when none ended."""
        ended = sum(self.statuses[status] for status in FINISHED)
        return None if ended == 0 else self.statuses["succeeded"] / ended


async def machine_stats(store: Store, machine: str, *, since: float | None = None,
                        now: float | None = None) -> MachineStats:
    """The runs of machine `machine` (by name), those created in the last `since` seconds when given."""
    from agentfsm.service.errors import InputError

    found = await store.list_runs(RunFilter(machine=machine))
    if not found:
        raise InputError(f"no runs of machine '{machine}' in {store.url}")
    start = None if since is None else (time.time() if now is None else now) - since
    stats = MachineStats(machine, since)
    pricings = Pricings(store)
    for run in found:
        if start is not None and run.created_at < start:
            continue
        stats.statuses[run.status] += 1
        stats.steps.append(run.steps)
        if run.status in FINISHED:
            stats.durations.append(max(0.0, run.updated_at - run.created_at))
        usage = await run_usage(store, run)
        if not usage:
            continue
        cost = usage_cost(usage, await pricings.of(run))
        stats.prompt_tokens += cost.prompt_tokens
        stats.completion_tokens += cost.completion_tokens
        stats.llm_calls += cost.calls
        if cost.cost is not None:
            stats.cost = (stats.cost or 0.0) + cost.cost
        stats.unpriced.update(cost.unpriced)
    return stats
