"""`AutoSaveStateMachine`: a machine whose runs are recorded step by step under a machine id, and resume after a crash.

It is a `StateMachine` with `start()` going through `agentfsm.Runs`: the first `start()` of a
machine id records a durable run (`StatePersistence.run_id(machine_id)`), each step committed
before the next state starts by the store's recorder, an observer the durable layer composes
into the run; a later `start()` (another process, after a crash or Ctrl-C) resumes that run
from its last recorded step. Nothing here subclasses another seed class or knows the store's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentfsm.history.errors import RunRefused
from agentfsm.history.persistence import StatePersistence
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.service.runs import Runs
from agentfsm.store import rules
from agentfsm.store.base import FINISHED


class AutoSaveStateMachine(StateMachine):
    """A machine saved on every transition under `machine_id` in `persistence`'s store; `start()` resumes it.

    A machine id names one run: once that run has ended, `start()` does not run it again but gives
    its final context (roll it back with `restore_checkpoint`, or use a new machine id, to run more).
    `save_interval` is the seed's periodic save; it is kept for its signature and unused, since every
    step is durable before the next one starts, which leaves nothing for a timer to save.
    """

    def __init__(self, name: str, machine_id: str, persistence: StatePersistence, save_interval: float = 10,
                 *, description: str | None = None, max_steps: int = 1000) -> None:
        super().__init__(name, description=description, max_steps=max_steps)
        self.machine_id = machine_id
        self.persistence = persistence
        self.save_interval = save_interval
        self._driving = False

    @property
    def run_id(self) -> str:
        """The run this machine id names in the store (what `agentfsm history RUN` takes)."""
        return self.persistence.run_id(self.machine_id)

    def _runs(self) -> Runs:
        return Runs(self.persistence.store)  # never closed here: the store is the persistence's

    async def start(self, context: StateContext | Mapping[str, Any] | None = None) -> StateContext:
        """Resume the machine id's run from its last recorded step, or start it (from `context`) if there is none.

        Returns the final context, as `StateMachine.start` does. When a saved run exists, its data wins
        over `context`. A run another live process is advancing is refused (`LeaseHeld`).
        """
        run = await self.persistence.stored_run(self.machine_id)
        if run is not None and run.status in FINISHED:
            await self.persistence.load_state(self.machine_id, self)
            return self.context
        self._driving = True
        try:
            if run is None:
                result = await self._runs().start(self, self._start_data(context), run_id=self.run_id)
            else:
                result = await self._runs().resume(run.id, machine=self)
        finally:
            self._driving = False
        self.context = result.context
        self.current_state = result.context.state
        return result.context

    def _start_data(self, context: StateContext | Mapping[str, Any] | None) -> dict[str, Any]:
        """The data a new run starts from, chosen as `StateMachine.start` chooses its context."""
        if isinstance(context, StateContext):
            return dict(context.data)
        if context is not None:
            return dict(context)
        unused = self.context.state is None and self.context.step == 0
        return dict(self.context.data) if unused else {}

    async def create_checkpoint(self, name: str) -> str:
        """Name where the machine stands; returns the name given (`NAME#2`... when `NAME` was taken).

        From inside a run (a state or callback of this machine's `start()`), the point named is the
        one the running step started from, the last the store holds; between runs, the machine is
        saved first (`StatePersistence.save_checkpoint`).
        """
        if not self._driving:
            return await self.persistence.save_checkpoint(self.machine_id, name, self)
        taken = {checkpoint.name for checkpoint in await self.persistence.store.checkpoints(self.run_id)}
        free = rules.free_checkpoint_name(name, None, taken)
        return (await self._runs().checkpoint(self.run_id, free)).name

    async def restore_checkpoint(self, name: str) -> bool:
        """Roll the run back to the newest save of a checkpoint and stand the machine there; False if there is none.

        The rollback is a new branch of the run, made its head (the branch it was on stays readable),
        so the next `start()` continues from the checkpoint.
        """
        if self._driving:
            raise RunRefused(f"machine id '{self.machine_id}' is running: restore a checkpoint after start() returns")
        run = await self.persistence.stored_run(self.machine_id)
        found = None if run is None else await self.persistence.checkpoint(run.id, name)
        if run is None or found is None:
            return False
        await self._runs().rollback(run.id, found.name)
        return await self.persistence.load_state(self.machine_id, self)
