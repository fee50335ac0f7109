"""The backends the store conformance suites run against, and the helpers those suites share.

A suite asks for `store` (a fresh, empty `Store`) or `place` (where that store keeps its rows,
to open more stores on the same rows). Every test runs once per name in `BACKENDS`; a new
backend (PostgreSQL) joins by adding its name there and a branch in `Place.backend`.
Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentfsm.store import CheckpointRow, RunFilter, RunRow, StepRow, Store
from agentfsm.store.base import Backend, Transaction
from agentfsm.store.memory import memory_backend
from agentfsm.store.sqlite import SQLiteBackend

BACKENDS = ("sqlite", "memory", "postgres")

NOW = 1_000.0
LEASE = NOW + 30.0
_names = itertools.count()


@dataclass
class Clock:
    """The store's injected clock: it reads `now`, which only the test moves."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Place:
    """Where a test's rows live: every store opened here sees the same rows, through its own connection."""

    kind: str
    tmp_path: Path
    clock: Clock = field(default_factory=Clock)
    name: str = field(default_factory=lambda: f"conformance-{next(_names)}")
    opened: list[Store] = field(default_factory=list)
    url: str | None = None
    """For a server backend: the URL of this place (a schema of its own)."""

    def backend(self) -> Backend:
        """A new connection to this place's rows."""
        if self.kind == "postgres":
            from agentfsm.store.postgres import PostgresBackend

            assert self.url is not None
            return PostgresBackend(self.url)
        if self.kind == "sqlite":
            return SQLiteBackend(self.tmp_path / "runs.db")
        if self.kind == "memory":
            return memory_backend(self.name)
        raise AssertionError(f"unknown backend {self.kind}")

    def store(self, wrap: Callable[[Backend], Backend] | None = None) -> Store:
        """A store over a new connection (seen through `wrap`, if given), closed when the test ends."""
        backend = self.backend()
        opened = Store(wrap(backend) if wrap else backend, clock=self.clock)
        self.opened.append(opened)
        return opened


SHARED_BACKENDS = tuple(name for name in BACKENDS if name != "memory")
"""The backends another process can open too (where a run can be taken over from outside)."""


@asynccontextmanager
async def _place_of(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    kept = Place(request.param, tmp_path)
    if request.param == "postgres":  # the session's server, started on first use
        kept.url = request.getfixturevalue("postgres_server").fresh_url()
    yield kept
    for opened in reversed(kept.opened):
        await opened.close()


@pytest_asyncio.fixture(params=BACKENDS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with _place_of(request, tmp_path) as kept:
        yield kept


@pytest_asyncio.fixture
async def store(place: Place) -> Store:
    """A fresh, empty store of the backend under test."""
    return place.store()


@pytest_asyncio.fixture(params=SHARED_BACKENDS)
async def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of a backend that other processes can open too."""
    async with _place_of(request, tmp_path) as kept:
        yield kept.store()


# -- rows the tests write ---------------------------------------------------------------------------


async def start(store: Store, run_id: str = "run-0001", *, owner: str | None = "w1", expires: float | None = LEASE,
                created_at: float = NOW,
                digest: str | None = "d1", source: str | None = "name: m\n", machine: str = "m",
                checkpoints: list[CheckpointRow] | None = None, **columns: Any) -> RunRow:
    """A run leased to `owner` until `expires`, with inputs {"topic": "x"} and its step 0 (a snapshot)."""
    columns.setdefault("status", "running")
    run = RunRow(id=run_id, machine=machine, digest=digest, path="m.yaml", created_at=created_at,
                 updated_at=created_at, lease_owner=owner, lease_expires=expires if owner else None, **columns)
    first = StepRow(branch="main", step=0, state=None, started_at=created_at, context_kind="snapshot",
                    context='{"topic":"x"}')
    await store.create_run(run, source, first, checkpoints or [], {"topic": "x"})
    return run


def step(number: int, *, branch: str = "main", kind: str | None = "patch", context: str | None = "[]",
         tally: dict[str, Any] | None = None) -> StepRow:
    return StepRow(branch=branch, step=number, state=f"s{number}", next_state=f"s{number + 1}",
                   started_at=NOW + number, duration=0.5, context_kind=kind,  # type: ignore[arg-type]
                   context=context if kind else None, tally=tally)


async def make_waiting(store: Store, run_id: str, events: list[str], *, deadline: float | None = None,
                       owner: str = "w1") -> None:
    """Suspend a run leased to `owner` at a waiting state."""
    await store.end_run(run_id, owner, "waiting", waiting={"state": "ask", "events": events, "deadline": deadline})


# -- what a store holds ------------------------------------------------------------------------------


async def everything(store: Store) -> dict[str, Any]:
    """All a caller can read through the interface: every run with its inputs, source, branches, the steps of
    each branch, checkpoints and pending events."""
    kept: dict[str, Any] = {}
    for run in await store.list_runs(RunFilter()):
        branches = await store.branches(run.id)
        kept[run.id] = {
            "run": run,
            "inputs": await store.inputs(run.id),
            "source": await store.source(run.digest) if run.digest else None,
            "branches": branches,
            "steps": {branch.name: await store.steps(run.id, branch.name) for branch in branches},
            "checkpoints": await store.checkpoints(run.id),
            "events": await store.pending_events(run.id),
            "trace": await store.trace(run.id),
        }
    return kept


def unchanged(store: Store) -> AbstractAsyncContextManager[None]:
    """The block (a refused or failing call) must leave everything readable exactly as it was."""

    @asynccontextmanager
    async def check() -> AsyncIterator[None]:
        before = await everything(store)
        yield
        after = await everything(store)
        assert after == before, f"changed: {'; '.join(differences(before, after))}"

    return check()


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two `everything` readings, one phrase per run."""
    found = [f"run {run_id} {'appeared' if run_id in after else 'vanished'}" for run_id in before.keys() ^ after.keys()]
    for run_id in sorted(before.keys() & after.keys()):
        keys = [key for key, value in before[run_id].items() if after[run_id][key] != value]
        found += [f"run {run_id}: {', '.join(keys)}"] if keys else []
    return found


# -- a backend seen through a spy --------------------------------------------------------------------


class Spy:
    """A backend that counts its write transactions, can make a write inside one fail, and can be slow to commit.

    `fail` is asked about every row operation of a write transaction (its name and arguments); when it
    says yes, the operation raises `Broken` instead of reaching the backend (the database failed mid-way).
    With `slow_commit`, a transaction lets other tasks run before it commits, as a database across a
    network does (SQLite commits without ever giving up the event loop).
    """

    def __init__(self, inner: Backend, fail: Callable[[str, tuple[Any, ...]], bool] | None = None,
                 *, slow_commit: bool = False) -> None:
        self.inner = inner
        self.url = inner.url
        self.fail = fail
        self.slow_commit = slow_commit
        self.transactions = 0
        self.while_committing: list[Callable[[], object]] = []
        """Called (each once) while the next slow commit lets other tasks run."""

    def reading(self) -> AbstractAsyncContextManager[Transaction]:
        return self.inner.reading()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[Transaction]:
        self.transactions += 1
        async with self.inner.writing() as tx:
            yield _FailingTransaction(tx, self.fail) if self.fail else tx  # type: ignore[misc]
            if self.slow_commit:
                calls, self.while_committing = self.while_committing, []
                for call in calls:
                    call()
                for _ in range(20):  # enough for tasks started meanwhile to queue their writes
                    await asyncio.sleep(0)

    def stream_steps(self, run_id: str, branch: str, first: int, last: int | None) -> AsyncIterator[StepRow]:
        return self.inner.stream_steps(run_id, branch, first, last)

    def listener(self) -> Any:
        return self.inner.listener()

    async def close(self) -> None:
        await self.inner.close()


class Broken(Exception):
    """What a spied write raises when the test says the database fails."""


class _FailingTransaction:
    def __init__(self, inner: Transaction, fail: Callable[[str, tuple[Any, ...]], bool]) -> None:
        self._inner = inner
        self._fail = fail

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self._inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._fail(name, args):
                raise Broken(f"{name} failed")
            return await operation(*args, **kwargs)

        return call
