"""Timestamps in the language: ISO 8601 / RFC 3339 text such as `2026-03-14T01:59:00Z`."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 timestamp (no zone: UTC), or None when `text` is not one."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def is_rfc3339(value: object) -> bool:
    """Whether a value is a timestamp as Amazon States Language reads one (RFC 3339, with a zone)."""
    return isinstance(value, str) and _RFC3339.match(value) is not None and parse_timestamp(value) is not None
