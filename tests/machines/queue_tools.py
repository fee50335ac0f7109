"""The tool of queue_job.yaml: one line per step it runs, appended to $QUEUE_JOB_LOG (the test reads them)."""

from __future__ import annotations

import os
import time

DELAY = float(os.environ.get("QUEUE_JOB_DELAY", "0"))
"""Seconds each call sleeps first (the chaos run sets it, so kills land inside calls)."""


def mark(run: str, step: int) -> int:
    """Append `RUN STEP PID` (one write of one line: lines of several processes never interleave)."""
    if DELAY:
        time.sleep(DELAY)
    path = os.environ.get("QUEUE_JOB_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{run} {step} {os.getpid()}\n")
    return step
