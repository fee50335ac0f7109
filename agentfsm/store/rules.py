"""The store's domain rules, as small pure functions every backend shares.

Which events a run accepts, which runs are due, how a checkpoint a run reaches is named
when a person took the name, how a run id prefix resolves, how a run may end: decided
here once, so a new backend only stores rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from agentfsm.store.base import FINISHED, STATUSES, Conflict, DueCandidate, RunFilter, RunNotFound, RunRow

MIN_PREFIX = 4
"""The shortest part of a run id (its start or its end) `get_run` resolves."""


def finished_phrase(status: str) -> str:
    """`succeeded`, `failed`, `been cancelled`: reads after "has"."""
    return "been cancelled" if status == "cancelled" else status


def event_refusal(run: RunRow, name: str, now: float) -> str | None:
    """Why `run` does not take the event `name` now, or None when it takes it.

    Only a run waiting for that event takes it, and, as in Step Functions, only before its
    wait's timer runs out: after that the timeout transition wins.
    """
    if run.status in FINISHED:
        return f"run {run.id} has {finished_phrase(run.status)}; it takes no more events"
    if run.status != "waiting":
        return f"run {run.id} is {run.status}, not waiting for an event"
    events = list((run.waiting or {}).get("events") or [])
    if name not in events:
        return f"run {run.id} is not waiting for '{name}'; it waits for: {', '.join(events)}"
    if run.wake_at is not None and run.wake_at <= now:
        due = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.wake_at))
        return (f"run {run.id} stopped waiting at {due}: the timer of state '{(run.waiting or {}).get('state')}' "
                "ran out, so it takes its timeout transition when it is resumed")
    return None


def is_due(candidate: DueCandidate, now: float) -> bool:
    """Whether a worker should advance this run now: a dead owner's run, a due timer, or an event it waits for."""
    run = candidate.run
    if run.status in ("running", "queued"):
        return True
    if run.wake_at is not None and run.wake_at <= now:
        return True
    wanted = set((run.waiting or {}).get("events") or ())
    return any(name in wanted for name in candidate.pending)


def free_checkpoint_name(wanted: str, state: str | None, taken: Collection[str]) -> str:
    """`wanted` when free; else, for a checkpoint a run reached, the first free `STATE#k` (k from 2)."""
    if wanted not in taken:
        return wanted
    prefix = f"{state or wanted}#"
    number = 2
    while f"{prefix}{number}" in taken:
        number += 1
    return f"{prefix}{number}"


def encodable(text: str) -> bool:
    """Whether `text` can be stored (a command-line argument that was not UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def part_match(part: str, found: list[RunRow], url: str) -> RunRow:
    """The one run among `found` whose id starts or ends with `part`; RunNotFound (saying why) otherwise."""
    matching = list({run.id: run for run in found if run.id.startswith(part) or run.id.endswith(part)}.values())
    if not matching:
        raise RunNotFound(f"no run '{part}' in {url}")
    if len(matching) > 1:
        shown = ", ".join(run.id for run in matching[:5])
        raise RunNotFound(f"'{part}' matches several runs: {shown}{'...' if len(matching) > 5 else ''}")
    return matching[0]


def check_status(status: str | None, *, ending: bool = False) -> None:
    """Refuse a status the store does not know (a programming error, not a user's)."""
    if status is None:
        return
    if status not in STATUSES or (ending and status == "running"):
        raise ValueError(f"a run cannot {'end as' if ending else 'be'} '{status}'")


def released_status(run: RunRow, status: str) -> str:
    """The status a run is released with: back to `waiting` only while the row still says what it waits for
    (a step committed meanwhile ended that wait), else `paused`."""
    if status == "waiting" and run.waiting is None:
        return "paused"
    return status


def lease_held_message(run: RunRow, now: float) -> str:
    if run.lease_expires is None:
        return f"run {run.id} is being advanced by {run.lease_owner} (its lease does not expire)"
    seconds = max(0.0, run.lease_expires - now)
    return f"run {run.id} is being advanced by {run.lease_owner} (lease expires in {seconds:.0f}s)"


def cleared_wait() -> dict[str, Any]:
    """The columns that say a run waits for nothing."""
    return {"waiting": None, "wake_at": None}


def check_json(value: Any, what: str) -> None:
    """Refuse a value no store can keep, before it joins a transaction other runs' writes share."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise Conflict(f"{what} cannot be stored: it is not JSON ({exc})") from None


def matches(run: RunRow, where: RunFilter) -> bool:
    """Whether a run is one `where` asks for (what a backend's listing selects, and a deletion checks again)."""
    if where.statuses and run.status not in where.statuses:
        return False
    if where.machine is not None and run.machine != where.machine:
        return False
    if where.parent_run is not None and run.parent_run != where.parent_run:
        return False
    if where.parents and run.parent_run not in where.parents:
        return False
    if where.top_level and run.parent_run is not None:
        return False
    if where.before is not None and (run.created_at, run.id) >= where.before:
        return False
    return where.updated_before is None or run.updated_at < where.updated_before


async def due_in_windows(tx: Any, now: float, limit: int, *, machine: str | None,
                         skip: Collection[str]) -> list[RunRow]:
    """`Transaction.claimable` for a backend whose writers take turns: due candidates read a window at a time,
    widened until `limit` due runs are found (runs that are not due must not hide the ones behind them)."""
    window = limit + len(skip) + 16
    while True:
        candidates = await tx.due_candidates(now, window, machine=machine)
        due = [candidate.run for candidate in candidates if candidate.run.id not in skip and is_due(candidate, now)]
        if len(due) >= limit or len(candidates) < window:
            return due[:limit]
        window *= 4
