"""Group commit: writes that are ready at the same moment share one transaction.

A write is a function of a transaction. `submit` queues it and waits; the queue is
flushed once the event loop has run every task that was ready, so the steps of many runs
finishing together are committed together. Each write checks its rules before it writes
anything, so a write refused by a rule (a lost lease, a name taken) fails alone and the
others commit; a failure of the database itself fails every write of the transaction.
Every caller returns only after the transaction holding its write has committed: the
guarantee "a step is durable before the next state starts" holds for each run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agentfsm.store.base import Backend, Conflict, Damaged, LeaseLost, RunNotFound, StoreError, Transaction, Transient

Write = Callable[[Transaction], Awaitable[Any]]

REFUSALS: tuple[type[BaseException], ...] = (Conflict, LeaseLost, RunNotFound, Damaged)
"""What a write raises when a rule refuses it, before it wrote anything: it fails alone. (A damaged value is
met while a write reads the rows it checks, before it writes.) Anything else a write raises (a value that is
not JSON, say) may come after it wrote part of its rows: it fails the transaction, which changes nothing."""

ATTEMPTS = 5
"""How many times a transaction that failed for a passing reason (`Transient`) is run."""

MAX_BATCH = 512
"""At most this many writes in one transaction (a bound on how long the write lock is held)."""


class WriteBatch:
    """The queue of writes waiting for the next transaction of one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, write: Write) -> Any:
        """Run `write` in the next transaction and return its result once that transaction has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((write, future))
        if self._flushing is None or self._flushing.done() or self._flushing.get_loop() is not loop:
            self._flushing = loop.create_task(self._flush_when_ready())
        return await future

    async def drain(self) -> None:
        """Wait until every queued write has been committed (or has failed)."""
        flushing = self._flushing
        if flushing is not None and not flushing.done():
            try:
                if flushing.get_loop() is asyncio.get_running_loop():
                    await asyncio.shield(flushing)
            except RuntimeError:  # no running loop: nothing can be queued either
                pass

    async def _flush_when_ready(self) -> None:
        await asyncio.sleep(0)  # let every task that is ready queue its write first
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            await self._commit(batch)

    async def _attempt(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        """Run the batch's writes in one transaction; a transaction that failed for a passing reason changed
        nothing (the writes are functions of the transaction), so it is run again, a little later."""
        for attempt in range(1, ATTEMPTS + 1):
            outcomes: list[tuple[bool, Any]] = []
            try:
                async with self.backend.writing() as tx:
                    for write, _future in batch:
                        try:
                            outcomes.append((True, await write(tx)))
                        except REFUSALS as exc:
                            outcomes.append((False, exc))
                return outcomes
            except Transient:
                if attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(0.01 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _commit(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        try:
            outcomes = await self._attempt(batch)
        except BaseException as exc:  # noqa: BLE001 - the transaction failed: every write in it failed
            failure = exc if isinstance(exc, Exception) else StoreError(f"{self.backend.url}: interrupted")
            for _write, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (ok, value), (_write, future) in zip(outcomes, batch, strict=True):
            if future.done():  # its caller was cancelled meanwhile; the write stands
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
