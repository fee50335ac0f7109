"""docs/security.md states every limit agentfsm enforces, with its number (issue 9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentfsm import limits

DOC = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
NUMBERS = {name: value for name, value in vars(limits).items() if name.isupper() and isinstance(value, int)}


def test_the_page_states_the_threat_model() -> None:
    assert "trusted like a Makefile" in DOC
    assert "All data is untrusted" in DOC


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_every_limit_is_stated_with_its_number(name: str) -> None:
    value = NUMBERS[name]
    shown = [f"{value:,}", str(value)]
    if name.endswith("_SECONDS"):
        shown = [f"{value // 86400} days"]
    stated = any(re.search(rf"(?<![\d,.]){re.escape(text)}(?![\d,])", DOC) for text in shown)
    assert stated, f"docs/security.md does not state {name} = {value}"
