"""Contexts as the store keeps them: a full snapshot now and then, RFC 6902 patches in between.

Storage grows with what changes, not with the size of the context: a step that changes
nothing stores nothing, a step that appends to a list stores one `add` operation. So does
the time it takes to record a step: a big list or dict in the context is replaced, once,
by a tracked copy that notes its own changes (`tracked.py`), so an unchanged value costs
nothing to check and an appended message costs one operation to write, however long the
transcript. Small values are kept as their JSON text and compared as text, which costs
little and leaves them plain lists and dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


from agentfsm.history.jsondiff import Differ, Operation, pointer
from agentfsm.history.tracked import MISSING, SCALARS, Opaque, Owner, adopt, adopt_changes
from agentfsm.store.base import ContextKind, StepRow

SNAPSHOT_EVERY = 50
"""A full snapshot after this many changed steps, so rebuilding a context replays few patches..."""
SNAPSHOT_AT_MOST_EVERY = 1000
"""...unless the context is big and its changes small: then a snapshot waits until the patches since the last one
add up to a quarter of its size (or this many changed steps), so a 100 KB context that never changes is stored once."""
TRACK_FROM = 1024
"""A list or dict whose JSON text is at least this long is tracked; a smaller one is compared as text each step
(a few µs), and stays the plain list or dict the state put there."""


class ContextNotJSON(ValueError):
    """A state left a value in the context that JSON cannot hold, so the step cannot be stored."""


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    return _encode(value)


def _json_text(value: Any, key: Any) -> str:
    """`value` as JSON text; raises ContextNotJSON naming the key when it is not JSON."""
    if type(key) is not str:
        raise ContextNotJSON(f"context key {key!r} is not a string, as JSON object keys are")
    try:
        return _encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ContextNotJSON(f"context key '{key}' holds a value that is not JSON ({exc})") from None


class _Record:
    """What was recorded for one context key: an atom, a tracked container (with its owner), or JSON text."""

    __slots__ = ("opaque", "owner", "text", "value")

    def __init__(self, value: Any = MISSING, text: str | None = None) -> None:
        self.value = value
        """The atom or the owner's container recorded; MISSING when only the text is kept."""
        self.text = text
        self.owner: Owner | None = None
        self.opaque = False
        """The text's value holds what cannot be tracked (a tuple...): not tried again until it changes."""

    def json(self) -> str:
        return self.text if self.text is not None else _encode(self.value)

    def recorded(self) -> Any:
        """The recorded value, for a diff: the atom, the owner's container (read through its notes), or JSON."""
        return json.loads(self.text) if self.text is not None else self.value


def _first_record(key: Any, value: Any) -> _Record:
    if type(value) in SCALARS and type(key) is str:
        return _Record(value)
    return _Record(text=_json_text(value, key))


def _as_text(record: _Record, text: str, opaque: bool = False) -> None:
    record.value, record.text, record.owner, record.opaque = MISSING, text, None, opaque


class ContextTracker:
    """Turns each step's context into what the store records for it (kind and JSON text), remembering the last one.

    `change(data)` may replace a big list or dict in `data` by a tracked copy (equal, a subclass of list or
    dict); later steps then find it unchanged at no cost. With `track=False` it never touches `data` and
    compares every list and dict as JSON text (for a caller whose user may hold on to the values: the cost
    then grows with the size of the context again, at C speed)."""

    __slots__ = ("_records", "changes_since_snapshot", "patch_bytes", "snapshot_bytes", "snapshot_every", "track")

    def __init__(self, data: dict[str, Any], *, since: ReplayCost | None = None,
                 snapshot_every: int = SNAPSHOT_EVERY, track: bool = True) -> None:
        self._records = {key: _first_record(key, value) for key, value in data.items()}
        since = since or ReplayCost()
        self.changes_since_snapshot = since.patches
        self.patch_bytes = since.patch_bytes
        self.snapshot_bytes = since.snapshot_bytes
        self.snapshot_every = snapshot_every
        self.track = track

    def snapshot(self) -> str:
        """The last recorded context in full."""
        text = "{" + ",".join(f"{_encode(key)}:{record.json()}" for key, record in self._records.items()) + "}"
        self.changes_since_snapshot = self.patch_bytes = 0
        self.snapshot_bytes = len(text)
        return text

    def release(self, data: dict[str, Any]) -> None:
        """Put plain lists and dicts back where `change` installed tracked ones: for a run that ended, whose
        context goes back to its caller as an unrecorded run's would (`type(value) is list`, YAML-dumpable)."""
        for key, record in self._records.items():
            if record.owner is not None and data.get(key) is record.value:
                data[key] = json.loads(_encode(record.value))

    def _snapshot_due(self) -> bool:
        if self.changes_since_snapshot < self.snapshot_every:
            return False
        return self.patch_bytes * 4 >= self.snapshot_bytes or self.changes_since_snapshot >= SNAPSHOT_AT_MOST_EVERY

    def change(self, data: dict[str, Any]) -> tuple[ContextKind | None, str | None]:
        """What to store for a step that left the context as `data`: (None, None) when nothing changed."""
        records = self._records
        texts = [_encode([{"op": "remove", "path": pointer(key)}])[1:-1] for key in records if key not in data]
        for key in [key for key in records if key not in data]:
            del records[key]
        for key, value in list(data.items()):
            record = records.get(key)
            if record is not None and value is record.value and (record.owner is None or not record.owner.changed):
                continue  # the same atom, or a tracked container that noted no change: nothing to look at
            if record is None:
                if type(key) is not str:
                    raise ContextNotJSON(f"context key {key!r} is not a string, as JSON object keys are")
                record = _Record()
            operations = self._key_change(data, key, value, record)
            records[key] = record
            if operations:
                texts.append(_operations_text(operations, key))
        if not texts:
            return None, None
        self.changes_since_snapshot += 1
        if self._snapshot_due():
            return "snapshot", self.snapshot()
        text = "[" + ",".join(texts) + "]"
        self.patch_bytes += len(text)
        return "patch", text

    def _key_change(self, data: dict[str, Any], key: str, value: Any, record: _Record) -> list[Operation]:
        """The operations for one key whose value may have changed; records (and installs) what is there now."""
        owner = record.owner
        if owner is not None and type(value) not in SCALARS:
            return _tracked_change(data, key, value, record, owner)
        path = pointer(key)
        new_key = record.value is MISSING and record.text is None
        if type(value) in SCALARS:
            old = MISSING if new_key else record.recorded()
            record.value, record.text, record.owner = value, None, None
            if old is MISSING:
                return [{"op": "add", "path": path, "value": value}]
            differ = Differ(owner, deep=False)
            differ.value(path, old, value)
            return differ.operations
        text = _json_text(value, key)
        changed = record.text != text
        if not changed:  # kept as text and the same text: nothing to decode
            operations: list[Operation] = []
        elif new_key:
            operations = [{"op": "add", "path": path, "value": json.loads(text)}]
        else:
            differ = Differ(owner, deep=False)
            differ.value(path, record.recorded(), json.loads(text))
            operations = differ.operations
        _as_text(record, text, record.opaque and not changed)
        if self.track and len(text) >= TRACK_FROM and not record.opaque:
            _track(data, key, value, record)
        return operations


def _tracked_change(data: dict[str, Any], key: str, value: Any, record: _Record, owner: Owner) -> list[Operation]:
    """The operations for a tracked key whose value changed in place or was replaced by another container."""
    recorded = record.value
    deep = any(container is not recorded for container in owner.changed)
    try:
        differ = Differ(owner, deep)
        if value is recorded:
            differ.settle(pointer(key), value)
        else:
            differ.value(pointer(key), recorded, value)
        adopted = adopt(value, owner)
        adopt_changes(owner)
    except (Opaque, RecursionError):  # a tuple, a subclass, a key that is not a string: compared as JSON text
        text = _json_text(value, key)
        differ = Differ(owner, deep)
        differ.value(pointer(key), recorded, json.loads(text))
        owner.reset()
        _as_text(record, text, opaque=True)
        return differ.operations
    owner.reset()
    record.value = adopted
    if adopted is not value:
        data[key] = adopted
    return differ.operations


def _track(data: dict[str, Any], key: str, value: Any, record: _Record) -> None:
    """Replace a big list or dict kept as text by a tracked copy, unless it holds something JSON has no type for."""
    owner = Owner()
    try:
        adopted = adopt(value, owner)
    except (Opaque, RecursionError):
        record.opaque = True
        return
    data[key] = record.value = adopted
    record.text, record.owner = None, owner


def _operations_text(operations: list[Operation], key: str) -> str:
    """One key's operations as JSON text, without the brackets; raises ContextNotJSON naming the key."""
    return _json_text(operations, key)[1:-1]


@dataclass(slots=True)
class ReplayCost:
    """What rebuilding a context took: the snapshot's size and the patches applied after it."""

    snapshot_bytes: int = 0
    patches: int = 0
    patch_bytes: int = 0


class DamagedContext(ValueError):
    """What the store holds for a context cannot be read back (the file was edited or damaged)."""


def rebuild(rows: Iterable[StepRow]) -> tuple[dict[str, Any], ReplayCost]:
    """The context after the newest of `rows` (newest first, ending with a snapshot), and what it took.

    Raises DamagedContext, naming the step, when a snapshot is missing or a stored text does not apply."""
    pending = [row for row in rows if row.context is not None]
    if not pending or pending[-1].context_kind != "snapshot":
        raise DamagedContext("no snapshot of the context is stored before this point")
    snapshot = pending[-1].context or "{}"
    try:
        data: dict[str, Any] = json.loads(snapshot)
    except ValueError as exc:
        raise _damaged(pending[-1], exc) from None
    import jsonpatch  # only reading a stored context applies patches: recording a step makes them itself

    cost = ReplayCost(len(snapshot))
    for row in reversed(pending[:-1]):
        text = row.context or "[]"
        try:
            jsonpatch.apply_patch(data, json.loads(text), in_place=True)
        except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise _damaged(row, exc) from None
        cost.patches += 1
        cost.patch_bytes += len(text)
    if not isinstance(data, dict):
        raise _damaged(pending[0], TypeError("it is not an object"))
    return data, cost


def _damaged(row: StepRow, exc: Exception) -> DamagedContext:
    return DamagedContext(f"the context stored with step {row.step} of branch '{row.branch}' cannot be read: {exc}")
