"""Small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from agentfsm.runtime.calls import CallRecord, ToolCallRecord
from agentfsm.runtime.events import StepEnded
from tests.llm_server import PROXY_VARIABLES


class CallRecorder:
    """An observer keeping every step's LLM and tool call records."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.calls.extend(event.calls)

    def tools(self) -> list[ToolCallRecord]:
        return [call for call in self.calls if isinstance(call, ToolCallRecord)]


def environment_without_proxies() -> dict[str, str]:
    """This process's environment for a subprocess, minus anything that would proxy loopback requests."""
    return {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
