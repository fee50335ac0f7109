"""Durable runs: start, resume, send events, roll back, branch and read runs kept in a store.

    >>> import asyncio, agentfsm
    >>> runs = agentfsm.Runs("sqlite:///" + str(tmp_path / "runs.db"))  # doctest: +SKIP
    >>> result = asyncio.run(runs.start("machines/hello.yaml", {"name": "Ada"}))  # doctest: +SKIP

`Runs` records a run through an observer (`StoreRecorder`); the step loop itself never
sees the store. Every method that changes a run is checked first and changes nothing
when the request is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from agentfsm.compiler.build import compile_machine
from agentfsm.history.deltas import SNAPSHOT_EVERY, ContextNotJSON, ContextTracker
from agentfsm.history.diff import RunDiff, diff_positions
from agentfsm.history.leases import LEASE_SECONDS, Heartbeat, new_owner, owner_is_dead
from agentfsm.history.lineage import Position, branch_steps, lineage, position
from agentfsm.history.points import Point, is_point_syntax, resolve_point
from agentfsm.history.recorder import UNCUT, CheckpointNamer, StoreRecorder, recordable, redacted
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.spec.loader import LoadedSpec, load_spec, load_spec_text
from agentfsm.spec.overrides import apply_llm_overrides
from agentfsm.store import open_store
from agentfsm.store.base import (
    FINISHED,
    BranchRow,
    CheckpointRow,
    Conflict,
    LeaseLost,
    RunFilter,
    RunRow,
    StepRow,
    Store,
    lease_live,
)


class RunRefused(Conflict):
    """A request that does not fit the run as it is (resume a finished run, roll back to an unknown point...)."""


Interrupted = Literal["paused", "running"]
"""How a run whose advance was interrupted (Ctrl-C, a cancelled task) is left once it took a step:
`paused` waits for a person's `resume`; `running` with no owner is continued by the next worker at once.
A run interrupted before it took any step goes back to how it was (a wait keeps waiting, with its timer)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Rollback:
    """Where a rollback put the run's head: a new branch starting at `point`, about to enter `state`."""

    run_id: str
    branch: str
    point: int
    state: str | None


def _compile(loaded: LoadedSpec, llms: Mapping[str, str]) -> StateMachine:
    if llms:
        loaded = dataclasses.replace(loaded, spec=apply_llm_overrides(loaded.spec, llms))
    return compile_machine(loaded)


class Runs:
    """Runs kept in one store: start them, advance them, and read or rewrite their history without losing any."""

    def __init__(self, store: Store | str | None = None, *, lease_seconds: float = LEASE_SECONDS,
                 snapshot_every: int = SNAPSHOT_EVERY, clock: Callable[[], float] = time.time) -> None:
        self.store: Store = store if store is not None and not isinstance(store, str) else open_store(store)
        self.lease_seconds = lease_seconds
        self.snapshot_every = snapshot_every
        self.clock = clock

    def close(self) -> None:
        self.store.close()

    # -- advancing runs -------------------------------------------------------------------------

    async def start(self, machine: StateMachine | str | Path, inputs: Mapping[str, Any] | None = None, *,
                    llms: Mapping[str, str] | None = None, observers: Iterable[object] = (),
                    run_id: str | None = None, on_interrupt: Interrupted = "paused") -> RunResult:
        """Start a durable run: every step is committed to the store before the next state starts."""
        llms = dict(llms or {})
        if not isinstance(machine, StateMachine):
            machine = _compile(load_spec(machine), llms)
        machine.check()
        context = machine.new_context(inputs)  # bad inputs are refused before anything is stored
        context.run_id = run_id or new_run_id()
        tracker = ContextTracker(context.data, snapshot_every=self.snapshot_every)
        owner = new_owner()
        now = self.clock()
        source: LoadedSpec | None = machine.source if isinstance(machine.source, LoadedSpec) else None
        run = RunRow(
            id=context.run_id, machine=machine.name, digest=None if source is None else source.digest,
            path=None if source is None else str(source.path.resolve()), status="running", head="main",
            created_at=now, updated_at=now, inputs=recordable(dict(inputs or {}), UNCUT), llms=llms,
            lease_owner=owner, lease_expires=now + self.lease_seconds,
        )
        first = StepRow("main", 0, None, started_at=now, next_state=machine.initial, context_kind="snapshot",
                        context=redacted(tracker.snapshot()))
        namer = CheckpointNamer(_flagged(machine), (), "main", self.clock)
        self.store.create_run(run, None if source is None else source.text, first,
                              namer.reached(machine.initial, 1))
        return await self._advance(machine, context, run.id, owner, "main", tracker, namer, observers,
                                   idle_status=on_interrupt, on_interrupt=on_interrupt)

    async def resume(self, run_id: str, *, machine: StateMachine | str | Path | None = None,
                     llms: Mapping[str, str] | None = None, observers: Iterable[object] = (),
                     on_interrupt: Interrupted = "paused") -> RunResult:
        """Continue a run from its head: after a crash, a wait, a pause or a rollback.

        The run resumes with the machine it started with (kept in the store). `machine`
        opts into another one (an edited file) once the state the run is in exists in it.
        `on_interrupt` says how a run interrupted after it took a step is left (see `Interrupted`).
        """
        run = self.store.get_run(run_id)
        _refuse_finished(run)
        resolved = self._machine_for(run, machine, llms)
        return await self._resume(run, resolved, observers, on_interrupt)

    async def _resume(self, run: RunRow, resolved: tuple[StateMachine, LoadedSpec | None], observers: Iterable[object],
                      on_interrupt: Interrupted) -> RunResult:
        machine, replaced = resolved
        # everything is read and checked before the lease is taken, so that a refused resume writes nothing;
        # `acquire(expect=run)` then makes sure nobody advanced, finished or cancelled the run meanwhile
        branches = self.store.branches(run.id)
        where = position(self.store, run.id, branches, run.head, run.steps + 1)
        ended = where.state is None and where.last is not None and where.last.step > 0
        if not ended:
            _check_resumable(run, machine, where)
        owner = new_owner()
        now = self.clock()
        taken_over = {run.lease_owner} if run.lease_owner and owner_is_dead(run.lease_owner) else set()
        before = run
        # where a run goes back to when this resume takes no step: a wait keeps waiting (with its timer), a
        # paused run stays paused; a run taken over from a dead process is handed on like an interrupted one
        idle_status = "waiting" if run.status == "waiting" or run.waiting else (
            "paused" if run.status == "paused" else on_interrupt)
        run = self.store.acquire(run.id, owner, now + self.lease_seconds, now=now, takeover=taken_over,
                                 status="running", expect=before)
        if ended:  # its process died between recording the last step and recording the end
            return self._finish_ended(run.id, owner, machine, where)
        try:  # `where` still holds: acquire(expect=...) refused a run that moved since it was read
            if replaced is not None:
                self.store.set_machine(run.id, owner, replaced.digest, replaced.text, str(replaced.path.resolve()))
            context = _context_at(machine, run.id, where)
            for event in self.store.pending_events(run.id):
                context.mailbox.deliver(event.name, event.data, event.id)
            # the wait's timer runs on whatever happened to the resumes before this one (a crash, Ctrl-C)
            if before.waiting and before.waiting.get("state") == where.state:
                context.mailbox.deadline = before.waiting.get("deadline")
            tracker = ContextTracker(where.data, since=where.cost, snapshot_every=self.snapshot_every)
            taken = {checkpoint.name for checkpoint in self.store.checkpoints(run.id)}
            namer = CheckpointNamer(_flagged(machine), taken, run.head, self.clock)
        except BaseException:
            self.store.release(run.id, owner, status=idle_status)
            raise
        return await self._advance(machine, context, run.id, owner, run.head, tracker, namer, observers,
                                   idle_status=idle_status, on_interrupt=on_interrupt)

    def _finish_ended(self, run_id: str, owner: str, machine: StateMachine, where: Position) -> RunResult:
        """Record the end of a run whose last step ended it, as the loop would have."""
        last = where.last
        assert last is not None
        failed = last.error is not None or last.event == "fail"
        status = "failed" if failed else "succeeded"
        output = None if failed else last.result
        self.store.end_run(run_id, owner, status, output=output, error=last.error)
        context = _context_at(machine, run_id, where)
        return RunResult(run_id, status, output, context, where.step, last.error)

    async def send(self, run_id: str, event: str, data: Any = None, *, resume: bool = True,
                   machine: StateMachine | str | Path | None = None, llms: Mapping[str, str] | None = None,
                   observers: Iterable[object] = ()) -> RunResult | None:
        """Deliver an event to a run waiting for it; continue the run unless `resume` is false.

        The machine is made ready first (as `resume` takes it), so an event that could not be acted on
        is refused, not left behind in the store.
        """
        run = self.store.get_run(run_id)
        # a run that is not waiting is refused by add_event, with the reason: no need to compile its machine
        resolved = self._machine_for(run, machine, llms) if resume and run.status == "waiting" else None
        self.store.add_event(run.id, event, data, now=self.clock())
        if resolved is None:
            return None
        return await self._resume(self.store.get_run(run.id), resolved, observers, "paused")

    async def _advance(self, machine: StateMachine, context: StateContext, run_id: str, owner: str, branch: str,
                       tracker: ContextTracker, namer: CheckpointNamer, observers: Iterable[object], *,
                       idle_status: str, on_interrupt: Interrupted) -> RunResult:
        heartbeat = Heartbeat(self.store, run_id, owner, seconds=self.lease_seconds, clock=self.clock)
        context.run_id = run_id
        recorder = StoreRecorder(self.store, context, owner, branch, tracker, namer, heartbeat)
        heartbeat.start()
        try:
            return await machine.run(context=context, observers=[recorder, *observers], run_id=run_id)
        except LeaseLost:
            run = self.store.get_run(run_id)
            if run.status != "cancelled":
                raise
            # the step in flight (if any) was refused: the run's steps are the ones the store kept
            return RunResult(run_id, "cancelled", None, context, run.steps)
        except ContextNotJSON as exc:
            error = {"type": "context.not_json", "message": str(exc), "state": context.state}
            self.store.end_run(run_id, owner, "failed", error=error)
            return RunResult(run_id, "failed", None, context, context.step - 1, error)
        except BaseException as exc:
            # interrupted (Ctrl-C, a cancelled task) or a failing hook: the last committed step stands
            try:
                self.store.release(run_id, owner, status=_left_as(exc, recorder.committed, idle_status, on_interrupt))
            except Exception:  # noqa: BLE001, S110 - the original error matters more; the lease will expire
                pass
            raise
        finally:
            await heartbeat.stop()

    def _machine_for(self, run: RunRow, machine: StateMachine | str | Path | None,
                     llms: Mapping[str, str] | None) -> tuple[StateMachine, LoadedSpec | None]:
        """The machine to resume with, and the new source when the caller swaps in an edited machine file."""
        overrides = {**run.llms, **(llms or {})}
        if isinstance(machine, StateMachine):
            return machine, None
        if machine is not None:
            loaded = load_spec(machine)
            return _compile(loaded, overrides), (loaded if loaded.digest != run.digest else None)
        text = self.store.source(run.digest) if run.digest else None
        if text is None:
            raise RunRefused(f"run {run.id} was started from a machine built in Python; "
                             "pass that machine to resume it: Runs.resume(run_id, machine=...)")
        return _compile(load_spec_text(text, run.path or f"{run.machine}.yaml"), overrides), None

    # -- rewriting history ----------------------------------------------------------------------

    def rollback(self, run_id: str, to: str | int, *, branch: str | None = None) -> Rollback:
        """Start a new branch at a point (a checkpoint name, a step number, `state:NAME`) and make it the head.

        Nothing is deleted: the branch the run was on stays readable.
        """
        run = self.store.get_run(run_id)
        branches = self.store.branches(run.id)
        point = resolve_point(self.store, run, branches, str(to))
        steps = branch_steps(self.store, run.id, lineage(branches, point.branch), point.point - 1)
        if len(steps) < point.point or steps[-1].next_state is None:
            raise RunRefused(f"{point.label} is the end of branch '{point.branch}' of run {run.id}: "
                             "nothing runs from there")
        if branch is not None and not _plain_name(branch):
            raise RunRefused(f"'{branch}' cannot name a branch: use a name with no '@' and no surrounding spaces")
        name = branch or _next_rollback_name(branches)
        if any(existing.name == name for existing in branches):
            raise RunRefused(f"run {run.id} already has a branch '{name}'")
        self.store.create_branch(run.id, BranchRow(name, point.branch, point.point, self.clock()), now=self.clock())
        return Rollback(run.id, name, point.point, steps[-1].next_state)

    async def rollback_and_resume(self, run_id: str, to: str | int, *, branch: str | None = None,
                                  llms: Mapping[str, str] | None = None, observers: Iterable[object] = ()
                                  ) -> tuple[Rollback, RunResult]:
        """`rollback`, then `resume` at once; the machine is made ready first, so a rollback that could not
        go on (a module that no longer imports...) is refused before the branch is made."""
        machine = self.machine(run_id, llms=llms)
        made = self.rollback(run_id, to, branch=branch)
        return made, await self.resume(made.run_id, machine=machine, observers=observers)

    def machine(self, run_id: str, *, llms: Mapping[str, str] | None = None) -> StateMachine:
        """The machine a resume of this run would use (its stored source, with its `--llm` overrides).

        Raises what loading it raises (a module that no longer imports...), so a caller can check a run
        can go on before changing anything."""
        run = self.store.get_run(run_id)
        return self._machine_for(run, None, llms)[0]

    def create_branch(self, run_id: str, name: str) -> Rollback:
        """A new branch at the run's current point, made the head (the old branch keeps its place)."""
        run = self.store.get_run(run_id)
        return self.rollback(run.id, run.steps + 1, branch=name)

    def switch_branch(self, run_id: str, name: str) -> RunRow:
        """Make an existing branch the head again; the run is `paused` there unless that branch had ended."""
        run = self.store.get_run(run_id)
        branches = self.store.branches(run.id)
        steps = branch_steps(self.store, run.id, lineage(branches, name))
        if name == run.head:  # switching would only drop what the run waits for (its events, its timer)
            raise RunRefused(f"branch '{name}' is already the head of run {run.id}")
        last = steps[-1]
        if last.step > 0 and last.next_state is None:  # that branch had ended: it ends the same way again
            failed = last.error is not None or last.event == "fail"
            return self.store.switch_branch(run.id, name, "failed" if failed else "succeeded", last.step,
                                            now=self.clock(), output=None if failed else last.result,
                                            error=last.error)
        return self.store.switch_branch(run.id, name, "paused", last.step, now=self.clock())

    def checkpoint(self, run_id: str, name: str) -> CheckpointRow:
        """Name the run's current point (just before its next step)."""
        run = self.store.get_run(run_id)
        if not _plain_name(name) or is_point_syntax(name):
            raise RunRefused(f"'{name}' cannot name a checkpoint: use a name that is not a number, 'start' or "
                             "'head', does not start with 'state:', has no '@' and no surrounding spaces")
        checkpoint = CheckpointRow(name, run.head, run.steps + 1, self.clock())
        self.store.add_checkpoint(run.id, checkpoint)
        return checkpoint

    def cancel(self, run_id: str) -> RunRow:
        """Stop a run for good; a process advancing it stops at its next step."""
        run = self.store.get_run(run_id)
        return self.store.cancel(run.id, now=self.clock())

    def prune(self, *, older_than: float | None = None, keep_last: int | None = None,
              statuses: Iterable[str] = (), dry_run: bool = False) -> list[RunRow]:
        """Delete finished runs (or runs with the given statuses) not updated for `older_than` seconds, keeping
        the newest `keep_last` of them; with neither limit, runs older than 30 days. Returns what was (or would
        be) deleted; raises RunRefused when nothing matches. Runs a live process holds are never deleted."""
        chosen = tuple(statuses) or tuple(sorted(FINISHED))
        if older_than is None and keep_last is None:
            older_than = 30 * 86400.0
        now = self.clock()
        matching = self.store.list_runs(RunFilter(chosen))
        kept = {run.id for run in matching[:keep_last]} if keep_last is not None else set()
        cutoff = None if older_than is None else now - older_than
        dead = {run.lease_owner for run in matching if run.lease_owner and owner_is_dead(run.lease_owner)}
        doomed = [
            run for run in matching
            if run.id not in kept and (cutoff is None or run.updated_at < cutoff)
            and not (lease_live(run.lease_owner, run.lease_expires, now) and run.lease_owner not in dead)
        ]
        if not doomed:
            which = f"no {'/'.join(chosen)} run"
            if cutoff is not None:
                which += f" left untouched for {_days(older_than or 0)}"
            if keep_last is not None:
                which += f" beyond the newest {keep_last}"
            raise RunRefused(f"nothing to prune: {which}")
        if not dry_run:
            # checked again as they are deleted: a run revived or advanced since it was listed is kept
            deleted = set(self.store.delete_runs([run.id for run in doomed], RunFilter(chosen, updated_before=cutoff),
                                                 now=self.clock(), takeover=dead))
            if not deleted:
                raise RunRefused("nothing to prune: the runs that matched changed meanwhile (resumed or rolled back)")
            doomed = [run for run in doomed if run.id in deleted]
        return doomed

    # -- reading --------------------------------------------------------------------------------

    def open(self, run_id: str) -> RunHandle:
        """A handle on one run (`rollback(steps)`, `rollback_to_point`, `create_branch`, `summary`...)."""
        return RunHandle(self, run_id)

    def get(self, run_id: str) -> RunRow:
        return self.store.get_run(run_id)

    def list(self, *, status: str | None = None, machine: str | None = None, limit: int | None = None) -> list[RunRow]:
        return self.store.list_runs(RunFilter((status,) if status else (), machine, None, limit))

    def history(self, run_id: str, branch: str | None = None) -> list[StepRow]:
        """The steps of a branch (default: the head), oldest first, without step 0."""
        run = self.store.get_run(run_id)
        branches = self.store.branches(run.id)
        return [row for row in branch_steps(self.store, run.id, lineage(branches, branch or run.head)) if row.step]

    def branches(self, run_id: str) -> list[BranchRow]:
        return self.store.branches(self.store.get_run(run_id).id)

    def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        return self.store.checkpoints(self.store.get_run(run_id).id)

    def point(self, run_id: str, text: str) -> Point:
        """Resolve a point as written on the command line (on the head branch unless it names another)."""
        run = self.store.get_run(run_id)
        return resolve_point(self.store, run, self.store.branches(run.id), text)

    def diff(self, run_id: str, a: str, b: str) -> RunDiff:
        """What changed from point `a` to point `b` of one run (each as `point()` reads it)."""
        run = self.store.get_run(run_id)
        branches = self.store.branches(run.id)
        first = resolve_point(self.store, run, branches, a)
        second = resolve_point(self.store, run, branches, b)
        where_a = position(self.store, run.id, branches, first.branch, first.point)
        where_b = position(self.store, run.id, branches, second.branch, second.point)
        return diff_positions(run.id, a, where_a, b, where_b)

    def summary(self, run_id: str, branch: str | None = None) -> dict[str, Any]:
        """The seed's history summary: state path, visits per state, branches and checkpoints."""
        run = self.store.get_run(run_id)
        steps = self.history(run.id, branch)
        visits: dict[str, int] = {}
        for row in steps:
            if row.state is not None:
                visits[row.state] = visits.get(row.state, 0) + 1
        return {
            "run_id": run.id, "machine": run.machine, "status": run.status, "branch": branch or run.head,
            "steps": len(steps), "state_path": [row.state for row in steps], "visits": visits,
            "branches": [branch.name for branch in self.store.branches(run.id)],
            "checkpoints": {checkpoint.name: {"branch": checkpoint.branch, "step": checkpoint.point}
                            for checkpoint in self.store.checkpoints(run.id)},
        }

    def position(self, run_id: str, point: Point) -> Position:
        run = self.store.get_run(run_id)
        return position(self.store, run.id, self.store.branches(run.id), point.branch, point.point)


class RunHandle:
    """One stored run, with the seed's vocabulary: roll back, branch, summarise, diff, resume."""

    def __init__(self, runs: Runs, run_id: str) -> None:
        self.runs = runs
        self.id = runs.get(run_id).id

    @property
    def row(self) -> RunRow:
        return self.runs.get(self.id)

    def rollback(self, steps: int = 1) -> Rollback:
        """Go back `steps` steps from the head: a new branch starts there."""
        point = self.row.steps + 1 - steps
        if steps < 1 or point < 1:
            raise RunRefused(f"run {self.id} cannot go back {steps} step(s): it has {self.row.steps}")
        return self.runs.rollback(self.id, point)

    def rollback_to_point(self, name: str) -> Rollback:
        """Go back to a named checkpoint."""
        if name not in {checkpoint.name for checkpoint in self.runs.checkpoints(self.id)}:
            names = ", ".join(checkpoint.name for checkpoint in self.runs.checkpoints(self.id)) or "none"
            raise RunRefused(f"run {self.id} has no checkpoint '{name}' (checkpoints: {names})")
        return self.runs.rollback(self.id, name)

    def rollback_to_state(self, name: str) -> Rollback:
        """Go back to just before the latest visit of a state."""
        return self.runs.rollback(self.id, f"state:{name}")

    def create_branch(self, name: str) -> Rollback:
        return self.runs.create_branch(self.id, name)

    def switch_branch(self, name: str) -> RunRow:
        return self.runs.switch_branch(self.id, name)

    def checkpoint(self, name: str) -> CheckpointRow:
        return self.runs.checkpoint(self.id, name)

    def history(self, branch: str | None = None) -> list[StepRow]:
        return self.runs.history(self.id, branch)

    def summary(self, branch: str | None = None) -> dict[str, Any]:
        return self.runs.summary(self.id, branch)

    def diff(self, a: str | int, b: str | int) -> RunDiff:
        return self.runs.diff(self.id, str(a), str(b))

    async def resume(self, **options: Any) -> RunResult:
        return await self.runs.resume(self.id, **options)

    async def send(self, event: str, data: Any = None, **options: Any) -> RunResult | None:
        return await self.runs.send(self.id, event, data, **options)


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} day(s)"
    return f"{seconds / 3600:g} hour(s)" if seconds >= 3600 else f"{seconds:g} second(s)"


def _left_as(exc: BaseException, committed: int, idle_status: str, on_interrupt: Interrupted) -> str:
    """The status a run is released with when its advance ends by an exception."""
    if not committed and idle_status != "running":
        return idle_status  # nothing happened: as it was
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return on_interrupt
    # a failing hook or store: a person looks first (a worker would run the failing step again and again)
    return "paused"


def _plain_name(name: str) -> bool:
    """A name a user can write back in a point: not empty, no surrounding spaces, no `@`, no control characters."""
    return bool(name) and name.strip() == name and "@" not in name and name.isprintable()


def _refuse_finished(run: RunRow) -> None:
    if run.status in FINISHED:
        done = "been cancelled" if run.status == "cancelled" else run.status
        raise RunRefused(f"run {run.id} has {done}; nothing to resume "
                         f"(roll it back to continue from an earlier point: agentfsm rollback {run.id} --to ...)")


def _check_resumable(run: RunRow, machine: StateMachine, where: Position) -> None:
    if where.state is None or where.state not in machine.states:
        raise RunRefused(f"run {run.id} is at state '{where.state}', which machine '{machine.name}' does not have")


def _flagged(machine: StateMachine) -> list[str]:
    return [name for name, state in machine.states.items() if state.checkpoint]


def _next_rollback_name(branches: list[BranchRow]) -> str:
    names = {branch.name for branch in branches}
    number = 1
    while f"rollback-{number}" in names:
        number += 1
    return f"rollback-{number}"


def _context_at(machine: StateMachine, run_id: str, where: Position) -> StateContext:
    context = StateContext(where.data, metadata={"machine": machine.name})
    context.run_id = run_id
    context.step = where.step
    context.state = where.state
    context.visits = dict(where.visits)
    context.event = where.event
    context.history = list(where.history)
    context.usage = {binding: dict(totals) for binding, totals in where.usage.items()}
    context.bindings = {binding: dict(session) for binding, session in where.bindings.items()}
    return context


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to its end from synchronous code (the CLI)."""
    return asyncio.run(coroutine)
