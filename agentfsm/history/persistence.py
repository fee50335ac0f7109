"""`StatePersistence`: save a context of a machine built in Python, and load it back later.

The seed's save/load, kept for code that drives a machine by hand: `save` stores the
context as a paused run (its data and the state it is about to enter), `load` returns a
context that `machine.run(context=...)` continues. For runs recorded step by step, use
`Runs.start` and `Runs.resume`.
"""

from __future__ import annotations

import time

from agentfsm.history.advance import context_at
from agentfsm.history.deltas import ContextTracker
from agentfsm.history.leases import new_owner
from agentfsm.history.lineage import position
from agentfsm.history.tally import Tally
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.store import open_store
from agentfsm.store.base import RunNotFound, RunRow, StepRow
from agentfsm.store.core import Store


class StatePersistence:
    """Save and load contexts in a store (`sqlite:///PATH`, or the default store)."""

    def __init__(self, store: Store | str | None = None) -> None:
        self.store: Store = store if store is not None and not isinstance(store, str) else open_store(store)

    async def save(self, machine: StateMachine, context: StateContext) -> str:
        """Store `context` (its data, and `context.state` or the initial state as the next to run); returns a run id.

        The id is the context's own run id the first time; each later save of it is stored under a new id.
        """
        run_id = context.run_id or new_run_id()
        if await _stored(self.store, run_id):  # saved before: this save is a snapshot of its own
            run_id = new_run_id()
        owner = new_owner()
        now = time.time()
        state = context.state or machine.initial
        run = RunRow(id=run_id, machine=machine.name, digest=None, path=None, status="running", created_at=now,
                     updated_at=now, lease_owner=owner, lease_expires=now + 60)
        tally = Tally(dict(context.visits), context.usage, context.bindings).as_json()
        first = StepRow("main", 0, None, next_state=state, started_at=now, context_kind="snapshot",
                        context=ContextTracker(context.data).snapshot(), tally=tally)
        await self.store.create_run(run, None, first, [])
        await self.store.release(run_id, owner, status="paused")
        context.run_id = run_id
        return run_id

    async def load(self, run_id: str) -> StateContext:
        """The context saved under `run_id` (or where its recorded run stands now), ready to run again."""
        run = await self.store.get_run(run_id)
        where = await position(self.store, run.id, await self.store.branches(run.id), run.head, run.steps + 1)
        machine = StateMachine(run.machine)
        context = context_at(machine, run.id, where)
        return context

    async def close(self) -> None:
        await self.store.close()


async def _stored(store: Store, run_id: str) -> bool:
    try:
        return (await store.get_run(run_id)).id == run_id  # a prefix of a longer id is not this id
    except RunNotFound:
        return False
