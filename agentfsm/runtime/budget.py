"""Budgets: limits on what a run (or a team state's agents together) spends on LLM calls, and `limit.budget`.

A budget in force is an `Allowance`: its limits and what has been spent against them. The
allowances in force where code runs are a context variable, so a child run (a nested machine,
a team's agents, run in tasks the parent's state starts) spends against its parent's
allowances as well as its own; agents running at once share one. Every LLM call is checked
before it is made (`refuse_if_spent`: once a limit is reached the call fails with
`limit.budget`, an error the calling state's `retry`/`catch` see like any other) and charged
when it ends (`charge_call`). A resumed run starts its allowance from the usage its store
kept, so a budget holds across crashes and waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentfsm.runtime.errors import StateError

if TYPE_CHECKING:
    from agentfsm.runtime.calls import LLMCallRecord

Pricer = Callable[[str, "str | None", int, int], "float | None"]
"""What one call costs in USD: (binding, model, prompt tokens, completion tokens) -> USD, None without a price."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on LLM spending (None: no limit of that kind); `owner` names where it was set, for messages."""

    tokens: int | None = None
    cost: float | None = None
    llm_calls: int | None = None
    owner: str = "the run"


class Allowance:
    """A budget in force and what was spent against it."""

    __slots__ = ("budget", "tokens", "cost", "calls")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.tokens = 0
        self.cost = 0.0
        self.calls = 0

    def spend(self, tokens: int, cost: float | None, calls: int) -> None:
        self.tokens += tokens
        self.cost += cost or 0.0
        self.calls += calls

    def spent(self) -> tuple[str, float, float] | None:
        """(what, used, limit) of the first limit reached, or None while every one has room."""
        budget = self.budget
        if budget.tokens is not None and self.tokens >= budget.tokens:
            return "tokens", self.tokens, budget.tokens
        if budget.cost is not None and self.cost >= budget.cost:
            return "cost", self.cost, budget.cost
        if budget.llm_calls is not None and self.calls >= budget.llm_calls:
            return "llm_calls", self.calls, budget.llm_calls
        return None


_ALLOWANCES: ContextVar[tuple[Allowance, ...]] = ContextVar("agentfsm_allowances", default=())
_PRICER: ContextVar[Pricer | None] = ContextVar("agentfsm_pricer", default=None)


def usage_spend(usage: Mapping[str, Mapping[str, Any]], pricer: Pricer | None) -> tuple[int, float | None, int]:
    """(tokens, USD or None when nothing is priced, calls) of per-binding usage, each binding at its own model."""
    tokens = calls = 0
    cost: float | None = None
    for binding, totals in usage.items():
        prompt, completion = int(totals.get("prompt_tokens", 0) or 0), int(totals.get("completion_tokens", 0) or 0)
        tokens += prompt + completion
        calls += int(totals.get("calls", 0) or 0)
        priced = None if pricer is None else pricer(binding, None, prompt, completion)
        if priced is not None:
            cost = (cost or 0.0) + priced
    return tokens, cost, calls


@contextmanager
def budget_scope(budget: Budget | None, pricer: Pricer | None, usage: Mapping[str, Mapping[str, Any]] | None = None,
                 *, resumed: bool = False) -> Iterator[None]:
    """Within: calls are priced with `pricer` (when given) and charged to `budget` too (when given).

    `usage` is what the run had spent before (a resumed run's, from the store): it starts the new
    allowance, and with `resumed` it is charged to the allowances around as well (a child run
    resumed after a crash spends its parent's budget again only for what it had not told it).
    """
    pricer_token = _PRICER.set(pricer) if pricer is not None else None
    outer = _ALLOWANCES.get()
    allowances_token = None
    if usage and (budget is not None or (resumed and outer)):
        tokens, cost, calls = usage_spend(usage, _PRICER.get())
        if resumed:
            for allowance in outer:
                allowance.spend(tokens, cost, calls)
    if budget is not None:
        allowance = Allowance(budget)
        if usage:
            allowance.spend(tokens, cost, calls)
        allowances_token = _ALLOWANCES.set((*outer, allowance))
    try:
        yield
    finally:
        if allowances_token is not None:
            _ALLOWANCES.reset(allowances_token)
        if pricer_token is not None:
            _PRICER.reset(pricer_token)


def refuse_if_spent(state: str) -> None:
    """Raise `limit.budget` when a budget in force has reached a limit (before an LLM call is made)."""
    for allowance in _ALLOWANCES.get():
        reached = allowance.spent()
        if reached is not None:
            what, used, limit = reached
            shown = f"${used:.4f} of ${limit:g}" if what == "cost" else f"{int(used)} {what} of {int(limit)}"
            raise StateError("limit.budget", f"the budget of {allowance.budget.owner} is spent ({shown})",
                             state=state, detail={"budget": allowance.budget.owner, "limit": what, "used": used,
                                                  "allowed": limit})


def call_cost(record: LLMCallRecord) -> float | None:
    """The USD one call cost, priced by the machine making it (None when its model has no price)."""
    pricer = _PRICER.get()
    if pricer is None:
        return None
    return pricer(record.binding, record.model, record.prompt_tokens, record.completion_tokens)


def charge_call(record: LLMCallRecord) -> None:
    """Count an LLM call against every budget in force."""
    allowances = _ALLOWANCES.get()
    if allowances:
        tokens, cost = record.prompt_tokens + record.completion_tokens, call_cost(record)
        for allowance in allowances:
            allowance.spend(tokens, cost, 1)


def charge_usage(usage: Mapping[str, Mapping[str, Any]]) -> None:
    """Count usage spent elsewhere (a finished child run a resumed parent reads back) against the budgets in force."""
    allowances = _ALLOWANCES.get()
    if allowances and usage:
        tokens, cost, calls = usage_spend(usage, _PRICER.get())
        for allowance in allowances:
            allowance.spend(tokens, cost, calls)
