"""What LLM calls cost: a price table (model name -> USD per million input and output tokens) and its overrides.

The table ships with the package (`prices.json`, with the date its list prices were taken).
A user file replaces or adds models: `$AGENTFSM_PRICES` names it, else
`$XDG_CONFIG_HOME/agentfsm/prices.yaml` (`~/.config/agentfsm/prices.yaml`) is read when it
exists; it holds `models: {NAME: {input: USD, output: USD}}` (JSON is fine too). A binding's
own `price:` in the machine file wins over both. A model found nowhere has no price: its
tokens are counted and its cost is unknown (None), never guessed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from agentfsm.spec.problems import InputError

PRICES_ENV = "AGENTFSM_PRICES"
"""Names a user price file (YAML or JSON) read over the shipped table."""

_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
"""A snapshot suffix (`gpt-4o-mini-2024-07-18`, `claude-3-5-haiku-20241022`, `-latest`): priced as its model."""


class PriceFileError(InputError):
    """A user price file that cannot be read or does not hold prices (bad input: one line, exit 2)."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices by model name, with where they come from."""

    models: Mapping[str, Price]
    as_of: str | None = None
    user_file: str | None = None

    def price(self, model: str | None) -> Price | None:
        """The model's price: by its exact name, or the name without a date suffix; None when it has none."""
        if not model:
            return None
        found = self.models.get(model)
        if found is None:
            found = self.models.get(_DATED.sub("", model))
        return found


def user_price_file() -> Path | None:
    """The user price file in force: `$AGENTFSM_PRICES`, else the config file when it exists."""
    named = os.environ.get(PRICES_ENV)
    if named:
        return Path(named).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "agentfsm" / "prices.yaml"
    return config if config.is_file() else None


def usable_price_table() -> PriceTable:
    """The price table for showing and budgeting costs: a user price file that cannot be used is said once (a
    warning naming it and why) and the shipped table is used instead, so a bad price file never stops a run,
    a worker or the web UI's pages."""
    try:
        return price_table()
    except PriceFileError as exc:
        path = user_price_file()
        _warn_once(str(exc), path.stat().st_mtime if path is not None and path.exists() else 0.0)
        return _table(None, 0.0)


@lru_cache(maxsize=8)
def _warn_once(problem: str, stamp: float) -> None:
    import logging

    logging.getLogger("agentfsm").warning("%s: costs are shown from the shipped price table", problem)


def price_table() -> PriceTable:
    """The shipped table with the user file's models over it (read once per file and change)."""
    path = user_price_file()
    if path is None:
        return _table(None, 0.0)
    try:
        stamp = path.stat().st_mtime
    except OSError as exc:
        raise PriceFileError(f"{path}: cannot read the price file ({exc.strerror or exc}); "
                             f"fix it or unset {PRICES_ENV}") from None
    return _table(str(path), stamp)


@lru_cache(maxsize=4)
def _table(path: str | None, stamp: float) -> PriceTable:
    shipped = json.loads(resources.files("agentfsm.bindings").joinpath("prices.json").read_text(encoding="utf-8"))
    models = _prices(shipped["models"], "prices.json")
    if path is not None:
        models.update(_user_prices(Path(path)))
    return PriceTable(models, shipped.get("as_of"), path)


def _user_prices(path: Path) -> dict[str, Price]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceFileError(f"{path}: cannot read the price file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise PriceFileError(f"{path}{where}: not YAML or JSON ({getattr(exc, 'problem', None) or exc})") from None
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        data = data["models"]
    if not isinstance(data, dict):
        raise PriceFileError(f"{path}: expected `models: {{NAME: {{input: USD, output: USD}}}}`")
    return _prices(data, str(path))


def _prices(data: Mapping[str, Any], where: str) -> dict[str, Price]:
    found = {}
    for name, value in data.items():
        if not (isinstance(value, dict) and set(value) == {"input", "output"}
                and all(_amount(value[key]) for key in ("input", "output"))):
            raise PriceFileError(f"{where}: model {name!r}: expected {{input: USD, output: USD}} per million "
                                 "tokens, each a number >= 0")
        found[str(name)] = Price(float(value["input"]), float(value["output"]))
    return found


def _amount(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


CallPricer = Callable[[str, "str | None", int, int], "float | None"]
"""(binding, model, prompt tokens, completion tokens) -> USD, or None when that model has no price."""


def binding_pricer(llms: Mapping[str, Any], table: PriceTable | None = None) -> CallPricer:
    """What a call of one of these LLM bindings (the spec's `llms:`) costs: the binding's own `price:`, else the
    table's price of the model the call names (else of the binding's configured model)."""
    own = {name: price for name, config in llms.items() if (price := _own_price(config)) is not None}
    configured = {name: configured_model(config) for name, config in llms.items()}
    tables = [] if table is None else [table]  # read at the first call without a price of its own

    def cost(binding: str, model: str | None, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = own.get(binding)
        if price is None:
            if not tables:
                tables.append(usable_price_table())
            price = tables[0].price(model) or tables[0].price(configured.get(binding))
        return None if price is None else price.cost(prompt_tokens, completion_tokens)

    return cost


def configured_model(config: Any) -> str | None:
    """A binding's model: from its spec model, or from the mapping a machine file holds."""
    model = config.get("model") if isinstance(config, Mapping) else getattr(config, "model", None)
    return model if isinstance(model, str) else None


def _own_price(config: Any) -> Price | None:
    price = config.get("price") if isinstance(config, Mapping) else getattr(config, "price", None)
    if isinstance(price, Mapping):
        return Price(float(price["input"]), float(price["output"]))
    return None if price is None else Price(price.input, price.output)


def unpriced_bindings(llms: Mapping[str, Any], table: PriceTable | None = None) -> list[str]:
    """The bindings (of a spec's `llms:`) whose calls have no price: no `price:` and a model the table lacks."""
    table = usable_price_table() if table is None else table
    return [name for name, config in llms.items()
            if _own_price(config) is None and table.price(configured_model(config)) is None]
