"""Live updates as Server-Sent Events, fed by the store: whichever process records a step, the page sees it.

A run's stream reads the run's row when it may have changed (one row, whatever the run's length)
and sends only what is new: the row, and the steps recorded since the last message. The runs
stream re-reads the page of runs the client shows and sends it when it differs. "May have
changed": on PostgreSQL, the store says so (LISTEN/NOTIFY through the backend's `watcher`), and
a stream also reads every `FALLBACK` seconds; elsewhere a stream reads every `POLL` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agentfsm.service import browse, views
from agentfsm.service.errors import USER_ERRORS
from agentfsm.service.runs import RunRow

POLL = 0.25
"""Seconds between two reads of the store for one stream, when the store does not say what changed."""
FALLBACK = 1.0
"""Seconds between two reads when the store says what changed: for the moments a writer has not yet noticed that
somebody watches (it looks twice a second), so that a step still appears within a second."""
GAP = 0.1
"""The least time between two reads of one run's stream (a run recording thousands of steps a second is read ten
times a second, each read taking every step since the last)."""
RUNS_GAP = 1.0
"""The least time between two reads of the runs stream (a page of runs and their children)."""
HEARTBEAT = 15.0
"""Seconds of silence after which a comment line keeps proxies and the browser from closing the stream."""


class Changes:
    """Wake-ups for one UI's streams: from the store's watcher where the backend has one, else from the clock."""

    def __init__(self, backend: Any, poll: float) -> None:
        self.poll = poll
        self._watcher = backend.watcher() if hasattr(backend, "watcher") else None
        self._task: asyncio.Task[None] | None = None
        self._streams: dict[str | None, set[asyncio.Event]] = {}  # run id (None: any run) -> its streams' events
        self.listening = False

    @contextlib.contextmanager
    def watch(self, run_id: str | None) -> Iterator[asyncio.Event]:
        """An event set when `run_id` (None: any run) may have changed, for as long as the block lasts."""
        if self._watcher is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watcher.run(self._changed, self._lost))
        event = asyncio.Event()
        self._streams.setdefault(run_id, set()).add(event)
        try:
            yield event
        finally:
            self._streams[run_id].discard(event)

    async def wait(self, event: asyncio.Event, least: float) -> None:
        """At least `least` seconds, then until `event` is set or the next read is due; the event is cleared."""
        await asyncio.sleep(least)
        timeout = max(self.poll, FALLBACK) if self.listening else self.poll
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, timeout - least))
        event.clear()

    def _changed(self, run_id: str | None) -> None:
        if run_id is None:  # listening (again): anything may have changed meanwhile
            self.listening = True
        for key in (None, run_id) if run_id is not None else list(self._streams):
            for event in self._streams.get(key, ()):
                event.set()

    def _lost(self) -> None:
        self.listening = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _message(kind: str, value: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(value, ensure_ascii=False, default=str)}\n\n"


def _stream(messages: AsyncIterator[str]) -> Response:
    return StreamingResponse(messages, media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def run_stream(request: Request) -> Response:
    """`change` messages for one run: `{"run", "steps": [new steps], "reset"}` (reset: read the run again)."""
    ui = request.app.state.ui
    run_id = request.path_params["run"]

    async def messages() -> AsyncIterator[str]:
        try:
            # where the page stands (`steps` of branch `head` shown): what was recorded since it read is sent first
            seen: RunRow | None = await _seen(ui.runs, run_id, request.query_params.get("steps"),
                                              request.query_params.get("head"))
        except USER_ERRORS as exc:
            yield _message("refused", {"error": str(exc)})
            return
        spoke = time.monotonic()
        with ui.changes.watch(run_id) as changed:
            while True:
                try:
                    change = await browse.run_change(ui.runs, run_id, seen)
                except USER_ERRORS as exc:
                    yield _message("refused", {"error": str(exc)})
                    return
                if change is not None:
                    if seen is not None:  # without `steps`, the first read only sets where the client stands
                        yield _message("change", views.run_change_json(change, time.time()))
                        spoke = time.monotonic()
                    seen = change.run
                elif time.monotonic() - spoke >= HEARTBEAT:
                    yield ": still here\n\n"
                    spoke = time.monotonic()
                await ui.changes.wait(changed, min(GAP, ui.poll))

    return _stream(messages())


async def runs_stream(request: Request) -> Response:
    """`runs` messages: the page of runs (same query as GET /api/runs) each time a run on it changes or is added."""
    ui = request.app.state.ui
    query = request.query_params

    async def messages() -> AsyncIterator[str]:
        shown: list[tuple[Any, ...]] | None = None
        priced: browse.PricedRuns = {}  # a run that did not move is not priced again
        spoke = time.monotonic()
        with ui.changes.watch(None) as changed:
            while True:
                try:
                    page = await browse.runs_page(ui.runs, status=query.get("status") or None,
                                                  machine=query.get("machine") or None,
                                                  cursor=query.get("cursor") or None, limit=_limit(query.get("limit")),
                                                  priced=priced)
                except USER_ERRORS as exc:
                    yield _message("refused", {"error": str(exc)})
                    return
                now = [(run.id, run.status, run.steps, run.updated_at, run.head)
                       for run in page.runs + [kid for kids in page.children.values() for kid in kids]]
                if shown is not None and now != shown:
                    yield _message("runs", views.runs_page_json(page, time.time()))
                    spoke = time.monotonic()
                elif time.monotonic() - spoke >= HEARTBEAT:
                    yield ": still here\n\n"
                    spoke = time.monotonic()
                shown = now
                await ui.changes.wait(changed, RUNS_GAP)

    return _stream(messages())


async def _seen(runs: Any, run_id: str, steps: str | None, head: str | None) -> RunRow | None:
    if steps is None or not steps.isdigit():
        return None
    run = await runs.get(run_id)
    return dataclasses.replace(run, steps=int(steps), head=head or run.head, updated_at=-1.0)


def _limit(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
