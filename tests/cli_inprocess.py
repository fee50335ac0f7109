"""The `agentfsm` command run inside the test's process: what a user's shell sees (exit code, stdout, stderr) without
a Python start-up per command. For commands whose behaviour does not depend on being a process of their own
(signals, kills, a terminal are tested with real subprocesses elsewhere)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest


@dataclass
class Done:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Cli:
    """`cli("runs", "--json", store=URL)`: one command, with AGENTFSM_STORE set to `store` when given.

    A test module offers it as a fixture: `cli = tests.cli_inprocess.cli_fixture`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, *args: object, store: str | None = None, env: Mapping[str, str] | None = None) -> Done:
        """With `env`, these variables are set (for this command and the rest of the test)."""
        from agentfsm.cli import usage
        from agentfsm.cli.app import app

        for name, value in {**(env or {}), **({"AGENTFSM_STORE": store} if store is not None else {})}.items():
            self.monkeypatch.setenv(name, value)
        self.capsys.readouterr()  # what came before is not this command's
        code = usage.run(app, [str(arg) for arg in args])
        out, err = self.capsys.readouterr()
        return Done(code, out, err)


@pytest.fixture
def cli_fixture(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)
