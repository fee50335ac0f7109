"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm_server import PROXY_VARIABLES, LLMServer, serve


@pytest.fixture
def server() -> Iterator[LLMServer]:
    """A real HTTP server on 127.0.0.1 that answers what the test scripts (see tests/llm_server.py)."""
    with serve() as running:
        yield running


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to the loopback server must never go through a proxy set in the environment."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
