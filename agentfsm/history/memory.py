"""The memory of the process advancing a recorded run, sampled (psutil) into the run's trace as `memory` entries.

A sample is `{"kind": "memory", "rss": BYTES, "peak": BYTES, "pid": PID}`: the resident set
size at that moment and the process's peak so far (None where the system does not tell).
Samples are taken when the run starts or resumes, after a step at most every `EVERY`
seconds, and when the drive ends, so a long run keeps a few samples a second at most and a
short one still has two. `agentfsm stats` reads them back (peak, last, each sample).
"""

from __future__ import annotations

import os
import time
from typing import Any

from agentfsm.history.trace import TraceRecorder

EVERY = 0.5
"""Seconds between two samples taken after steps."""


def _peak_bytes(info: Any) -> int | None:
    """The process's peak resident size so far: getrusage's on Unix (kilobytes on Linux), psutil's on Windows."""
    try:
        import resource
    except ImportError:  # Windows
        peak = getattr(info, "peak_wset", None)
        return None if peak is None else int(peak)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if os.uname().sysname == "Darwin" else int(maxrss) * 1024


class MemorySampler:
    """An observer beside the trace recorder (after it, before the store's recorder, which writes what it notes)."""

    critical = False

    def __init__(self, trace: TraceRecorder, every: float = EVERY) -> None:
        import psutil  # a base dependency, imported only by runs that are recorded

        self.trace = trace
        self.every = every
        self.process = psutil.Process()
        self.due = 0.0

    def sample(self) -> None:
        info = self.process.memory_info()
        rss, peak = int(info.rss), _peak_bytes(info)
        # the kernel's high-water mark is updated lazily: it may lag the size just read
        self.trace.note("memory", rss=rss, peak=None if peak is None else max(peak, rss), pid=self.process.pid)
        self.due = time.monotonic() + self.every

    def on_run_started(self, *, event: Any) -> None:
        self.sample()

    def on_step_ended(self, *, event: Any) -> None:
        if time.monotonic() >= self.due:
            self.sample()

    def on_run_ended(self, *, event: Any) -> None:
        self.sample()
