"""Small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from typing import Any

from agentfsm.runtime.hooks import StepRecord
from tests.llm_server import PROXY_VARIABLES


class CallRecorder:
    """A runtime hook keeping every step's LLM and tool call records."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def after_step(self, context: Any, record: StepRecord) -> None:
        self.calls.extend(record.calls)

    def tools(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["kind"] == "tool"]


def environment_without_proxies() -> dict[str, str]:
    """This process's environment for a subprocess, minus anything that would proxy loopback requests."""
    return {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
