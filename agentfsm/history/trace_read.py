"""Reading a run's trace back: entries in order, a page of rows at a time, with their payloads put back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agentfsm.history.payloads import change_bases, changed, inline_base, restore
from agentfsm.history.trace import expand
from agentfsm.store.base import Damaged, TraceRow
from agentfsm.store.core import Store

PAGE = 200
"""Trace rows read at a time (a row holds the entries of one step)."""


def entries_of(run_id: str, row: TraceRow, after: int = 0) -> list[dict[str, Any]]:
    """The entries of one stored row numbered above `after`, each with its run id and branch."""
    try:
        entries = json.loads(row.entries)
    except ValueError as exc:
        raise Damaged(f"trace entry {row.seq} of run {run_id} is damaged ({exc})") from None
    found = []
    for entry in sorted((one for stored in entries for one in expand(stored)), key=lambda one: one.get("seq", 0)):
        if entry.get("seq", 0) > after:
            found.append({"seq": entry.pop("seq", 0), "run_id": run_id, "branch": row.branch,
                          "step": entry.pop("step", row.step), "at": entry.pop("at", None),
                          "kind": entry.pop("kind", "?"), **entry})
    return found


def _refs(value: Any, into: set[str]) -> None:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and len(value) == 1:
            into.add(ref)
            return
        base = inline_base(value)  # a small change kept in the entry: its base is a payload
        if base is not None:
            into.add(base)
            return
        for item in value.values():
            _refs(item, into)
    elif isinstance(value, list):
        for item in value:
            _refs(item, into)


def _put_back(value: Any, payloads: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and len(value) == 1 and ref in payloads:
            return payloads[ref]
        base = inline_base(value)
        if base is not None and isinstance(payloads.get(base), str):
            return changed(payloads[base], value)
        return {key: _put_back(item, payloads) for key, item in value.items()}
    if isinstance(value, list):
        return [_put_back(item, payloads) for item in value]
    return value


async def resolve(store: Store, run_id: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`entries` with every `{"$ref": DIGEST}` replaced by the value stored under that digest."""
    wanted: set[str] = set()
    for entry in entries:
        _refs(entry, wanted)
    if not wanted:
        return entries
    payloads = _decoded(run_id, await store.payloads(run_id, sorted(wanted)))
    if any(isinstance(value, dict) for value in payloads.values()):  # kept as a change of another (TraceWrite)
        missing = change_bases(payloads)
        bases = _decoded(run_id, await store.payloads(run_id, sorted(missing))) if missing else {}
        payloads = restore(payloads, bases)
    return [_put_back(entry, payloads) for entry in entries]


def _decoded(run_id: str, texts: dict[str, str]) -> dict[str, Any]:
    try:
        return {digest: json.loads(text) for digest, text in texts.items()}
    except ValueError as exc:
        raise Damaged(f"a trace payload of run {run_id} is damaged ({exc})") from None


async def iter_trace(store: Store, run_id: str, *, after: int = 0, resolved: bool = True
                     ) -> AsyncIterator[dict[str, Any]]:
    """The run's trace entries numbered above `after`, oldest first, read a page of rows at a time."""
    while True:
        rows = await store.trace(run_id, after=after, limit=PAGE)
        page = [entry for row in rows for entry in entries_of(run_id, row, after)]
        if resolved:
            page = await resolve(store, run_id, page)
        for entry in page:
            yield entry
        if len(rows) < PAGE:
            return
        after = rows[-1].last
