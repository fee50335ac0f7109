"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm_server import LLMServer, serve


@pytest.fixture
def server() -> Iterator[LLMServer]:
    """A real HTTP server on 127.0.0.1 that answers what the test scripts (see tests/llm_server.py)."""
    with serve() as running:
        yield running
