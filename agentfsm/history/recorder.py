"""The observer that records a run in a store: one transaction per step, before the next state starts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from agentfsm.bindings.known_secrets import REDACTED, known_secrets
from agentfsm.history.deltas import ContextTracker
from agentfsm.history.leases import Lease
from agentfsm.history.tally import Tally, tally_due
from agentfsm.runtime.events import RunEnded, StepEnded
from agentfsm.runtime.model import StateContext
from agentfsm.store.base import CheckpointRow, StepRow
from agentfsm.store.core import Store
from agentfsm.store.rules import free_checkpoint_name

if TYPE_CHECKING:
    from agentfsm.history.trace import TraceRecorder

MAX_RECORDED_TEXT = 64 * 1024
"""Longer strings in a step's call records and result are cut to this many characters (with a marker)."""
UNCUT = 1 << 30
"""The limit for what must come back whole: inputs, event data, errors, a run's output."""


class CheckpointNamer:
    """Names the checkpoints a run reaches: `approve`, then `approve#2` on a later visit."""

    def __init__(self, flagged: Iterable[str], taken: Iterable[str], branch: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.flagged = frozenset(flagged)
        self.taken = set(taken)
        self.branch = branch
        self.clock = clock

    def reached(self, state: str | None, point: int) -> list[CheckpointRow]:
        """The checkpoint named when `state` (a `checkpoint: true` state) is about to run at `point`."""
        if state is None or state not in self.flagged:
            return []
        name = free_checkpoint_name(state, state, self.taken)
        self.taken.add(name)
        return [CheckpointRow(name, self.branch, point, self.clock(), state)]


def recordable(value: Any, limit: int = MAX_RECORDED_TEXT, depth: int = 0) -> Any:
    """A step's result or call records as JSON the store can keep: long text cut, secrets out, odd objects as text."""
    if isinstance(value, str):
        text = value if len(value) <= limit else f"{value[:limit]}… [{len(value) - limit} more characters]"
        for secret in known_secrets():
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth > 50:
        return "…"
    if isinstance(value, dict):
        return {str(key): recordable(item, limit, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [recordable(item, limit, depth + 1) for item in value]
    return recordable(repr(value), limit, depth + 1)


def redacted(text: str) -> str:
    """`text` with every secret this process has read replaced (contexts: a tool may echo a key into one)."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class StoreRecorder:
    """Commits every step of one run (step row, context change, checkpoints, the event it took) and how it ends.

    It is the run's one critical observer: a failure to record stops the run, since a step
    that is not durable must not be followed by another.
    """

    critical = True

    def __init__(self, store: Store, context: StateContext, owner: str, branch: str, tracker: ContextTracker,
                 checkpoints: CheckpointNamer, lease: Lease, trace: TraceRecorder | None = None) -> None:
        self.store = store
        self.context = context
        self.run_id = context.run_id
        self.owner = owner
        self.branch = branch
        self.tracker = tracker
        self.checkpoints = checkpoints
        self.lease = lease
        self.trace = trace
        """The run's trace, whose entries are written with each step."""
        self.committed = 0
        """Steps this recorder committed (an interrupted advance that took none leaves the run as it was)."""

    async def on_step_ended(self, *, event: StepEnded) -> None:
        context = self.context
        kind, text = self.tracker.change(context.data)
        if text is not None and known_secrets():
            text = redacted(text)  # a secret a tool echoed into the context stays out of the store
        taken = context.mailbox.taken
        # a last step's result is the run's output, read back whole when the run is resumed or switched to
        result_limit = UNCUT if event.next_state is None else MAX_RECORDED_TEXT
        calls = [call.as_json() for call in event.calls]
        tally = None
        if tally_due(event.step, kind == "snapshot"):
            tally = Tally(context.visits, context.usage, context.bindings).as_json()
        row = StepRow(
            self.branch, event.step, event.state, event.event, recordable(event.event_data, UNCUT),
            event.next_state, event.started_at, event.duration, event.retries, recordable(event.error, UNCUT),
            recordable(event.result, result_limit), recordable(calls) if calls else [], kind, text, tally,
        )
        reached = self.checkpoints.reached(event.next_state, event.step + 1)
        trace = None
        if self.trace is not None:
            if reached:
                self.trace.checkpoints(reached, event.step)
            trace = self.trace.take()
        # the first step of a drive ends the wait the run may have been resumed from
        names = await self.store.commit_step(self.run_id, self.owner, self.lease.expires(), row, reached,
                                             None if taken is None else taken.id, ends_wait=self.committed == 0,
                                             trace=trace)
        self.checkpoints.taken.update(names)  # a name a person took meanwhile made the store pick another
        self.committed += 1

    async def on_run_ended(self, *, event: RunEnded) -> None:
        result = event.result
        trace = None if self.trace is None else self.trace.take()
        await self.store.end_run(self.run_id, self.owner, result.status, output=recordable(result.output, UNCUT),
                                 error=recordable(result.error, UNCUT), usage=result.usage, waiting=result.waiting,
                                 trace=trace)
        # the run is over: its context goes back to plain lists and dicts (tracking only served its recording)
        self.tracker.release(self.context.data)
