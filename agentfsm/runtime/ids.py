"""Run ids: short, unique, and sorting by creation time (a millisecond clock, then randomness).

Within one process, ids made in the same millisecond still sort in the order they were made
(the random part counts up from the first one, as monotonic ULIDs do).
"""

from __future__ import annotations

import os
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case: no i, l, o, u
_RANDOM_BITS = 35
_last = (0, 0)
_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child starts its own count: counting on from its parent's would repeat the parent's next ids."""
    global _last, _lock
    _last, _lock = (0, 0), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_run_id() -> str:
    """A 16-character id: 9 characters of milliseconds since the epoch, 7 of randomness."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:  # the same millisecond (or a clock that stepped back): count up
            millis, random = last_millis, last_random + 1
            if random >> _RANDOM_BITS:
                millis, random = millis + 1, secrets.randbits(_RANDOM_BITS - 1)
        else:
            # one bit of headroom, so counting up within a millisecond does not overflow in practice
            random = secrets.randbits(_RANDOM_BITS - 1)
        _last = (millis, random)
    return _encode(millis, 9) + _encode(random, 7)


def derived_run_id(*parts: object) -> str:
    """A 16-character id that the same parts always give (a child run's, from its parent's run, branch, step
    and name): whoever resumes the parent finds the child instead of starting another."""
    import hashlib

    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8", "surrogatepass")).digest()
    return _encode(int.from_bytes(digest[:10], "big"), 16)
