"""`--llm brain=openai:gpt-4o-mini`: switch an LLM binding to another provider without editing the file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agentfsm.spec.inputs import InputError
from agentfsm.spec.models import LLMBinding, MachineSpec

LOCAL_SERVERS: dict[str, str] = {
    "ollama": "http://localhost:11434/v1",
    "lmstudio": "http://localhost:1234/v1",
    "vllm": "http://localhost:8000/v1",
    "llamacpp": "http://localhost:8080/v1",
}
"""Shorthands for OpenAI-compatible servers that run locally, with their usual default URL."""

KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

_BINDING: TypeAdapter[Any] | None = None


def binding_from_text(text: str) -> dict[str, Any]:
    """`openai:gpt-4o-mini`, `anthropic:claude-3-5-haiku-latest`, `ollama:llama3.1`, `openai:MODEL@URL`."""
    provider, sep, model = text.partition(":")
    provider = provider.strip().lower()
    model, _, url = model.partition("@")
    if not sep or not provider or not model.strip():
        raise InputError(f"--llm expects NAME=PROVIDER:MODEL (for example brain=openai:gpt-4o-mini), got {text!r}")
    config: dict[str, Any] = {"model": model.strip()}
    if provider in LOCAL_SERVERS:
        config |= {"provider": "openai", "base_url": LOCAL_SERVERS[provider]}
    elif provider in KEY_VARIABLES:
        config |= {"provider": provider}
        if not url:
            config["api_key_env"] = KEY_VARIABLES[provider]
    else:
        known = ", ".join([*KEY_VARIABLES, *LOCAL_SERVERS])
        raise InputError(f"--llm: unknown provider {provider!r} (one of: {known})")
    if url:
        config["base_url"] = url.strip()
    return config


def apply_llm_overrides(spec: MachineSpec, overrides: Mapping[str, str]) -> MachineSpec:
    """The spec with the named LLM bindings replaced; raises InputError on an unknown name or a bad value."""
    global _BINDING
    if not overrides:
        return spec
    if _BINDING is None:
        _BINDING = TypeAdapter(LLMBinding)
    llms = dict(spec.llms)
    for name, text in overrides.items():
        if name not in llms:
            known = ", ".join(llms) or "none"
            raise InputError(f"--llm: no LLM binding named '{name}' (this machine's: {known})")
        try:
            llms[name] = _BINDING.validate_python(binding_from_text(text))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"][1:])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise InputError(f"--llm {name}={text}: {where}: {message}") from None
    return spec.model_copy(update={"llms": llms})


def parse_llm_options(pairs: list[str]) -> dict[str, str]:
    """`NAME=PROVIDER:MODEL` options from the command line, by binding name."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--llm expects NAME=PROVIDER:MODEL (for example brain=openai:gpt-4o-mini), got {pair!r}")
        overrides[name.strip()] = text
    return overrides
