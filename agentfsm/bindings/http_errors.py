"""How an HTTP provider's failures map onto the `llm.*` error types, and how long to wait before a retry."""

from __future__ import annotations

import email.utils
import json
import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

RETRYABLE = frozenset({"llm.rate_limit", "llm.unavailable", "llm.timeout"})
"""Error types a binding retries itself (`max_retries`); the others would fail the same way again."""

BACKOFF_INITIAL = 0.5
"""Seconds before the first provider-level retry (doubling each time, with jitter), as the official SDKs do."""
BACKOFF_MAX = 8.0
"""Upper bound of one backoff wait."""
RETRY_AFTER_MAX = 60.0
"""The longest `Retry-After` a binding waits out itself; a longer one goes up to the state's `retry`/`catch`."""
MESSAGE_LIMIT = 200
"""Characters of a provider's error message kept in `StateError.message`."""


def error_type_for_status(status: int) -> str:
    """The `llm.*` type of a non-2xx HTTP status."""
    if status in (401, 403):
        return "llm.auth"
    if status == 429:
        return "llm.rate_limit"
    if status == 408:  # the server gave up waiting for our request: a transient failure
        return "llm.timeout"
    if status >= 500:
        return "llm.unavailable"
    # 400, 404, 422, any other 4xx, and redirects (not followed: a redirect could carry the key
    # to another host, and an API that redirects means a wrong `base_url`)
    return "llm.bad_request"


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The wait a server asks for: `retry-after-ms` (OpenAI's), or `Retry-After` in seconds or as an HTTP date."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(0.0, millis / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _finite(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def backoff_delay(retry: int) -> float:
    """The wait before provider-level retry number `retry` (1, 2, ...): exponential, capped, jittered.

    The jitter keeps at least half the wait, so clients that failed together spread out
    without retrying at once.
    """
    base = min(BACKOFF_INITIAL * 2 ** (retry - 1), BACKOFF_MAX)
    return base * random.uniform(0.5, 1.0)


def provider_message(body: bytes) -> str:
    """The provider's own words from an error body: OpenAI's and Anthropic's `error.message`, or the text."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(data, dict):
        for candidate in (data.get("error"), data):
            if isinstance(candidate, dict):
                for key in ("message", "detail", "error"):
                    if isinstance(candidate.get(key), str):
                        return candidate[key]
            elif isinstance(candidate, str):
                return candidate
    return body.decode("utf-8", "replace")


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of at most `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
