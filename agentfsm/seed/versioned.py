"""`VersionedStateMachine`: a machine with a history of snapshots it can roll back, branch and switch.

It is a `StateMachine` plus a `StateHistory` (one run of a store, see `agentfsm.seed.snapshots`)
and an observer composed into its runs that snapshots the state each run starts in and each
transition it takes. Rolling back never destroys anything: it starts a new branch at the
snapshot and makes it the current one, after keeping the present as a snapshot if it differs
from the newest. `create_checkpoint` and `create_branch` are synchronous, as the seed's:
they act on the history at once and their writes reach the store with the next awaited call.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentfsm.runtime.events import RunEnded, RunPaused, StepEnded, StepStarted
from agentfsm.runtime.machine import StateMachine
from agentfsm.history.rewrite import check_branch_name
from agentfsm.seed.snapshots import StateHistory, StateSnapshot, check_point_name
from agentfsm.store.core import Store


class _SnapshotEachTransition:
    """The observer a versioned machine adds to its runs: a snapshot where a run starts and after each transition.

    Critical, as the store's recorder is: a snapshot that cannot be written stops the run.
    """

    critical = True

    def __init__(self, machine: VersionedStateMachine) -> None:
        self.machine = machine
        self.transitions: dict[str, int] = {}
        """Transitions each run in progress took since it started here (the `transition_index` of its snapshots)."""

    async def on_step_started(self, *, event: StepStarted) -> None:
        if event.run_id in self.transitions:
            return
        self.transitions[event.run_id] = 0
        history = self.machine.history
        history.record(event.state, event.data, metadata={"run_id": event.run_id, "step": event.step},
                       only_if_changed=True)  # a run continued from the newest snapshot does not repeat it
        await history.flush()

    async def on_step_ended(self, *, event: StepEnded) -> None:
        if event.next_state is None:
            return
        taken = self.transitions[event.run_id] = self.transitions.get(event.run_id, 0) + 1
        history = self.machine.history
        history.record(event.next_state, event.data, source=event.state, event=event.event or "done",
                       metadata={"version": self.machine.version, "run_id": event.run_id, "step": event.step},
                       transition_index=taken)
        await history.flush()

    def on_run_ended(self, *, event: RunEnded) -> None:
        self.transitions.pop(event.run_id, None)

    def on_pause(self, *, event: RunPaused) -> None:
        self.transitions.pop(event.run_id, None)


class VersionedStateMachine(StateMachine):
    """A machine whose state and context are snapshotted, with rollback, checkpoints and branches.

    `store`: None keeps the history in a private in-memory store; a store URL (`sqlite:///PATH`) or a
    `Store` makes it durable, readable by `agentfsm history|branches|checkpoints|diff RUN` with
    `RUN = machine.run_id`. `run_id` names a history kept before: `await machine.load()` reads it.
    One history follows one machine: run it one run at a time, or the runs' snapshots interleave.
    """

    def __init__(self, name: str, store: Store | str | None = None, *, run_id: str | None = None,
                 description: str | None = None, max_steps: int = 1000) -> None:
        super().__init__(name, description=description, max_steps=max_steps)
        self.history = StateHistory(store, run_id=run_id, machine=name)
        self.add_observer(_SnapshotEachTransition(self))

    @property
    def run_id(self) -> str:
        """The run holding the history (what `agentfsm history RUN` takes)."""
        return self.history.run_id

    @property
    def version(self) -> int:
        """How many snapshots the current branch's path holds."""
        return self.history.last_step(self.history.head) + 1

    @property
    def current_branch(self) -> str:
        return self.history.head

    @property
    def branches(self) -> list[str]:
        return self.history.branches

    async def load(self) -> None:
        """Read the history `run_id` names from its store and stand at its newest snapshot."""
        await self.history.load()
        latest = self.history.latest()
        if latest is not None:
            self._stand(latest)

    async def flush(self) -> None:
        """Write the snapshots, points and branches recorded since the last awaited call."""
        await self.history.flush()

    async def close(self) -> None:
        """Flush, then close the history's store."""
        await self.history.close()

    # -- rolling back (each a new branch; nothing is lost) -----------------------------------------------------

    async def rollback(self, steps: int = 1) -> bool:
        """Go back `steps` snapshots from where the machine stands (the present counts as one when it differs
        from the newest snapshot); never before the first. False when there is no snapshot."""
        if self.history.latest() is None:
            return False
        self._keep_present("rollback")
        return await self._go_back(self.history.head, max(0, self.history.last_step(self.history.head) - steps))

    async def rollback_to_snapshot(self, index: int) -> bool:
        """Go back to snapshot `index` of the current branch's path; False when there is none."""
        if self.history.rollback_to_snapshot(index) is None:
            return False
        self._keep_present("rollback")
        return await self._go_back(self.history.head, index)

    async def rollback_to_point(self, point_name: str) -> bool:
        """Go back to the newest rollback point of that name (on whichever branch); False when there is none."""
        checkpoint = self.history.checkpoint(point_name)
        if checkpoint is None:
            return False
        self._keep_present("rollback")
        return await self._go_back(checkpoint.branch, checkpoint.point - 1)

    async def rollback_to_state(self, state_name: str) -> bool:
        """Go back to the newest snapshot of a state on the current branch's path; False when there is none."""
        found = self.history.find_snapshot_by_state(state_name)
        if found is None:
            return False
        self._keep_present("rollback")
        return await self._go_back(self.history.head, found.index)

    async def _go_back(self, branch: str, index: int) -> bool:
        """A new branch after snapshot `index` of `branch`'s path, made the current one; the machine stands there."""
        self.history.fork(self.history.free_rollback_name(), branch, index + 1, make_head=True)
        await self.history.flush()
        latest = self.history.latest()
        assert latest is not None  # the new branch starts right after an existing snapshot
        self._stand(latest)
        return True

    # -- checkpoints and branches ---------------------------------------------------------------------------

    def create_checkpoint(self, name: str) -> bool:
        """Name where the machine stands as a rollback point (snapshotting it first if it changed since the
        newest snapshot). Synchronous; written by the next awaited call."""
        check_point_name(name)  # before anything is recorded
        self._keep_present("checkpoint")
        return self.history.create_rollback_point(name)

    def create_branch(self, branch_name: str) -> bool:
        """A branch at where the machine stands (snapshotted first if it changed); the machine stays on its
        current branch. False when the name is taken. Synchronous; written by the next awaited call."""
        check_branch_name(branch_name)  # before anything is recorded
        if branch_name in self.history.branches:
            return False
        self._keep_present("branch")
        head = self.history.head
        self.history.fork(branch_name, head, self.history.last_step(head) + 1, make_head=False)
        return True

    async def switch_branch(self, branch_name: str) -> bool:
        """Keep the present on the current branch (as a snapshot, if it changed), then stand at the newest
        snapshot of another branch, which becomes the current one. False when there is no such branch."""
        if branch_name not in self.history.branches:
            return False
        self._keep_present("switch")
        self.history.switch(branch_name)
        await self.history.flush()
        latest = self.history.latest()
        assert latest is not None  # every branch starts after a snapshot
        self._stand(latest)
        return True

    def get_history_summary(self) -> dict[str, Any]:
        """The seed's summary of the current branch's path, with the run, branches and rollback points."""
        path = self.history.get_state_path()
        visits = Counter(state for state in path if state is not None)
        return {
            "run_id": self.run_id,
            "branch": self.history.head,
            "total_transitions": len(path),
            "unique_states": len(visits),
            "current_version": self.version,
            "branches": self.history.branches,
            "checkpoints": [checkpoint.name for checkpoint in self.history.checkpoints],
            "state_visits": dict(visits),
            "path_summary": path[-10:],
            "pending_writes": self.history.pending_writes,
        }

    # -- standing somewhere -------------------------------------------------------------------------------------

    def _keep_present(self, reason: str) -> None:
        """Snapshot where the machine stands unless the newest snapshot already holds it: a rollback or a switch
        must not lose what changed since."""
        self.history.record(self.current_state, self.context.data, metadata={"kept_before": reason},
                            transition_index=len(self.context.history), only_if_changed=True)

    def _stand(self, snapshot: StateSnapshot) -> None:
        """Put the machine where a snapshot is: `current_state`, and a fresh copy of its context.

        The context's `history` starts empty (the way there is the branch's path), and the context
        stands at the snapshot's state: `await machine.start(machine.context)` continues from it.
        No callbacks run: nothing is entered or left, the machine is put back.
        """
        self.current_state = snapshot.state_name
        self.context = snapshot.context
