"""Leases: one process advances a run at a time, and a run left by a dead process can be taken over.

An owner names its process (`host:pid:start-time:nonce`), so a later process on the same
host can tell that the holder is gone (no such pid, or a pid reused by a newer process)
and take the run over at once instead of waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable

from agentfsm.store.base import LeaseLost
from agentfsm.store.core import Store

LEASE_SECONDS = 30.0
"""How long a lease lasts without renewal; every committed step and a heartbeat renew it."""

logger = logging.getLogger("agentfsm")


def _process_start(pid: int) -> str | None:
    import psutil  # here: only resumes and workers need it

    try:
        return f"{psutil.Process(pid).create_time():.3f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


_THIS_PROCESS: dict[int, str] = {}


def _this_process() -> str:
    """`host:pid:start-time` of this process, read once (a fork is a new process with a new pid)."""
    pid = os.getpid()
    if pid not in _THIS_PROCESS:
        _THIS_PROCESS[pid] = f"{socket.gethostname()}:{pid}:{_process_start(pid)}"
    return _THIS_PROCESS[pid]


def new_owner() -> str:
    """An owner id for this process (unique per call)."""
    return f"{_this_process()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` ran on this host in a process that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    started, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only the lease's expiry can tell
    import psutil

    pid = int(pid_text)
    if not psutil.pid_exists(pid):
        return True
    status = None
    with contextlib.suppress(psutil.Error):
        status = psutil.Process(pid).status()
    return status == psutil.STATUS_ZOMBIE or _process_start(pid) != started


class Heartbeat:
    """Renews a lease in the background while a long step runs; `lost` says when it was taken away."""

    def __init__(self, store: Store, run_id: str, owner: str, *, seconds: float = LEASE_SECONDS,
                 clock: Callable[[], float]) -> None:
        self.store, self.run_id, self.owner, self.seconds, self.clock = store, run_id, owner, seconds, clock
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    def expires(self) -> float:
        return self.clock() + self.seconds

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self.store.renew(self.run_id, self.owner, self.expires())
            except LeaseLost:
                self.lost = True
                logger.warning("run %s: lease lost (cancelled or taken over)", self.run_id)
                return
            except Exception:  # noqa: BLE001 - a busy store now and then must not kill the run; the next step retries
                logger.warning("run %s: could not renew the lease", self.run_id, exc_info=True)
