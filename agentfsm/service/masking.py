"""A context made fit for one screen: long values cut, secret-looking values masked.

Secrets this process read are already kept out of the store (`agentfsm.bindings.known_secrets`);
a context may still hold one the run was given as data (an input named `api_key`, a token a tool
returned). `inspect` shows a context to whoever looks over the shoulder, so a text value is masked
when its key names a secret (`password`, `api_key`, `token`, `authorization`...) or when it looks
like a credential (`sk-...`, `ghp_...`, `AKIA...`, a JWT, a PEM private key, `Bearer ...`).
`show` prints the context as stored, whole: it is the raw value.
"""

from __future__ import annotations

import re
from typing import Any

from agentfsm.bindings.known_secrets import REDACTED, redact_value

LONG_TEXT = 100
"""Characters of a text value kept; the rest is counted."""
LONG_LIST = 20
"""Items of a list (or keys of a mapping) kept; the rest are counted."""
DEEP = 6
"""Levels of nesting shown; deeper values are counted."""

SECRET_KEY = re.compile(
    r"(^|[^a-z])(pass(word|wd|phrase)?s?|secrets?|token|api[_-]?keys?|apikeys?|auth(orization)?|credentials?|"
    r"private[_-]?keys?|access[_-]?keys?|session[_-]?(id|key)s?|cookies?)($|[^a-z])", re.IGNORECASE)
"""Keys naming a secret: `password`, `db_password`, `apiKey`, `X-Auth-Token`, `client_secret`... (`tokens`
is left alone: it counts tokens or lists words more often than it holds secrets)."""

SECRET_TEXT = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{16,}|sk-ant-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|"
    r"xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,}|"
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bBearer\s+[A-Za-z0-9._~+/=-]{16,}")
"""Text that looks like a credential whatever its key: OpenAI, Anthropic, GitHub, Slack, AWS, Google keys,
JSON web tokens, PEM private keys, bearer tokens."""


def secret_looking(key: str | None, value: str) -> bool:
    return bool(key is not None and SECRET_KEY.search(key) and value) or SECRET_TEXT.search(value) is not None


def masked(value: Any, key: str | None = None, depth: int = 0) -> Any:
    """`value` with secret-looking text replaced by `[redacted]` and long texts, lists and mappings cut."""
    if isinstance(value, str):
        if secret_looking(key, value):
            return REDACTED
        return value if len(value) <= LONG_TEXT else f"{value[:LONG_TEXT]}… ({len(value)} characters)"
    if not isinstance(value, dict | list):
        return value
    if depth >= DEEP:
        return f"… ({len(value)} {'keys' if isinstance(value, dict) else 'items'})"
    if isinstance(value, dict):
        shown = {name: masked(item, str(name), depth + 1) for name, item in list(value.items())[:LONG_LIST]}
        if len(value) > LONG_LIST:
            shown["…"] = f"{len(value) - LONG_LIST} more keys"
        return shown
    items = [masked(item, key, depth + 1) for item in value[:LONG_LIST]]
    if len(value) > LONG_LIST:
        items.append(f"… {len(value) - LONG_LIST} more items")
    return items


def masked_context(data: dict[str, Any]) -> dict[str, Any]:
    """A context as `inspect` shows it (secrets this process knows are redacted too)."""
    return masked(redact_value(data))
