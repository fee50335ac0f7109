"""Who holds a lease: an owner names its process (`host:pid:start:nonce`) so another process on the host can
tell it is gone (no such pid, a zombie, or the pid reused by a newer process) and take over at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil

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
