"""`agentfsm store copy SRC DST`: every run of one store into another (SQLite to PostgreSQL and back).

Each run is read whole from the source (its row, inputs, machine source, branches, the steps of
each branch, checkpoints, every event, taken or not, and its trace with the payloads it refers to) and written in one transaction of the
target, so a copy interrupted half-way leaves whole runs only. Then both stores are read back
through the same interface (`dump_run`) and compared: the copy is verified, not assumed.
Event ids and team message ids are each store's own (they are numbered per store); everything else is kept as
it is. The rows a run owns beyond its own tables (its teams' messages and memory...) are listed in `OWNED`,
one line per table: a table a backend adds there is copied, compared and checked for (tests/test_store_copy.py
fails while a table keyed by run is neither here nor in `CARRIED`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agentfsm.store.base import (
    Conflict,
    EventRow,
    MemoryRow,
    MessageRow,
    RunFilter,
    RunRow,
    StepRow,
    StoreError,
    TraceRow,
    TraceWrite,
    Transaction,
    WriteRow,
    inline_base,
    payload_base,
)
from agentfsm.store.core import Store


@dataclass(slots=True)
class CopyReport:
    runs: int = 0
    steps: int = 0
    events: int = 0
    verified: bool = False


@dataclass(frozen=True, slots=True)
class Owned:
    """Rows of one table that a run owns, besides those `CARRIED` names: how to read them, write one, show one."""

    table: str
    read: Callable[[Transaction, str], Awaitable[list[Any]]]
    write: Callable[[Transaction, str, Any], Awaitable[object]]
    shown: Callable[[Any], dict[str, Any]]
    """One row as plain values for the comparison (ids a store numbers itself left out)."""


async def _put_message(tx: Transaction, run_id: str, row: MessageRow) -> None:
    new_id = await tx.teams().insert_message(run_id, row)
    if row.taken_by is not None:
        await tx.teams().take_message(row.team, new_id, row.taken_by)


def _in_team(pair: tuple[str, MemoryRow | WriteRow]) -> dict[str, Any]:
    return {"team": pair[0], **asdict(pair[1])}


OWNED: tuple[Owned, ...] = (
    Owned("team_messages", lambda tx, run: tx.teams().run_messages(run), _put_message,
          lambda row: {**asdict(row), "id": None}),
    Owned("team_memory", lambda tx, run: tx.teams().run_memory(run),
          lambda tx, run, pair: tx.teams().put_memory(run, *pair), _in_team),
    Owned("team_writes", lambda tx, run: tx.teams().run_writes(run),
          lambda tx, run, pair: tx.teams().insert_write(run, *pair), _in_team),
)
"""Tables of rows a run owns that the copy carries through `OWNED`'s functions (a new table: one line here)."""

CARRIED: frozenset[str] = frozenset({"runs", "run_inputs", "sources", "branches", "steps", "checkpoints", "events",
                                     "trace", "payloads"})
"""Tables the copy carries by hand (below), as the run's own rows."""


@dataclass(slots=True)
class _Whole:
    """One run as read from the source."""

    run: RunRow
    inputs: dict[str, Any]
    source: str | None
    steps: list[StepRow]
    events: list[EventRow]
    trace: TraceWrite = field(default_factory=TraceWrite)
    owned: dict[str, list[Any]] = field(default_factory=dict)


def _refs(value: Any, found: set[str]) -> set[str]:
    """The payload digests a trace entry refers to (`{"$ref": DIGEST}` anywhere inside it)."""
    if isinstance(value, dict):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str):
            found.add(value["$ref"])
        elif (base := inline_base(value)) is not None:  # a change kept in the entry: its base
            found.add(base)
        for item in value.values():
            _refs(item, found)
    elif isinstance(value, list):
        for item in value:
            _refs(item, found)
    return found


async def _trace(tx: Transaction, run_id: str) -> TraceWrite:
    rows: list[TraceRow] = await tx.trace_rows(run_id, 0, None)
    digests: set[str] = set()
    for row in rows:
        _refs(json.loads(row.entries), digests)
    payloads = await tx.payloads(run_id, sorted(digests)) if digests else {}
    bases = {base for data in payloads.values() if (base := payload_base(data)) is not None} - payloads.keys()
    if bases:  # a payload kept as a change of another: its base comes along
        payloads.update(await tx.payloads(run_id, sorted(bases)))
    return TraceWrite(rows, payloads)


async def _owned(tx: Transaction, run_id: str) -> dict[str, list[Any]]:
    return {owned.table: await owned.read(tx, run_id) for owned in OWNED}


async def dump_run(store: Store, run_id: str) -> dict[str, Any]:
    """Everything a store keeps of one run, as plain values (event and message ids left out: they are per store)."""
    run = await store.get_run(run_id)
    branches = await store.branches(run_id)
    async with store.backend.reading() as tx:
        events = await tx.events(run_id)
        trace = await _trace(tx, run_id)
        owned = await _owned(tx, run_id)
    return {
        **{owned_rows.table: sorted((owned_rows.shown(row) for row in owned[owned_rows.table]), key=_order)
           for owned_rows in OWNED},
        "trace": [asdict(row) for row in trace.rows],
        "payloads": trace.payloads,
        "run": asdict(run),
        "inputs": await store.inputs(run_id),
        "source": await store.source(run.digest) if run.digest else None,
        "branches": [asdict(branch) for branch in branches],
        "steps": {branch.name: [asdict(row) async for row in store.stream_steps(run_id, branch.name)]
                  for branch in branches},
        "checkpoints": [asdict(checkpoint) for checkpoint in await store.checkpoints(run_id)],
        "events": [{**asdict(event), "id": None} for event in events],
    }


async def _read(store: Store, run: RunRow) -> _Whole:
    branches = await store.branches(run.id)
    steps = [row for branch in branches async for row in store.stream_steps(run.id, branch.name)]
    async with store.backend.reading() as tx:
        events = await tx.events(run.id)
        trace = await _trace(tx, run.id)
        owned = await _owned(tx, run.id)
    source = await store.source(run.digest) if run.digest else None
    return _Whole(run, await store.inputs(run.id), source, steps, events, trace, owned)


def _order(row: dict[str, Any]) -> str:
    """Owned rows are compared as sets: backends order text keys by their own collations."""
    return json.dumps(row, sort_keys=True, default=str)


async def _write(target: Store, whole: _Whole, source: Store) -> None:
    branches = await source.branches(whole.run.id)
    checkpoints = await source.checkpoints(whole.run.id)
    run_id = whole.run.id

    async def write(tx: Transaction) -> None:
        await tx.insert_run(whole.run, whole.inputs, whole.source)
        for branch in branches:
            await tx.insert_branch(run_id, branch)
        for row in whole.steps:
            await tx.insert_step(run_id, row)
        for checkpoint in checkpoints:
            await tx.insert_checkpoint(run_id, checkpoint)
        if whole.trace.rows:  # read back in the same order, whether a row was kept with its step or apart
            await tx.insert_trace(run_id, whole.trace)
        for event in whole.events:
            new_id = await tx.insert_event(run_id, event.name, event.data, event.created_at)
            if event.taken_step is not None:
                await tx.take_event(run_id, new_id, event.taken_branch or whole.run.head, event.taken_step)
        for owned in OWNED:
            for row in whole.owned[owned.table]:
                await owned.write(tx, run_id, row)

    await target.write(write)


async def copy_store(source: Store, target: Store) -> CopyReport:
    """Copy every run of `source` into `target`, oldest first, then check both read back the same.

    Refused (Conflict, nothing copied) when `target` already has a run of the same id."""
    runs = list(reversed(await source.list_runs(RunFilter())))
    taken = [run.id for run in runs if await target.find_run(run.id) is not None]
    if taken:
        shown = ", ".join(taken[:3]) + ("..." if len(taken) > 3 else "")
        raise Conflict(f"{target.url} already has {len(taken)} of the {len(runs)} runs to copy ({shown}); "
                       "nothing copied")
    report = CopyReport()
    for run in runs:
        whole = await _read(source, run)
        await _write(target, whole, source)
        report.runs += 1
        report.steps += len(whole.steps)
        report.events += len(whole.events)
    for run in runs:
        if await dump_run(source, run.id) != await dump_run(target, run.id):
            raise StoreError(f"the copy of run {run.id} in {target.url} differs from the original in {source.url}")
    report.verified = True
    return report
