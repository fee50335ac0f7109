"""What runs cost: tokens and USD per LLM binding, from a stored run's usage and the price table.

One place prices usage, for every front end (`inspect`, `stats`, the web UI's runs table):

    cost = await run_cost(runs.store, run_id)      # a `Cost`; `views.cost_json(cost)` is its JSON

A run is priced with the machine it ran (its stored source: each binding's model and `price:`,
with the run's `--llm` overrides) over the price table (`agentfsm.bindings.prices`). A binding
whose model has no price shows its tokens with a cost of None, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentfsm.bindings.prices import CallPricer, binding_pricer, configured_model, usable_price_table
from agentfsm.store.base import RunRow
from agentfsm.store.core import Store


@dataclass(frozen=True, slots=True)
class Pricing:
    """How one machine's calls are priced: each binding's configured model, and the price of a call."""

    models: Mapping[str, str | None]
    price: CallPricer


@dataclass(slots=True)
class BindingCost:
    """One LLM binding's calls, tokens and USD (None: its model has no price)."""

    binding: str
    model: str | None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Cost:
    """What some LLM usage came to, per binding and in total."""

    bindings: list[BindingCost] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(one.calls for one in self.bindings)

    @property
    def prompt_tokens(self) -> int:
        return sum(one.prompt_tokens for one in self.bindings)

    @property
    def completion_tokens(self) -> int:
        return sum(one.completion_tokens for one in self.bindings)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        """USD of the priced bindings; None when no binding that used tokens has a price."""
        priced = [one.cost for one in self.bindings if one.cost is not None]
        return sum(priced) if priced else None

    @property
    def unpriced(self) -> list[str]:
        """Bindings that used tokens without a price (their cost is missing from `cost`)."""
        return [one.binding for one in self.bindings if one.cost is None and one.tokens]

    def add(self, other: Cost) -> None:
        """Fold another cost (a child run's, another run's) into this one, binding by binding."""
        mine = {(one.binding, one.model): one for one in self.bindings}
        for one in other.bindings:
            found = mine.get((one.binding, one.model))
            if found is None:
                found = mine[(one.binding, one.model)] = BindingCost(one.binding, one.model)
                self.bindings.append(found)
            found.calls += one.calls
            found.prompt_tokens += one.prompt_tokens
            found.completion_tokens += one.completion_tokens
            if one.cost is not None:
                found.cost = (found.cost or 0.0) + one.cost


def usage_cost(usage: Mapping[str, Mapping[str, Any]] | None, pricing: Pricing) -> Cost:
    """The cost of per-binding usage (`{binding: {calls, prompt_tokens, completion_tokens}}`, as runs keep it)."""
    cost = Cost()
    for binding, totals in (usage or {}).items():
        one = BindingCost(binding, pricing.models.get(binding), int(totals.get("calls", 0) or 0),
                          int(totals.get("prompt_tokens", 0) or 0), int(totals.get("completion_tokens", 0) or 0))
        one.cost = pricing.price(binding, None, one.prompt_tokens, one.completion_tokens)
        cost.bindings.append(one)
    return cost


def machine_pricing(source: str | None, llms: Mapping[str, str] | None = None) -> Pricing:
    """The pricing of a machine from its source text, with `--llm` overrides (NAME -> PROVIDER:MODEL[@URL]).

    The source a run keeps was validated when the run started: only its `llms:` are read (plain YAML, no
    validation, so pricing a run costs no compile). None or unreadable: prices by model name only."""
    table = usable_price_table()
    bindings = _llms_of(source)
    for name, text in (llms or {}).items():
        if name in bindings:  # an override replaces the binding, its `price:` with it
            bindings[name] = {"model": text.partition(":")[2].partition("@")[0].strip()}
    return Pricing({name: configured_model(config) for name, config in bindings.items()},
                   binding_pricer(bindings, table))


def _llms_of(source: str | None) -> dict[str, Any]:
    if source is None:
        return {}
    import yaml

    try:
        document = yaml.safe_load(source)
    except yaml.YAMLError:
        return {}
    llms = document.get("llms") if isinstance(document, dict) else None
    return {str(name): config for name, config in llms.items() if isinstance(config, dict)} \
        if isinstance(llms, dict) else {}


class Pricings:
    """Pricings of stored runs, made once per machine source and `--llm` overrides (many runs share one)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.known: dict[tuple[str | None, tuple[tuple[str, str], ...]], Pricing] = {}

    async def of(self, run: RunRow) -> Pricing:
        key = (run.digest, tuple(sorted(run.llms.items())))
        found = self.known.get(key)
        if found is None:
            source = await self.store.source(run.digest) if run.digest else None
            found = self.known[key] = machine_pricing(source, run.llms)
        return found


ENDED_WITH_USAGE = frozenset({"succeeded", "failed", "waiting"})
"""Statuses whose run row holds the usage of the run's path; for the others it is added up from the steps."""


async def run_usage(store: Store, run: RunRow) -> dict[str, Any]:
    """The usage of the run's head path (child runs' included): as it ended, or as far as it went."""
    if run.status in ENDED_WITH_USAGE or run.steps == 0:
        return run.usage or {}
    from agentfsm.history.lineage import lineage, tally_after

    segments = lineage(await store.branches(run.id), run.head)
    return (await tally_after(store, run.id, segments, run.steps)).usage


async def run_cost(store: Store, run_id: str, pricings: Pricings | None = None) -> Cost:
    """What a stored run's LLM calls on its head path cost (its usage, child runs' included), per binding."""
    run = await store.get_run(run_id)
    pricing = await (pricings or Pricings(store)).of(run)
    return usage_cost(await run_usage(store, run), pricing)
