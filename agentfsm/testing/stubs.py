"""What stands in for a machine's bindings in a test case: scripted LLM replies and tool stubs.

They are given to the compiler by binding name (`compile_machine(..., llm_clients=, tool_clients=)`), so the
machine file's own configuration of those bindings is never used: nothing it names is imported or called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentfsm.bindings.scripted import ScriptedClient
from agentfsm.runtime.errors import StateError
from agentfsm.spec.models import ScriptedLLM, ScriptedReply
from agentfsm.testing.models import ScriptedReplies, ToolCallStub, ToolStub


class StubTool:
    """A tool binding answering from a test case: the same answer every call, or the listed answers in order.

    One stub serves one run (it counts that run's calls)."""

    description: str | None = "A stubbed tool (agentfsm test)."

    def __init__(self, name: str, stub: ToolStub) -> None:
        self.name = name
        self.stub = stub
        self.calls = 0

    @property
    def parameters(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": True}

    async def call(self, args: Mapping[str, Any]) -> Any:
        self.calls += 1
        answer = self._answer()
        if answer.error is not None:
            raise StateError(answer.error.type, answer.error.message, detail={"tool": self.name, "stubbed": True})
        return answer.result

    def _answer(self) -> ToolCallStub:
        if isinstance(self.stub, ToolCallStub):
            return self.stub
        if self.calls <= len(self.stub):
            return self.stub[self.calls - 1]
        raise StateError("tool.error", f"stub '{self.name}' has no answer for call {self.calls} "
                                       f"({len(self.stub)} listed)", detail={"tool": self.name})


def scripted_client(name: str, replies: ScriptedReplies | list[str | ScriptedReply], base_dir: Path) -> ScriptedClient:
    """A scripted LLM client answering from a test case's replies (a replies file is read from `base_dir`)."""
    if isinstance(replies, list):
        replies = ScriptedReplies(replies=replies)
    config = ScriptedLLM(provider="scripted", replies=replies.replies, replies_file=replies.replies_file)
    return ScriptedClient(name, config, base_dir)
