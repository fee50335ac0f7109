"""Child runs in a store: found again when their parent resumes, never run twice once finished.

A child's run id is derived from its parent's run, the parent's branch and step, the child's
name and which attempt of the step it belongs to (a state retried after a failed child
starts fresh children). So a parent resumed after a crash finds its children by id:
finished ones give their stored result (their steps are not taken again), unfinished ones
are resumed where they stopped, and a parent rolled back to a point before the state runs
it on a new branch, which gets fresh children (the old ones stay readable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentfsm.runtime.children import ChildNote, ChildRelay, ChildRequest
from agentfsm.runtime.ids import derived_run_id
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.model import StateContext
from agentfsm.runtime.teams import TeamSpace
from agentfsm.store.base import FINISHED, Conflict, RunNotFound, RunRow
from agentfsm.store.core import Store

if TYPE_CHECKING:
    from agentfsm.history.advance import Recording


class StoredChildren:
    """The children of one durable run, as its states start or find them (`context.children`)."""

    def __init__(self, store: Store, recording: Recording, branch: str, llms: Mapping[str, str]) -> None:
        self.store, self.recording, self.branch, self.llms = store, recording, branch, dict(llms)
        self._attempts: dict[tuple[int, str], int] = {}
        self._issued: dict[tuple[int, str], str] = {}

    def child_id(self, context: StateContext, name: str) -> str:
        """The id of the child `name` of the current step's next attempt (a retried state counts up)."""
        key = (context.step, name)
        attempt = self._attempts.get(key, 0)
        self._attempts[key] = attempt + 1
        run_id = self._issued[key] = derived_run_id(context.run_id, self.branch, context.step, name, attempt)
        return run_id

    async def run(self, context: StateContext, request: ChildRequest) -> RunResult:
        from agentfsm.history import advance  # advance sets this class on the contexts it drives

        run_id = self.child_id(context, request.name)
        row = await self.store.find_run(run_id)
        note = ChildNote(context, request.name, run_id, reused=row is not None and row.status in FINISHED)
        await note.started_run()
        relay = [ChildRelay(context, request.name), *request.observers]
        if row is None:
            parent = advance.Parent(context.run_id, context.step, request.name)
            result = await advance.start(self.store, request.machine, request.inputs, llms=self.llms,
                                         observers=relay, run_id=run_id, recording=self.recording, parent=parent)
        elif row.status in FINISHED:
            return await note.ended(stored_result(row), row.updated_at)
        else:
            row = await self._forward(context, row)
            result = await advance.resume(self.store, row, request.machine, observers=relay,
                                          recording=self.recording)
        return await note.ended(result)

    async def _forward(self, context: StateContext, row: RunRow) -> RunRow:
        """A child waiting for an event the parent was sent (the parent waits with it): hand the event on."""
        waits_for = (row.waiting or {}).get("events") or ()
        delivery = context.mailbox.take(waits_for) if row.status == "waiting" else None
        if delivery is None:
            return row
        await self.store.add_event(row.id, delivery.name, delivery.data, now=self.recording.clock())
        return await self.store.get_run(row.id)

    async def space(self, context: StateContext, name: str, agents: Iterable[str],
                    memory: Mapping[str, Any]) -> TeamSpace:
        """The team space of the team state `name` at this step (found again when the parent resumes)."""
        from agentfsm.history.teamspace import StoredSpace

        team = derived_run_id(context.run_id, self.branch, context.step, name, "team")
        return await StoredSpace(self.store, context.run_id, team, agents, self.recording.clock).seed(memory)

    async def cancel(self, context: StateContext, name: str) -> None:
        run_id = self._issued.get((context.step, name))
        if run_id is None:  # cancelled before it started
            return
        try:
            await self.store.cancel(run_id, now=self.recording.clock())
        except (RunNotFound, Conflict):  # never started, or it finished meanwhile: nothing to give up
            pass


def stored_result(row: RunRow) -> RunResult:
    """How a finished child ended, as its run row keeps it."""
    context = StateContext(metadata={"machine": row.machine, "ended_at": row.updated_at})
    context.run_id = row.id
    return RunResult(row.id, row.status, row.output, context, row.steps, row.error,  # type: ignore[arg-type]
                     {binding: dict(totals) for binding, totals in (row.usage or {}).items()})
