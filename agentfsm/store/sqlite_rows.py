"""How rows of the SQLite store map to the store's row types: columns, JSON text, and the statements that use them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentfsm.store.base import RunRow, StepRow, TraceRow


class DamagedValue(ValueError):
    """A column that should hold JSON does not (the store file was edited or damaged)."""


def dump(value: Any) -> str | None:
    """JSON text for a column; None stays SQL NULL."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def load(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DamagedValue(f"a stored value is not JSON: {exc}") from None


RUN_COLUMNS = (
    "id", "machine", "digest", "path", "status", "head", "created_at", "updated_at", "llms", "output", "error",
    "usage", "steps", "waiting", "wake_at", "lease_owner", "lease_expires", "parent_run", "parent_step",
    "child_name", "breakpoints",
)
JSON_RUN_COLUMNS = frozenset({"llms", "output", "error", "usage", "waiting", "breakpoints"})
_JSON_DEFAULTS: dict[str, Any] = {"llms": {}, "usage": {}, "breakpoints": []}
SELECT_RUN = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
INSERT_RUN = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"

STEP_COLUMNS = (
    "branch", "step", "state", "event", "event_data", "next_state", "started_at", "duration", "retries", "error",
    "result", "calls", "context_kind", "context", "tally",
)
SELECT_STEP = f"SELECT {', '.join(STEP_COLUMNS)} FROM steps"
_STEP_WRITTEN = ("run_id", *STEP_COLUMNS, "trace_seq", "trace_last", "trace")
INSERT_STEP = f"INSERT INTO steps ({', '.join(_STEP_WRITTEN)}) VALUES ({', '.join('?' * len(_STEP_WRITTEN))})"


def run_from_row(row: Sequence[Any]) -> RunRow:
    values = {}
    for name, value in zip(RUN_COLUMNS, row, strict=True):
        values[name] = load(value, _JSON_DEFAULTS.get(name)) if name in JSON_RUN_COLUMNS else value
    return RunRow(**values)


def run_params(run: RunRow) -> tuple[Any, ...]:
    return tuple(dump(getattr(run, name)) if name in JSON_RUN_COLUMNS else getattr(run, name)
                 for name in RUN_COLUMNS)


def column_value(name: str, value: Any) -> Any:
    """A run column's value as SQLite stores it."""
    return dump(value) if name in JSON_RUN_COLUMNS else value


def step_from_row(row: Sequence[Any]) -> StepRow:
    return StepRow(
        branch=row[0], step=row[1], state=row[2], event=row[3], event_data=load(row[4]), next_state=row[5],
        started_at=row[6], duration=row[7], retries=row[8], error=load(row[9]), result=load(row[10]),
        calls=load(row[11], []), context_kind=row[12], context=row[13], tally=load(row[14]),
    )


def step_params(run_id: str, step: StepRow, trace: TraceRow | None = None) -> tuple[Any, ...]:
    # an empty calls list is the common case: NULL keeps the row small
    return (
        run_id, step.branch, step.step, step.state, step.event, dump(step.event_data), step.next_state,
        step.started_at, step.duration, step.retries, dump(step.error), dump(step.result),
        dump(step.calls) if step.calls else None, step.context_kind, step.context, dump(step.tally),
        None if trace is None else trace.seq, None if trace is None else trace.last,
        None if trace is None else trace.entries,
    )


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix` (None: no bound).

    SQLite compares TEXT bytewise in UTF-8, which orders like code points, so bumping the
    last character works; surrogates cannot be encoded and are skipped.
    """
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return None
    bumped = 0xE000 if last == 0xD7FF else last + 1
    return prefix[:-1] + chr(bumped)
