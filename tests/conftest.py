"""Fixtures shared by the test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfsm import Runs

from tests.llm_server import PROXY_VARIABLES, LLMServer, serve
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures, imported for pytest


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


@pytest.fixture(scope="session", autouse=True)
def store_outside_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs started by tests (in this process or in `agentfsm` subprocesses) are kept in a temporary store,
    never in `.agentfsm/` of the working tree."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTFSM_STORE", f"sqlite:///{tmp_path_factory.mktemp('store') / 'runs.db'}")
        yield


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store file of the test's own (not created yet)."""
    return tmp_path / "runs.db"


@pytest.fixture
def runs(db: Path) -> Iterator[Runs]:
    """Durable runs kept in `db`."""
    opened = Runs(f"sqlite:///{db}")
    yield opened
    asyncio.run(opened.close())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (AGENTFSM_REQUIRE_SERVICES=1) a skipped test fails the run: every service is installed there, so a
    skip means a test checked nothing."""
    from tests.services import services_required

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if services_required() and skipped and session.exitstatus == pytest.ExitCode.OK:
        names = ", ".join(report.nodeid for report in skipped[:5])
        reporter.write_line(f"{len(skipped)} test(s) skipped under AGENTFSM_REQUIRE_SERVICES=1: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
