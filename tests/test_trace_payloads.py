"""Large trace values are stored once: a long prompt that changes a little is kept as what changed."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agentfsm.bindings.known_secrets import forget_secrets, register_secret
from agentfsm.history.payloads import Payloads, change_bases, changed, inline_base, restore
from agentfsm.service.operations import copy_runs
from agentfsm.service.runs import Runs

ROUNDS = """\
agentfsm: 1
name: rounds
inputs:
  rounds: {type: integer}
  document: {type: string}
context: {n: 0}
llms:
  brain: {provider: scripted, replies: [{reply: "ok"}]}
initial: ask
states:
  ask:
    type: llm
    llm: brain
    prompt: "Round {{ n }}: summarise {{ document }} Then stop."
    save: answer
    next: count
  count:
    type: set
    set: {n: "{{ n + 1 }}"}
    transitions:
      - {when: "n < rounds", to: ask}
      - {to: done}
  done:
    type: final
"""


def stored(db: Path, run_id: str) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(db)) as kept:
        return kept.execute("SELECT digest, data FROM payloads WHERE run_id = ?", (run_id,)).fetchall()


def prompts(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["request"]["messages"][0]["content"] for entry in entries if entry["kind"] == "llm_call"]


def test_a_long_prompt_that_changes_a_little_is_stored_once_and_read_back_whole(runs: Runs, db: Path,
                                                                                tmp_path: Path) -> None:
    machine = tmp_path / "rounds.yaml"
    machine.write_text(ROUNDS, encoding="utf-8")
    document = "lorem ipsum dolor " * 3000  # 54 KB
    result = asyncio.run(runs.start(machine, {"rounds": 12, "document": document}))
    assert result.status == "succeeded", result.error
    expected = [f"Round {n}: summarise {document} Then stop." for n in range(12)]
    assert prompts(asyncio.run(runs.trace(result.run_id))) == expected
    [(_, data)] = stored(db, result.run_id)  # the document once; each later prompt's change sits in its entry
    assert len(document) < len(data) < len(document) + 100
    raw = [entry for entry in asyncio.run(runs.trace(result.run_id, resolved=False)) if entry["kind"] == "llm_call"]
    changes = [entry["request"]["messages"][0]["content"] for entry in raw[1:]]
    assert [(change["start"], change["middle"]) for change in changes[:3]] == [(6, "1"), (6, "2"), (6, "3")]
    assert all(len(change["middle"]) <= 2 for change in changes)

    copy = tmp_path / "copy.db"
    asyncio.run(copy_runs(f"sqlite:///{db}", f"sqlite:///{copy}"))  # a change's base comes along

    async def read_copy() -> list[dict[str, Any]]:
        async with Runs(f"sqlite:///{copy}") as copied:
            return await copied.trace(result.run_id)

    assert prompts(asyncio.run(read_copy())) == expected


def _texts(seed: int) -> list[str]:
    """Long texts that grow, shrink and change at the start, the end and the middle, at random."""
    rng = random.Random(seed)
    words = [rng.choice(["alpha", "beta", "gamma", "delta", "é", "日本", "\n", '"q"']) for _ in range(900)]
    texts = [" ".join(words)]
    for _ in range(30):
        current = texts[-1]
        at = rng.randrange(len(current) + 1)
        cut = rng.choice([0, 1, 5, 300, 5000])
        insert = "".join(rng.choice("abc xyz") for _ in range(rng.choice([0, 1, 7, 400, 6000])))
        texts.append(current[:at] + insert + current[at + cut:])
    return texts


def read_back(stand_ins: list[dict[str, Any]], written: dict[str, str]) -> list[str]:
    """What a reader makes of the stand-ins: a payload (whole, or a change of a whole one), or a change in place."""
    import json

    payloads = {digest: json.loads(data) for digest, data in written.items()}
    assert change_bases(payloads) == set()  # every base is written with (or before) its changes
    restored = restore(payloads, {})
    return [restored[one["$ref"]] if "$ref" in one else changed(restored[inline_base(one)], one) for one in stand_ins]


@pytest.mark.parametrize("seed", range(6))
def test_every_text_kept_as_a_change_restores_exactly(seed: int) -> None:
    payloads = Payloads()
    texts = _texts(seed)
    stand_ins = [payloads.stand_in(text, "content") for text in texts]
    assert read_back(stand_ins, payloads.take()) == texts
    assert any(inline_base(one) for one in stand_ins)  # small changes are kept in the entry...
    assert any("$ref" in one for one in stand_ins[1:])  # ...large ones (and new texts) as payloads


def test_a_text_holding_a_secret_is_never_kept_as_a_change_of_a_clean_one() -> None:
    import json

    secret = "sk-trace-secret-0123456789"
    register_secret(secret)
    try:
        payloads = Payloads()
        clean = "x" * 5000 + "sk-trace-"
        with_secret = clean + "secret-0123456789" + "y" * 10
        payloads.stand_in(clean, "content")
        stand_in = payloads.stand_in(with_secret, "content")
        written = payloads.take()
    finally:
        forget_secrets()
    assert all(secret not in data for data in written.values())
    assert json.loads(written[stand_in["$ref"]]) == "x" * 5000 + "[redacted]" + "y" * 10


def test_what_a_trace_remembers_of_its_long_texts_is_bounded_in_size() -> None:
    import os
    import tracemalloc

    payloads = Payloads()
    tracemalloc.start()
    try:
        for _ in range(40):  # a tool that returns a new 1 MB document at every step
            payloads.stand_in(os.urandom(500_000).hex(), "result")
            payloads.take()  # written with its step
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 12_000_000, f"{held / 1e6:.0f} MB still held after 40 documents of 1 MB were stored"
