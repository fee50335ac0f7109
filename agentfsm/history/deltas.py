"""Contexts as the store keeps them: a full snapshot now and then, RFC 6902 patches in between.

Storage grows with what changes, not with the size of the context: a step that changes
nothing stores nothing, a step that appends to a list stores one `add` operation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonpatch

from agentfsm.store.base import ContextKind, StepRow

SNAPSHOT_EVERY = 50
"""A full snapshot after this many changed steps, so rebuilding a context replays few patches..."""
SNAPSHOT_AT_MOST_EVERY = 1000
"""...unless the context is big and its changes small: then a snapshot waits until the patches since the last one
add up to a quarter of its size (or this many changed steps), so a 100 KB context that never changes is stored once."""


class ContextNotJSON(ValueError):
    """A state left a value in the context that JSON cannot hold, so the step cannot be stored."""


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_copy(value: Any, key: str) -> Any:
    """A private copy of a context value; raises ContextNotJSON naming the key when it is not JSON."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    try:
        return json.loads(dumps(value))
    except (TypeError, ValueError) as exc:
        raise ContextNotJSON(f"context key '{key}' holds a value that is not JSON ({exc})") from None


def _pointer(key: str) -> str:
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _same(old: Any, new: Any) -> bool:
    """Equal as JSON: `1 == True` in Python, but a run resumed from the store must see the same types.

    `==` (fast, in C) finds real changes first; equal containers are then walked for a type change.
    """
    if type(old) is not type(new) or old != new:
        return False
    if isinstance(new, dict):
        return all(_same(old[key], value) for key, value in new.items())
    if isinstance(new, list):
        return all(_same(a, b) for a, b in zip(old, new, strict=True))
    return True


class ContextTracker:
    """Turns each step's context into what the store records for it (kind and JSON text), remembering the last one."""

    __slots__ = ("_last", "changes_since_snapshot", "patch_bytes", "snapshot_bytes", "snapshot_every")

    def __init__(self, data: dict[str, Any], *, since: ReplayCost | None = None,
                 snapshot_every: int = SNAPSHOT_EVERY) -> None:
        self._last = {key: _json_copy(value, key) for key, value in data.items()}
        since = since or ReplayCost()
        self.changes_since_snapshot = since.patches
        self.patch_bytes = since.patch_bytes
        self.snapshot_bytes = since.snapshot_bytes
        self.snapshot_every = snapshot_every

    def snapshot(self) -> str:
        """The last recorded context in full."""
        text = dumps(self._last)
        self.changes_since_snapshot = self.patch_bytes = 0
        self.snapshot_bytes = len(text)
        return text

    def _snapshot_due(self) -> bool:
        if self.changes_since_snapshot < self.snapshot_every:
            return False
        return self.patch_bytes * 4 >= self.snapshot_bytes or self.changes_since_snapshot >= SNAPSHOT_AT_MOST_EVERY

    def change(self, data: dict[str, Any]) -> tuple[ContextKind | None, str | None]:
        """What to store for a step that left the context as `data`: (None, None) when nothing changed."""
        last = self._last
        changed = [key for key, value in data.items() if key not in last or not _same(last[key], value)]
        removed = [key for key in last if key not in data]
        if not changed and not removed:
            return None, None
        operations: list[dict[str, Any]] = [{"op": "remove", "path": _pointer(key)} for key in removed]
        for key in removed:
            del last[key]
        for key in changed:
            new = _json_copy(data[key], key)
            old = last.get(key, _MISSING)
            if old is _MISSING:
                operations.append({"op": "add", "path": _pointer(key), "value": new})
            elif isinstance(old, dict | list) and type(old) is type(new):
                # fine-grained: appending a message to a list of 500 stores one operation, not the list
                operations.extend(jsonpatch.make_patch({key: old}, {key: new}).patch)
            else:
                operations.append({"op": "replace", "path": _pointer(key), "value": new})
            last[key] = new
        self.changes_since_snapshot += 1
        if self._snapshot_due():
            return "snapshot", self.snapshot()
        text = dumps(operations)
        self.patch_bytes += len(text)
        return "patch", text


_MISSING = object()


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
