"""Reading a run's trace back: entries in order, a page of rows at a time, with their payloads put back.

Reading is on the path of `agentfsm trace --json` of a long run (30,000 entries for 10,000 steps), so
entries are built once, in their final key order, and only rows that hold a reference to a payload are
searched for one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agentfsm.history.payloads import change_bases, changed, inline_base, restore
from agentfsm.history.trace import STEP_FIELDS
from agentfsm.store.base import Damaged, TraceRow
from agentfsm.store.core import Store

PAGE = 1000
"""Trace rows read at a time (a row holds the entries of one step)."""

_REFS = ('"$ref"', '"$base"')
"""How a reference to a payload (or a change of one) reads in a stored row's text: a row with neither has none
to put back."""

_AT = {name: index for index, name in enumerate(STEP_FIELDS)}
_SEQ, _WHEN, _STEP, _STATE, _VISIT, _EVENT, _NEXT, _DURATION, _RETRIES, _TRANSITION, _RULE, _LABEL, _EXITED, \
    _ENDED, _EXTRA = (_AT[name] for name in STEP_FIELDS)


def step_entries(run_id: str, branch: str, record: list[Any]) -> list[dict[str, Any]]:
    """The entries a stored step record stands for: `state_entered`, `transition` (unless the step ended the
    run) and `state_exited`."""
    if len(record) < len(STEP_FIELDS):
        record = [*record, *[None] * (len(STEP_FIELDS) - len(record))]
    step, state, ended = record[_STEP], record[_STATE], record[_ENDED]
    extra = record[_EXTRA] or {}
    found = [{"seq": record[_SEQ], "run_id": run_id, "branch": branch, "step": step, "at": record[_WHEN],
              "kind": "state_entered", "state": state, "visit": record[_VISIT]}]
    if record[_TRANSITION] is not None:
        found.append({"seq": record[_TRANSITION], "run_id": run_id, "branch": branch, "step": step, "at": ended,
                      "kind": "transition", "source": state, "target": record[_NEXT], "event": record[_EVENT],
                      "rule": record[_RULE], "label": record[_LABEL], "caught": extra.get("error") is not None})
    exited = {"seq": record[_EXITED], "run_id": run_id, "branch": branch, "step": step, "at": ended,
              "kind": "state_exited", "state": state, "event": record[_EVENT], "next_state": record[_NEXT],
              "duration": record[_DURATION], "retries": record[_RETRIES], "result": extra.get("result"),
              "error": extra.get("error")}
    if "event_data" in extra:
        exited["event_data"] = extra["event_data"]
    found.append(exited)
    return found


def _lone(run_id: str, row: TraceRow, entry: dict[str, Any]) -> dict[str, Any]:
    """A stored entry of its own (a call, an error, a run's end): the common keys first."""
    return {"seq": entry.pop("seq", 0), "run_id": run_id, "branch": row.branch, "step": entry.pop("step", row.step),
            "at": entry.pop("at", None), "kind": entry.pop("kind", "?"), **entry}


def _seq(entry: dict[str, Any]) -> int:
    return entry["seq"] or 0


def entries_of(run_id: str, row: TraceRow, after: int = 0) -> list[dict[str, Any]]:
    """The entries of one stored row numbered above `after`, each with its run id and branch."""
    try:
        stored = json.loads(row.entries)
    except ValueError as exc:
        raise Damaged(f"trace entry {row.seq} of run {run_id} is damaged ({exc})") from None
    found: list[dict[str, Any]] = []
    for one in stored:
        if isinstance(one, list):
            found.extend(step_entries(run_id, row.branch, one))
        elif isinstance(one, dict):
            found.append(_lone(run_id, row, one))
    if len(found) > 1:
        found.sort(key=_seq)
    if after and row.seq <= after:
        found = [entry for entry in found if _seq(entry) > after]
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


async def iter_trace_pages(store: Store, run_id: str, *, after: int = 0, resolved: bool = True
                           ) -> AsyncIterator[list[dict[str, Any]]]:
    """The run's trace entries numbered above `after`, oldest first, a page (of up to `PAGE` rows) at a time."""
    while True:
        rows = await store.trace(run_id, after=after, limit=PAGE)
        page: list[dict[str, Any]] = []
        referring: list[int] = []
        for row in rows:
            found = entries_of(run_id, row, after)
            if resolved and any(mark in row.entries for mark in _REFS):
                referring.extend(range(len(page), len(page) + len(found)))
            page.extend(found)
        if referring:  # one read of the payloads the page refers to
            for index, entry in zip(referring, await resolve(store, run_id, [page[at] for at in referring]),
                                    strict=True):
                page[index] = entry
        if page:
            yield page
        if len(rows) < PAGE:
            return
        after = rows[-1].last


async def iter_trace(store: Store, run_id: str, *, after: int = 0, resolved: bool = True
                     ) -> AsyncIterator[dict[str, Any]]:
    """The run's trace entries numbered above `after`, oldest first, read a page of rows at a time."""
    async for page in iter_trace_pages(store, run_id, after=after, resolved=resolved):
        for entry in page:
            yield entry
