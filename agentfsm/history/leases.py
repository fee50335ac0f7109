"""Leases: one process advances a run at a time, and a run left by a dead process can be taken over.

An owner names its process (`host:pid:start-time:nonce`), so a later process on the same
host can tell that the holder is gone (no such pid, or a pid reused by a newer process)
and take the run over at once instead of waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import weakref
from collections.abc import Callable

from agentfsm.store.base import Heartbeat, LeaseLost
from agentfsm.store.core import Store

LEASE_SECONDS = 30.0
"""How long a lease lasts without renewal; every committed step and a heartbeat renew it."""

logger = logging.getLogger("agentfsm")


_PROC = "/proc"
_boot_time: float | None = None


def _proc_status(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a process from Linux's /proc, its start time as psutil's `create_time`
    gives it (clock ticks after boot, plus the boot time); None when there is no such process."""
    global _boot_time
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()  # the name, in parentheses, may hold anything
        if _boot_time is None:
            with open(f"{_PROC}/stat", "rb") as system:
                _boot_time = next(float(line.split()[1]) for line in system if line.startswith(b"btime"))
    except (FileNotFoundError, ProcessLookupError):  # no such process (or it ended while we read)
        return None
    except OSError:  # /proc hides other users' processes (hidepid): it may be alive
        return "?", ""
    return fields[0].decode(), f"{int(fields[19]) / os.sysconf('SC_CLK_TCK') + _boot_time:.3f}"


def _process_status(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, None when there is none: read from /proc on Linux (cheap: a lease
    owner is named at every start), by psutil elsewhere."""
    if os.path.isdir(_PROC + "/self"):
        return _proc_status(pid)
    import psutil  # here: other systems than Linux only

    try:
        process = psutil.Process(pid)
        return ("Z" if process.status() == psutil.STATUS_ZOMBIE else "R"), f"{process.create_time():.3f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return "?", ""


_THIS_PROCESS: dict[int, str] = {}


def _this_process() -> str:
    """`host:pid:start-time` of this process, read once (a fork is a new process with a new pid)."""
    pid = os.getpid()
    if pid not in _THIS_PROCESS:
        status = _process_status(pid)
        _THIS_PROCESS[pid] = f"{socket.gethostname()}:{pid}:{None if status is None else status[1]}"
    return _THIS_PROCESS[pid]


def new_owner() -> str:
    """An owner id for this process (unique per call)."""
    return f"{_this_process()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` ran on this host in a process that no longer exists (or a zombie, or a newer process
    that took its pid)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    started, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only the lease's expiry can tell
    status = _process_status(int(pid_text))
    if status is None:
        return True
    state, start = status
    return state == "Z" or (state != "?" and start != started)


class Lease:
    """A run's lease held by this process: who holds it, and for how long each renewal lasts."""

    __slots__ = ("run_id", "owner", "seconds", "clock")

    def __init__(self, run_id: str, owner: str, seconds: float, clock: Callable[[], float]) -> None:
        self.run_id, self.owner, self.seconds, self.clock = run_id, owner, seconds, clock

    def expires(self) -> float:
        """When the lease runs out if it is renewed now."""
        return self.clock() + self.seconds


class LeaseKeeper:
    """Renews every lease this process holds in one store, together, a third of a lease's length apart.

    One keeper per store and lease length, whatever the number of runs advancing: the renewals of a thousand
    runs are one transaction, not a thousand. Where the backend offers a `heartbeat` (SQLite), the renewals
    come from a thread with a connection of its own, so they go on while the event loop is blocked (a state
    calling `time.sleep` for longer than a lease): a live process keeps its runs, and no other process takes
    one over and runs its step a second time. Elsewhere a task of the event loop renews them.
    """

    def __init__(self, store: Store, seconds: float) -> None:
        self.store, self.seconds = store, seconds
        self.held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._beating: threading.Event | None = None  # set: the heartbeat thread is to stop

    def hold(self, run_id: str, owner: str, clock: Callable[[], float]) -> Lease:
        """Keep renewing this run's lease until `drop`."""
        lease = Lease(run_id, owner, self.seconds, clock)
        with self._lock:
            self.held[run_id] = lease
            if hasattr(self.store.backend, "heartbeat"):
                if self._beating is None:
                    self._beating = threading.Event()
                    threading.Thread(target=self._beat, args=(self._beating,), name="agentfsm-lease-heartbeat",
                                     daemon=True).start()
                return lease
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew_while_held())
        return lease

    def drop(self, lease: Lease) -> None:
        with self._lock:
            if self.held.get(lease.run_id) is lease:
                del self.held[lease.run_id]
            if self.held:
                return
            if self._beating is not None:
                self._beating.set()
                self._beating = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _beat(self, stop: threading.Event) -> None:
        """The heartbeat thread: renew what is held every third of a lease until told to stop."""
        heart: Heartbeat | None = None
        try:
            while not stop.wait(self.seconds / 3):
                with self._lock:
                    leases = list(self.held.values())
                if not leases:
                    continue
                try:
                    heart = heart or self.store.backend.heartbeat()  # type: ignore[attr-defined]
                    renewed: list[object] = list(heart.renew([(lease.run_id, lease.owner, lease.expires())
                                                              for lease in leases]))
                except Exception as exc:  # noqa: BLE001 - a busy or unreachable store: the next beat retries
                    renewed = [exc] * len(leases)
                for lease, outcome in zip(leases, renewed, strict=True):
                    self._note(lease, LeaseLost(lease.run_id) if outcome is False else outcome)
        finally:
            if heart is not None:
                heart.close()

    async def _renew_while_held(self) -> None:
        while self.held:
            await asyncio.sleep(self.seconds / 3)
            leases = list(self.held.values())
            outcomes = await asyncio.gather(*(self.store.renew(lease.run_id, lease.owner, lease.expires())
                                              for lease in leases), return_exceptions=True)
            for lease, outcome in zip(leases, outcomes, strict=True):
                self._note(lease, outcome)

    def _note(self, lease: Lease, outcome: object) -> None:
        if isinstance(outcome, LeaseLost):  # no use renewing it again: the run's next step is refused too
            with self._lock:
                if self.held.get(lease.run_id) is lease:
                    del self.held[lease.run_id]
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
