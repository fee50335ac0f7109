"""Cost: the shipped price table, a user price file over it, a binding's `price:` over both, and unknown models
shown with tokens and no cost; `run_cost` prices a stored run the way `inspect`, `stats` and the UI show it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentfsm import Runs
from agentfsm.bindings.prices import PRICES_ENV, PriceFileError, price_table
from agentfsm.service.costs import run_cost
from agentfsm.service.views import cost_json

MACHINE = """\
agentfsm: 1
name: priced
llms:
  brain: {provider: scripted, model: MODEL, replies: ["four words of reply"]PRICE}
initial: ask
states:
  ask: {type: llm, llm: brain, prompt: "two words", save: x, next: done}
  done: {type: final, output: "{{ x }}"}
"""


def priced_run(tmp_path: Path, model: str, price: str = "") -> dict[str, Any]:
    path = tmp_path / "priced.yaml"
    path.write_text(MACHINE.replace("MODEL", model).replace("PRICE", f", price: {price}" if price else ""),
                    encoding="utf-8")

    async def go() -> dict[str, Any]:
        async with Runs(str(tmp_path / "runs.db")) as runs:
            result = await runs.start(path)
            return cost_json(await run_cost(runs.store, result.run_id))
    return asyncio.run(go())


def test_the_shipped_table_is_dated_and_prices_snapshots_as_their_model(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user file
    monkeypatch.delenv(PRICES_ENV, raising=False)
    table = price_table()
    assert table.as_of and table.user_file is None
    mini = table.price("gpt-4o-mini")
    assert mini is not None and (mini.input, mini.output) == (0.15, 0.6)
    assert table.price("gpt-4o-mini-2024-07-18") == mini
    assert table.price("claude-3-5-haiku-20241022") == table.price("claude-3-5-haiku")
    assert table.price("gpt-4o-mini-tuned") is None  # another model: no guess
    assert table.price("llama3.1") is None


@pytest.mark.parametrize(("model", "price", "expected"), [
    # two prompt tokens, four completion tokens
    ("gpt-4o-mini", "", (2 * 0.15 + 4 * 0.6) / 1e6),
    ("gpt-4o-mini", "{input: 1.0, output: 2.0}", (2 * 1.0 + 4 * 2.0) / 1e6),  # the binding's own price wins
    ("my-local-model", "", None),
])
def test_a_stored_run_is_priced_per_binding(tmp_path: Path, model: str, price: str, expected: float | None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(PRICES_ENV, raising=False)
    cost = priced_run(tmp_path, model, price)
    brain = cost["bindings"]["brain"]
    assert (brain["model"], brain["calls"], brain["prompt_tokens"], brain["completion_tokens"]) == (model, 1, 2, 4)
    assert cost["tokens"] == 6
    if expected is None:
        assert brain["cost"] is None and cost["cost"] is None and cost["unpriced"] == ["brain"]
    else:
        assert brain["cost"] == pytest.approx(expected) and cost["cost"] == pytest.approx(expected)
        assert cost["unpriced"] == []


@pytest.mark.parametrize("where", ["env", "config"])
def test_a_user_price_file_adds_and_replaces_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    where: str) -> None:
    text = "models:\n  my-local-model: {input: 0.5, output: 1}\n  gpt-4o-mini: {input: 10, output: 10}\n"
    if where == "env":
        path = tmp_path / "mine.yaml"
        monkeypatch.setenv(PRICES_ENV, str(path))
    else:
        path = tmp_path / "agentfsm" / "prices.yaml"
        path.parent.mkdir()
        monkeypatch.delenv(PRICES_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path.write_text(text, encoding="utf-8")
    assert priced_run(tmp_path, "my-local-model")["cost"] == pytest.approx((2 * 0.5 + 4 * 1) / 1e6)
    assert price_table().price("gpt-4o-mini").input == 10
    assert price_table().user_file == str(path)


@pytest.mark.parametrize(("text", "message"), [
    ("models: [1, 2", "not YAML or JSON"),
    ("models:\n  m: {input: -1, output: 1}\n", "model 'm': expected {input: USD, output: USD}"),
    ("models:\n  m: {input: 1}\n", "model 'm': expected"),
    ("- just a list\n", "expected `models:"),
])
def test_a_bad_price_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                             message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(PRICES_ENV, str(path))
    with pytest.raises(PriceFileError) as caught:
        price_table()
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_a_missing_price_file_named_by_the_variable_is_an_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICES_ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(PriceFileError, match="cannot read the price file"):
        price_table()


def test_the_price_field_is_checked_by_validate(tmp_path: Path) -> None:
    from agentfsm.spec.loader import validate_text

    report = validate_text(MACHINE.replace("MODEL", "m").replace("PRICE", ", price: {input: -1, output: 2}"),
                           tmp_path / "m.yaml")
    assert any("price.input" in str(problem) for problem in report.problems), [str(p) for p in report.problems]
    shipped = json.loads((Path(__file__).parent.parent / "agentfsm" / "bindings" / "prices.json").read_text())
    assert shipped["as_of"] and shipped["sources"]


def test_a_bad_price_file_never_stops_a_run_a_budget_or_the_costs_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_inprocess import Cli

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [1, 2", encoding="utf-8")
    monkeypatch.setenv(PRICES_ENV, str(bad))
    path = tmp_path / "priced.yaml"
    text = MACHINE.replace("MODEL", "gpt-4o-mini").replace("PRICE", "")
    path.write_text(text.replace("initial: ask", "budget: {cost: 1.0}\ninitial: ask"), encoding="utf-8")
    cli, store = Cli(monkeypatch, capsys), f"sqlite:///{tmp_path / 'runs.db'}"
    hello = cli("run", Path(__file__).parent.parent / "machines/hello.yaml", "--json", "-q", store=store)
    assert hello.code == 0, hello
    ran = cli("run", path, "--json", "-q", store=store)
    assert ran.code == 0, ran
    assert f"{bad}:1:" in ran.err and "costs are shown from the shipped price table" in ran.err
    stats = cli("stats", json.loads(ran.out)["run_id"], "--json", store=store)
    assert stats.code == 0, stats
    assert json.loads(stats.out)["llm"]["brain"]["cost"] == pytest.approx((2 * 0.15 + 4 * 0.6) / 1e6)
