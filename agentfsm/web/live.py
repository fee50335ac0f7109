"""Live updates as Server-Sent Events, fed by the store: whichever process records a step, the page sees it.

A run's stream reads the run's row every `POLL` seconds (one row, whatever the run's length) and
sends only what is new: the row, and the steps recorded since the last message. The runs stream
re-reads the page of runs the client shows and sends it when it differs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agentfsm.service import browse, views
from agentfsm.service.errors import USER_ERRORS
from agentfsm.service.runs import RunRow

POLL = 0.25
"""Seconds between two reads of the store for one stream: a step appears on the page within about this."""
HEARTBEAT = 15.0
"""Seconds of silence after which a comment line keeps proxies and the browser from closing the stream."""


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
        quiet = 0.0
        try:
            # where the page stands (`steps` of branch `head` shown): what was recorded since it read is sent first
            seen: RunRow | None = await _seen(ui.runs, run_id, request.query_params.get("steps"),
                                              request.query_params.get("head"))
        except USER_ERRORS as exc:
            yield _message("refused", {"error": str(exc)})
            return
        while True:
            try:
                change = await browse.run_change(ui.runs, run_id, seen)
            except USER_ERRORS as exc:
                yield _message("refused", {"error": str(exc)})
                return
            if change is not None:
                if seen is not None:  # without `steps`, the first read only sets where the client stands
                    yield _message("change", views.run_change_json(change, time.time()))
                    quiet = 0.0
                seen = change.run
            elif quiet >= HEARTBEAT:
                yield ": still here\n\n"
                quiet = 0.0
            await asyncio.sleep(ui.poll)
            quiet += ui.poll

    return _stream(messages())


async def runs_stream(request: Request) -> Response:
    """`runs` messages: the page of runs (same query as GET /api/runs) each time a run on it changes or is added."""
    ui = request.app.state.ui
    query = request.query_params

    async def messages() -> AsyncIterator[str]:
        shown: list[tuple[Any, ...]] | None = None
        quiet = 0.0
        while True:
            try:
                page = await browse.runs_page(ui.runs, status=query.get("status") or None,
                                              machine=query.get("machine") or None,
                                              cursor=query.get("cursor") or None, limit=_limit(query.get("limit")))
            except USER_ERRORS as exc:
                yield _message("refused", {"error": str(exc)})
                return
            now = [(run.id, run.status, run.steps, run.updated_at, run.head)
                   for run in page.runs + [kid for kids in page.children.values() for kid in kids]]
            if shown is not None and now != shown:
                yield _message("runs", views.runs_page_json(page, time.time()))
                quiet = 0.0
            elif quiet >= HEARTBEAT:
                yield ": still here\n\n"
                quiet = 0.0
            shown = now
            await asyncio.sleep(max(ui.poll, 1.0))
            quiet += max(ui.poll, 1.0)

    return _stream(messages())


async def _seen(runs: Any, run_id: str, steps: str | None, head: str | None) -> RunRow | None:
    if steps is None or not steps.isdigit():
        return None
    run = await runs.get(run_id)
    return dataclasses.replace(run, steps=int(steps), head=head or run.head, updated_at=-1.0)


def _limit(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
