"""`StatePersistence`: a machine's state and context kept in a store, found again by a name of the caller's.

Two vocabularies over one store:

- the seed's: `save_state(machine_id, machine)`, `load_state`, `save_checkpoint`, `load_checkpoint`,
  `list_checkpoints`. A machine id names one run of the store (`run_id_for(machine_id)`): the first save
  creates it, each later save records a step of it (state `None`, event `save`, the machine's
  `current_state` as the next state, the context as a patch of the one before), and a checkpoint names
  the point just after a save. Nothing is overwritten: `agentfsm history`, `checkpoints` and `diff` read
  every save, and `agentfsm.Runs` can resume the run with the machine.
- the context API: `save(machine, context) -> run_id` stores a context as a paused run of its own and
  `load(run_id)` gives it back, ready for `machine.run(context=...)`.

`StatePersistence(FOLDER)` keeps its store in `FOLDER/runs.db` (the folder is created); a store URL
(`sqlite:///PATH`, `memory://NAME`) or a `Store` is used as it is; no argument means the default store.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

from agentfsm.bindings.known_secrets import known_secrets
from agentfsm.history.advance import context_at, release_quietly
from agentfsm.history.deltas import ContextTracker
from agentfsm.history.errors import RunRefused
from agentfsm.history.leases import LEASE_SECONDS, new_owner, owner_is_dead
from agentfsm.history.lineage import Position, lineage, position, step_at
from agentfsm.history.recorder import redacted
from agentfsm.history.rewrite import check_checkpoint_name
from agentfsm.history.tally import Tally, tally_due
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.store import open_store
from agentfsm.store.base import FINISHED, CheckpointRow, Conflict, RunRow, StepRow, StoreError
from agentfsm.store.core import Store
from agentfsm.store.rules import finished_phrase

STORE_FILE = "runs.db"
"""The store file `StatePersistence(folder)` keeps in its folder."""
SAVE_EVENT = "save"
"""The event of a step that records a save (no state ran in it)."""

_SLUG_LENGTH = 40
_HASH_CHARACTERS = 12
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "abcdefghjkmnpqrstvwxyz0123456789")


def run_id_for(machine_id: str) -> str:
    """The run a machine id names: its readable part, then a hash of the whole id (`test-machine-k3v…`).

    The readable part is the id in lower case with every run of other characters than `a-z0-9` made one
    `-`, cut at 40 characters (`m` when nothing is left); the 12 characters after it are base32 of the
    SHA-256 of the id's exact text, so ids differing only in case, punctuation or length past 40 name
    different runs. Any text works, even one that is not valid UTF-8 (a lone surrogate from a command line).
    A run id made by agentfsm has no `-`, so no machine id names a run started any other way.
    """
    slug = _NOT_SLUG.sub("-", machine_id.lower()).strip("-")[:_SLUG_LENGTH].strip("-") or "m"
    digest = hashlib.sha256(machine_id.encode("utf-8", "surrogatepass")).digest()
    tail = base64.b32encode(digest).decode("ascii").translate(_CROCKFORD)[:_HASH_CHARACTERS]
    return f"{slug}-{tail}"


def checkpoint_version(candidate: str, name: str) -> int | None:
    """Which save of checkpoint `name` a stored checkpoint is: `name` is 1, `name#2` is 2...; None if neither."""
    if candidate == name:
        return 1
    head, separator, number = candidate.rpartition("#")
    if separator and head == name and number.isdigit() and not number.startswith("0") and int(number) >= 2:
        return int(number)
    return None


def store_for(where: Store | str | os.PathLike[str] | None) -> Store:
    """The store a `StatePersistence` argument names (see the module's docstring)."""
    if where is None or isinstance(where, Store):
        return open_store(None) if where is None else where
    text = os.fspath(where)
    if "://" in text:
        return open_store(text)
    path = Path(text).expanduser()
    if path.is_file():  # a store file named by its path, as `open_store` takes it
        return open_store(f"sqlite:///{path.absolute()}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot keep a store in {path}: {exc.strerror or exc}") from None
    return open_store(f"sqlite:///{(path / STORE_FILE).absolute()}")


class StatePersistence:
    """Save and load machines and contexts in a store: a folder, a store URL, a `Store`, or the default store."""

    def __init__(self, store: Store | str | os.PathLike[str] | None = None) -> None:
        self.store: Store = store_for(store)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> StatePersistence:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the seed's vocabulary: a machine id names one run ------------------------------------------------

    @staticmethod
    def run_id(machine_id: str) -> str:
        """The run id under which `machine_id` is kept (what `agentfsm history RUN` takes)."""
        return run_id_for(machine_id)

    async def stored_run(self, machine_id: str) -> RunRow | None:
        """The run `machine_id` names, or None when it was never saved."""
        return await self.store.find_run(run_id_for(machine_id))

    async def save_state(self, machine_id: str, machine: StateMachine) -> None:
        """Record where the machine stands (`standing(machine)`) and `machine.context.data` as the next step of
        the machine id's run."""
        await self._save(machine_id, machine, None)

    async def save_checkpoint(self, machine_id: str, checkpoint_name: str, machine: StateMachine) -> str:
        """Save the machine (as `save_state`) and name the point just after that save; returns the name given.

        A name saved before is not overwritten: the new point is `NAME#2` (then `#3`...), and
        `load_checkpoint(NAME)` loads the newest. Names that read as a point (a number, `start`, `head`,
        `state:...`) or hold `@` are refused, so `agentfsm rollback RUN --to NAME` finds the checkpoint.
        """
        check_checkpoint_name(checkpoint_name)
        return await self._save(machine_id, machine, checkpoint_name) or checkpoint_name

    async def load_state(self, machine_id: str, machine: StateMachine) -> bool:
        """Set `machine.current_state` and `machine.context` to the machine id's latest save; False (changing
        nothing) when it was never saved.

        The loaded context stands where the save was: `await machine.start(machine.context)` continues from
        that state. Its `history` is empty: the steps that led there are in the store.
        """
        run = await self.stored_run(machine_id)
        if run is None:
            return False
        where = await position(self.store, run.id, await self.store.branches(run.id), run.head, run.steps + 1)
        _stand(machine, run.id, where)
        return True

    async def load_checkpoint(self, machine_id: str, checkpoint_name: str, machine: StateMachine) -> bool:
        """Set the machine to the newest save of a checkpoint; False (changing nothing) when there is none.

        Loading reads only: the run's head stays where it is (roll the run back with `agentfsm.Runs` or
        `AutoSaveStateMachine.restore_checkpoint` to continue it from the checkpoint).
        """
        run = await self.stored_run(machine_id)
        found = None if run is None else await self.checkpoint(run.id, checkpoint_name)
        if run is None or found is None:
            return False
        where = await position(self.store, run.id, await self.store.branches(run.id), found.branch, found.point)
        _stand(machine, run.id, where)
        return True

    async def list_checkpoints(self, machine_id: str) -> list[dict[str, Any]]:
        """The machine id's checkpoints, newest first: name, timestamp, the state saved, and where (branch, step)."""
        run = await self.stored_run(machine_id)
        if run is None:
            return []
        branches = await self.store.branches(run.id)
        listed = []
        for checkpoint in reversed(await self.store.checkpoints(run.id)):
            before = await step_at(self.store, run.id, lineage(branches, checkpoint.branch), checkpoint.point - 1)
            listed.append({"name": checkpoint.name, "timestamp": checkpoint.created_at,
                           "state": None if before is None else before.next_state,
                           "branch": checkpoint.branch, "step": checkpoint.point, "run_id": run.id})
        return listed

    async def checkpoint(self, run_id: str, name: str) -> CheckpointRow | None:
        """The newest save of checkpoint `name` of a run (`name`, `name#2`...), or None."""
        versions = [(version, row) for row in await self.store.checkpoints(run_id)
                    if (version := checkpoint_version(row.name, name)) is not None]
        return max(versions, key=lambda pair: pair[0])[1] if versions else None

    async def _save(self, machine_id: str, machine: StateMachine, checkpoint: str | None) -> str | None:
        run_id = run_id_for(machine_id)
        run = await self.stored_run(machine_id)
        if run is None:
            try:
                return await self._create(run_id, machine, checkpoint)
            except Conflict:  # another process saved it first: this save follows theirs
                run = await self.store.get_run(run_id)
        if run.status in FINISHED:
            raise RunRefused(f"run {run.id} of machine id '{machine_id}' has {finished_phrase(run.status)}: its end is not "
                             "a point to continue from, so nothing more is saved to it (roll it back to a "
                             "checkpoint, or save under another machine id)")
        return await self._append(run, machine, checkpoint)

    async def _create(self, run_id: str, machine: StateMachine, checkpoint: str | None) -> str | None:
        """The first save: a paused run whose step 0 holds the context and names the state as the next to run."""
        now = self.store.clock()
        text = ContextTracker(machine.context.data).snapshot()
        first = StepRow("main", 0, None, SAVE_EVENT, None, standing(machine), started_at=now,
                        context_kind="snapshot", context=private_context(text), tally=Tally().as_json())
        run = RunRow(id=run_id, machine=machine.name, digest=None, path=None, status="paused", created_at=now,
                     updated_at=now)
        points = [CheckpointRow(checkpoint, "main", 1, now)] if checkpoint else []
        await self.store.create_run(run, None, first, points)
        return checkpoint

    async def _append(self, run: RunRow, machine: StateMachine, checkpoint: str | None) -> str | None:
        """A later save: one step, under the run's lease, taken only if nobody moved the run since it was read."""
        where = await position(self.store, run.id, await self.store.branches(run.id), run.head, run.steps + 1)
        # computed before the lease is taken: a context that is not JSON is refused with nothing written
        kind, text = ContextTracker(where.data, since=where.cost).change(machine.context.data)
        step = run.steps + 1
        now = self.store.clock()
        tally = Tally(where.visits, where.usage, where.bindings).as_json() if tally_due(
            step, kind == "snapshot") else None
        row = StepRow(run.head, step, None, SAVE_EVENT, None, standing(machine), started_at=now,
                      context_kind=kind, context=None if text is None else private_context(text), tally=tally)
        points = [CheckpointRow(checkpoint, run.head, step + 1, now)] if checkpoint else []
        owner = new_owner()
        dead = {run.lease_owner} if run.lease_owner and owner_is_dead(run.lease_owner) else set()
        await self.store.acquire(run.id, owner, now + LEASE_SECONDS, now=now, takeover=dead, expect=run)
        try:
            names = await self.store.commit_step(run.id, owner, now + LEASE_SECONDS, row, points, None)
        except BaseException:
            await release_quietly(self.store, run.id, owner, run.status)  # as it was: nothing was recorded
            raise
        await self.store.release(run.id, owner, status="paused")
        return names[0] if names else None

    # -- the context API -------------------------------------------------------------------------------------

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


def standing(machine: StateMachine) -> str | None:
    """The state a save records: `machine.current_state`, or, for a machine no run has moved yet, its initial
    state (where a run of it starts), so a saved machine can be resumed."""
    return machine.current_state if machine.current_state is not None else machine.initial


def _stand(machine: StateMachine, run_id: str, where: Position) -> None:
    """Put the seed's conveniences (`current_state`, `context`) where a stored point says."""
    machine.context = context_at(machine, run_id, where)
    ended = where.state is None and where.last is not None and where.last.step > 0
    # a run that ended was last in the state whose step ended it, as `start()` leaves `current_state`
    machine.current_state = where.last.state if ended and where.last is not None else where.state


def private_context(text: str) -> str:
    """A context's JSON text as the store may keep it: a secret this process read never reaches the store."""
    return redacted(text) if known_secrets() else text


async def _stored(store: Store, run_id: str) -> bool:
    return await store.find_run(run_id) is not None
