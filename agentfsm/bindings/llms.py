"""Making the client of an LLM binding from its configuration (at run start)."""

from __future__ import annotations

from pathlib import Path

from agentfsm.bindings.llm import LLMClient
from agentfsm.bindings.scripted import ScriptedClient
from agentfsm.spec.models import AnthropicLLM, LLMBinding, OpenAILLM, ScriptedLLM


def make_llm(name: str, config: LLMBinding, base_dir: Path | None) -> LLMClient:
    """The client for binding `name`. Raises BindingError when it cannot be set up (an API key variable not set).

    The HTTP providers are imported here, on first use, so a machine with only scripted
    bindings never loads httpx.
    """
    if isinstance(config, ScriptedLLM):
        return ScriptedClient(name, config, base_dir)
    if isinstance(config, OpenAILLM):
        from agentfsm.bindings.openai_chat import OpenAIClient

        return OpenAIClient(name, config)
    if isinstance(config, AnthropicLLM):
        from agentfsm.bindings.anthropic_messages import AnthropicClient

        return AnthropicClient(name, config)
    raise TypeError(f"llms.{name}: no client for {type(config).__name__}")  # pragma: no cover - the union is closed
