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
import weakref
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


class Lease:
    """A run's lease held by this process: who holds it, for how long each renewal lasts, whether it was lost."""

    __slots__ = ("run_id", "owner", "seconds", "clock", "lost")

    def __init__(self, run_id: str, owner: str, seconds: float, clock: Callable[[], float]) -> None:
        self.run_id, self.owner, self.seconds, self.clock = run_id, owner, seconds, clock
        self.lost = False

    def expires(self) -> float:
        """When the lease runs out if it is renewed now."""
        return self.clock() + self.seconds


class LeaseKeeper:
    """Renews every lease this process holds in one store, together, a third of a lease's length apart.

    One keeper per store and lease length, whatever the number of runs advancing: the
    renewals of a thousand runs are one task and one transaction, not a thousand of each.
    """

    def __init__(self, store: Store, seconds: float) -> None:
        self.store, self.seconds = store, seconds
        self.held: dict[str, Lease] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, run_id: str, owner: str, clock: Callable[[], float]) -> Lease:
        """Keep renewing this run's lease until `drop`."""
        lease = self.held[run_id] = Lease(run_id, owner, self.seconds, clock)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew_while_held())
        return lease

    def drop(self, lease: Lease) -> None:
        if self.held.get(lease.run_id) is lease:
            del self.held[lease.run_id]
        if not self.held and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _renew_while_held(self) -> None:
        while self.held:
            await asyncio.sleep(self.seconds / 3)
            leases = list(self.held.values())
            outcomes = await asyncio.gather(*(self.store.renew(lease.run_id, lease.owner, lease.expires())
                                              for lease in leases), return_exceptions=True)
            for lease, outcome in zip(leases, outcomes, strict=True):
                self._note(lease, outcome)

    @staticmethod
    def _note(lease: Lease, outcome: object) -> None:
        if isinstance(outcome, LeaseLost):
            lease.lost = True
            logger.warning("run %s: lease lost (cancelled or taken over)", lease.run_id)
        elif isinstance(outcome, Exception):  # a busy store now and then must not kill the run; the next step retries
            logger.warning("run %s: could not renew the lease: %s", lease.run_id, outcome)


_KEEPERS: weakref.WeakKeyDictionary[Store, dict[float, LeaseKeeper]] = weakref.WeakKeyDictionary()


def keeper(store: Store, seconds: float) -> LeaseKeeper:
    """The keeper of `store`'s leases of this length in this process."""
    by_length = _KEEPERS.setdefault(store, {})
    if seconds not in by_length:
        by_length[seconds] = LeaseKeeper(store, seconds)
    return by_length[seconds]
