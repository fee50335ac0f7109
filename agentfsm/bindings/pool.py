"""One pooled HTTP client per event loop, closed when that loop shuts down.

An `httpx.AsyncClient` keeps connections whose sockets belong to the event loop that
opened them, so one client cannot serve two loops; yet `agentfsm run` (and many tests)
call `asyncio.run` once per run, each with a new loop, on the same compiled machine.
So a binding keeps one client per running loop: runs sharing a loop share its
connections, and a new loop gets a new client.

Closing: asyncio has no "loop is closing" callback, but `asyncio.run` (and any well-behaved
runner) calls `loop.shutdown_asyncgens()` before closing a loop, which `aclose()`s every
async generator still suspended in it. Each client is paired with such a generator, which
closes the client in its `finally`, while the loop can still run that. A loop closed
without that step (a hand-made loop) leaves its entry behind; it is dropped the next time
the pool is used, and its sockets are freed with the client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Generic, Protocol, TypeVar


class AsyncClosable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=AsyncClosable)


class LoopLocalPool(Generic[C]):
    """Makes (with `factory`) and hands out one client per running event loop."""

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._entries: dict[asyncio.AbstractEventLoop, tuple[C, AsyncGenerator[None, None]]] = {}
        self._lock = threading.Lock()  # loops in other threads may use the same binding

    async def get(self) -> C:
        """The running loop's client, made on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._drop_closed_loops()
            entry = self._entries.get(loop)
            if entry is not None:
                return entry[0]
            client = self._factory()
            closer = self._close_at_shutdown(loop, client)
            self._entries[loop] = (client, closer)
        # The first step registers the generator with the running loop (asyncio's asyncgen hooks),
        # so `shutdown_asyncgens()` will finish it; it runs to its `yield` at once.
        await closer.asend(None)
        return client

    async def aclose(self) -> None:
        """Close the running loop's client now (a later call makes a new one)."""
        with self._lock:
            entry = self._entries.get(asyncio.get_running_loop())
        if entry is not None:
            await entry[1].aclose()

    def __len__(self) -> int:
        """How many clients are open (one per loop that used the pool and has not shut down)."""
        with self._lock:
            self._drop_closed_loops()
            return len(self._entries)

    async def _close_at_shutdown(self, loop: asyncio.AbstractEventLoop, client: C) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                if self._entries.get(loop, (None,))[0] is client:
                    del self._entries[loop]
            await client.aclose()

    def _drop_closed_loops(self) -> None:
        for loop in [loop for loop in self._entries if loop.is_closed()]:
            del self._entries[loop]
