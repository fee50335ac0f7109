"""Tools for crash_course.yaml: small, deterministic, and slow enough for a SIGKILL to land inside a call."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

DELAY = float(os.environ.get("CRASH_COURSE_TOOL_DELAY", "0.005"))
"""Seconds each call sleeps before it computes."""

GATE = os.environ.get("CRASH_COURSE_GATE")
"""A file path: when set, each call waits (up to a minute) until that file exists, so a test can
hold a run inside a tool call for as long as it needs, without guessing durations."""


def crunch(round: int, checksum: int, word: str) -> dict[str, object]:  # noqa: A002 - the machine's argument name
    """A pure function of the arguments (a few hundred SHA-256 rounds), after a short sleep."""
    if GATE:
        deadline = time.monotonic() + 60
        while not Path(GATE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(DELAY)
    digest = f"{round}:{checksum}:{word}".encode()
    for _ in range(300):
        digest = hashlib.sha256(digest).digest()
    return {"value": int.from_bytes(digest[:4], "big"), "tag": digest[:3].hex()}
