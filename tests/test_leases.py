"""Who holds a lease: an owner names its process (`host:pid:start:nonce`) so another process on the host can
tell it is gone (no such pid, a zombie, or the pid reused by a newer process) and take over at once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from agentfsm.history.leases import new_owner, owner_is_dead

HOST = socket.gethostname()


def owner_of(pid: int, start: str) -> str:
    return f"{HOST}:{pid}:{start}:cafe0001"


def test_an_owner_names_this_process_as_psutil_and_earlier_releases_do() -> None:
    host, pid, start, nonce = new_owner().split(":")
    assert (host, int(pid)) == (HOST, os.getpid())
    assert start == f"{psutil.Process().create_time():.3f}"  # owners stored by a release that used psutil match
    assert len(nonce) == 8 and new_owner() != new_owner()
    assert not owner_is_dead(new_owner())


def test_a_live_process_holds_its_lease_and_a_finished_one_does_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = f"{psutil.Process(child.pid).create_time():.3f}"
        assert not owner_is_dead(owner_of(child.pid, start))
        assert owner_is_dead(owner_of(child.pid, "1.000"))  # the pid, reused by a newer process
    finally:
        child.kill()
        child.wait()
    assert owner_is_dead(owner_of(child.pid, start))


def test_a_zombie_holds_no_lease() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = f"{psutil.Process(child.pid).create_time():.3f}"
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # ended, not yet reaped
        time.sleep(0.01)
    try:
        assert owner_is_dead(owner_of(child.pid, start))
    finally:
        child.wait()


def test_an_owner_on_another_host_or_unreadable_is_left_to_the_lease_expiry() -> None:
    assert not owner_is_dead(f"elsewhere:{os.getpid()}:1.000:cafe0001")
    assert not owner_is_dead("someone")
    assert not owner_is_dead(None)


def test_a_lost_lease_is_let_go_not_renewed_again(caplog: pytest.LogCaptureFixture) -> None:
    """Once the store says another owner holds the run (cancelled, taken over), renewing stops: one warning."""
    from agentfsm.history.leases import keeper
    from agentfsm.store import open_store
    from tests.store_backends import start

    async def main() -> list[str]:
        store = open_store(f"memory://lost-lease-{os.getpid()}")
        try:
            await start(store, owner="someone-else", expires=time.time() + 3600)
            keeping = keeper(store, 0.03)  # renewed every 10 ms
            lease = keeping.hold("run-0001", "me", time.time)
            await asyncio.sleep(0.2)
            still_held = "run-0001" in keeping.held
            keeping.drop(lease)
            return [str(still_held)]
        finally:
            await store.close()

    with caplog.at_level(logging.WARNING, logger="agentfsm"):
        assert asyncio.run(main()) == ["False"]
    lost = [record for record in caplog.records if "lease lost" in record.getMessage()]
    assert len(lost) == 1
