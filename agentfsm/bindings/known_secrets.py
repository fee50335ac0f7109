"""The secret values this process has read, so that logs can replace them with `[redacted]`.

A binding's own `Redactor` cleans what that binding passes on; this registry is the last
line of defence for everything else that reaches a log. `bindings.secrets.read_env`
registers every value it reads (API keys, `{env: NAME}` headers) when a run starts.
Light on purpose (no pydantic): the CLI's log setup imports it.
"""

from __future__ import annotations

import threading
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4
"""Shorter values are not redacted: replacing every `ab` in a message would garble it and protect nothing."""

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so a secret that contains another is removed whole


def register_secret(value: str) -> None:
    """Remember `value` (and its stripped form) as a secret of this process."""
    global _secrets
    found = {v for v in (value, value.strip()) if len(v) >= MIN_SECRET_LENGTH}
    with _lock:
        if found - set(_secrets):
            _secrets = tuple(sorted(found | set(_secrets), key=len, reverse=True))


def known_secrets() -> tuple[str, ...]:
    return _secrets


def forget_secrets() -> None:
    """Clear the registry (for tests)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `[redacted]`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any) -> Any:
    """`value` (data: text, lists, mappings) with every registered secret replaced by `[redacted]` in its text
    and its keys. What enters a run passes here, so its output, its live context and its store agree."""
    if not _secrets:
        return value
    return _redacted(value)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(key): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    return value
