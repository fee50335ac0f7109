"""Rewriting a run's course without losing any of it: roll back, branch, switch, name checkpoints, cancel, prune.

Nothing is ever deleted but by `prune`: a rollback adds a branch and moves the head there,
and the branch the run was on stays readable. Each operation is checked first and changes
nothing when it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agentfsm.history.errors import RunRefused
from agentfsm.history.leases import owner_is_dead
from agentfsm.history.lineage import last_step, lineage, step_at
from agentfsm.history.points import is_point_syntax, resolve_point
from agentfsm.history.trace import lone_entry
from agentfsm.store.base import FINISHED, BranchRow, CheckpointRow, RunFilter, RunRow, StepRow, lease_live
from agentfsm.store.core import Store

DEFAULT_PRUNE_AGE = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Rollback:
    """Where a rollback put the run's head: a new branch starting at `point`, about to enter `state`."""

    run_id: str
    branch: str
    point: int
    state: str | None


def plain_name(name: str) -> bool:
    """A name a user can write back in a point: not empty, no surrounding spaces, no `@`, no control characters."""
    return bool(name) and name.strip() == name and "@" not in name and name.isprintable()


def check_branch_name(name: str) -> None:
    if not plain_name(name):
        raise RunRefused(f"'{name}' cannot name a branch: use a name with no '@' and no surrounding spaces")


def check_checkpoint_name(name: str, what: str = "checkpoint") -> None:
    """Refuse a checkpoint name `agentfsm rollback RUN --to NAME` could not tell from a point (RunRefused)."""
    if not plain_name(name) or is_point_syntax(name):
        raise RunRefused(f"'{name}' cannot name a {what}: use a name that is not a number, 'start' or 'head', "
                         "does not start with 'state:', has no '@' and no surrounding spaces")


async def rollback(store: Store, run_id: str, to: str | int, *, branch: str | None = None,
                   clock: Callable[[], float]) -> Rollback:
    """Start a new branch at a point (a checkpoint name, a step number, `state:NAME`) and make it the head."""
    run = await store.get_run(run_id)
    branches = await store.branches(run.id)
    point = await resolve_point(store, run, branches, str(to))
    before = await step_at(store, run.id, lineage(branches, point.branch), point.point - 1)
    if before is None or before.next_state is None:
        raise RunRefused(f"{point.label} is the end of branch '{point.branch}' of run {run.id}: nothing runs from there")
    if branch is not None:
        check_branch_name(branch)
    name = branch or next_rollback_name(existing.name for existing in branches)
    if any(existing.name == name for existing in branches):
        raise RunRefused(f"run {run.id} already has a branch '{name}'")
    now = clock()
    entry = {"kind": "rollback", "branch": name, "parent": point.branch, "point": point.point,
             "state": before.next_state}
    trace = lone_entry(await store.trace_end(run.id) + 1, name, point.point - 1, now, entry)
    await store.create_branch(run.id, BranchRow(name, point.branch, point.point, now), now=now, trace=trace)
    return Rollback(run.id, name, point.point, before.next_state)


async def switch_branch(store: Store, run_id: str, name: str, *, clock: Callable[[], float]) -> RunRow:
    """Make an existing branch the head again; the run is `paused` there unless that branch had ended."""
    run = await store.get_run(run_id)
    branches = await store.branches(run.id)
    if name == run.head:  # switching would only drop what the run waits for (its events, its timer)
        raise RunRefused(f"branch '{name}' is already the head of run {run.id}")
    last = await last_step(store, run.id, lineage(branches, name))
    ended = ended_status(last)
    if ended is not None:  # that branch had ended: it ends the same way again
        failed = ended == "failed"
        return await store.switch_branch(run.id, name, ended, last.step, now=clock(),
                                         output=None if failed else last.result, error=last.error)
    return await store.switch_branch(run.id, name, "paused", last.step, now=clock())


def ended_status(last: StepRow) -> str | None:
    """How a branch whose newest step is `last` ended (`succeeded` or `failed`); None when it goes on."""
    if last.step > 0 and last.next_state is None:
        return "failed" if last.error is not None or last.event == "fail" else "succeeded"
    return None


async def name_checkpoint(store: Store, run_id: str, name: str, *, clock: Callable[[], float]) -> CheckpointRow:
    """Name the run's current point (just before its next step); a finished run has no point to continue from."""
    run = await store.get_run(run_id)
    check_checkpoint_name(name)
    if any(checkpoint.name == name for checkpoint in await store.checkpoints(run.id)):
        raise RunRefused(f"run {run.id} already has a checkpoint '{name}'")
    last = await last_step(store, run.id, lineage(await store.branches(run.id), run.head))
    if last.step > 0 and last.next_state is None:
        raise RunRefused(f"run {run.id} ended with step {last.step}: nothing runs from its end, so a checkpoint "
                         "there could not be rolled back to (checkpoints name points a run can continue from)")
    checkpoint = CheckpointRow(name, run.head, run.steps + 1, clock())
    await store.add_checkpoint(run.id, checkpoint)
    return checkpoint


async def prune(store: Store, *, older_than: float | None = None, keep_last: int | None = None,
                statuses: Iterable[str] = (), dry_run: bool = False, clock: Callable[[], float]) -> list[RunRow]:
    """Delete finished runs (or runs with the given statuses) not updated for `older_than` seconds, keeping the
    newest `keep_last` of them; with neither limit, runs older than 30 days. Returns what was (or would be)
    deleted; raises RunRefused when nothing matches. Runs a live process holds are never deleted."""
    chosen = tuple(statuses) or tuple(sorted(FINISHED))
    if older_than is None and keep_last is None:
        older_than = DEFAULT_PRUNE_AGE
    now = clock()
    matching = await store.list_runs(RunFilter(chosen))
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
        deleted = set(await store.delete_runs([run.id for run in doomed], RunFilter(chosen, updated_before=cutoff),
                                              now=clock(), takeover=dead))
        if not deleted:
            raise RunRefused("nothing to prune: the runs that matched changed meanwhile (resumed or rolled back)")
        doomed = [run for run in doomed if run.id in deleted]
    return doomed


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} day(s)"
    return f"{seconds / 3600:g} hour(s)" if seconds >= 3600 else f"{seconds:g} second(s)"


def next_rollback_name(taken: Iterable[str]) -> str:
    """`rollback-1`, or the first `rollback-N` no branch has."""
    names = set(taken)
    number = 1
    while f"rollback-{number}" in names:
        number += 1
    return f"rollback-{number}"
