"""Durations in the language: a number of seconds, or text such as `500ms`, `30s`, `5m`, `24h`, `7d`."""

from __future__ import annotations

import math
import re
from typing import Any

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: Any) -> float:
    """Seconds as a float; raises ValueError with a message fit for a person."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 24h")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be a finite number of seconds")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
        raise ValueError(f"'{value}' is not a duration; write for example 500ms, 30s, 5m, 24h or 7d")
    raise ValueError("expected a duration such as 30s, 5m or 24h")


def parse_positive_duration(value: Any) -> float:
    """A duration that must be more than zero (a timeout of 0 would always fire)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


def duration_text(seconds: float) -> str:
    """Seconds written back in the largest unit that keeps them whole (`86400` -> `1d`, `90` -> `90s`)."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"
