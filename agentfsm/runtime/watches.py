"""Watches: an observer that reports a value of the context whenever it changes (`WatchChanged` events).

A watch has a name and an expression, compiled elsewhere into `read(data, run)` (see
`agentfsm.service.debugging`). Its value is read when the run starts or resumes (reported with
`initial`), then after every step; a value that differs from the last one reported is published
as `WatchChanged` on the run's own event stream, where the trace keeps it and a front end prints
it. A value that cannot be read (a key not set yet) is reported once, with `error`, and again
when it can be read.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentfsm.runtime.events import RunStarted, StepEnded, WatchChanged
from agentfsm.runtime.pausing import publish_in_run, running_context

Read = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
"""(the context data, `run` {id, step, state}) -> the watched value; raises when it cannot be read."""

_UNREAD = object()


@dataclass(slots=True)
class Watch:
    name: str
    expression: str
    read: Read
    last: Any = field(default=_UNREAD, repr=False)
    """The last value reported (an error's text as `("error", text)`), or nothing yet."""


class Watches:
    """Publishes `WatchChanged` when a watched value differs from the last one reported."""

    critical = False

    def __init__(self, watches: Iterable[Watch] = ()) -> None:
        self.items = list(watches)

    def add(self, watch: Watch) -> None:
        self.items.append(watch)

    async def on_run_started(self, *, event: RunStarted) -> None:
        context = running_context()
        if context is not None:
            await self.look(event.run_id, context.data, event.step, event.state, initial=True)

    async def on_step_ended(self, *, event: StepEnded) -> None:
        await self.look(event.run_id, event.data, event.step, event.state, initial=False)

    async def look(self, run_id: str, data: Mapping[str, Any], step: int, state: str, *, initial: bool) -> None:
        run = {"id": run_id, "step": step, "state": state}
        for watch in self.items:
            try:
                value, error = copy.deepcopy(watch.read(data, run)), None  # context lists change in place
                seen: Any = value
            except Exception as exc:  # noqa: BLE001 - a value that cannot be read is reported, not raised
                value, error = None, str(exc)
                seen = ("error", error)
            first = watch.last is _UNREAD
            if not first and _same(seen, watch.last):
                continue
            watch.last = seen
            await publish_in_run(WatchChanged(run_id=run_id, at=time.time(), step=step, state=state,
                                              name=watch.name, expression=watch.expression, value=value,
                                              error=error, initial=initial or first))


def _same(value: Any, last: Any) -> bool:
    try:
        return type(value) is type(last) and bool(value == last)
    except Exception:  # noqa: BLE001 - a value that cannot be compared counts as changed
        return False

