"""Run ids: short, unique, and sorting by creation time (a millisecond clock, then randomness)."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case: no i, l, o, u


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_run_id() -> str:
    """A 16-character id: 9 characters of milliseconds since the epoch, 7 of randomness."""
    return _encode(time.time_ns() // 1_000_000, 9) + _encode(secrets.randbits(35), 7)
