"""RFC 6902 operations turning what was recorded under a context key into what is there now.

The old side is what the tracker recorded: JSON read back from text, or a key owner's
tracked containers, read through their notes (a tracked container's recorded items are
its note's, see `tracked.py`). The new side is the value as it is now. Identity is the
shortcut: an object on both sides is unchanged unless it is a tracked container with
changes of its own (then only those are diffed), so the cost follows what changed.

Types are JSON's: `1`, `1.0` and `True` are three different values (Python finds them
equal), and a run resumed from the store must see the one it left.
"""

from __future__ import annotations

from typing import Any

from agentfsm.history.tracked import MISSING, SCALARS, TRACKED, Opaque, Owner, TrackedDict, TrackedList

Operation = dict[str, Any]


def pointer(key: str) -> str:
    """`key` as one segment of a JSON pointer; raises Opaque for a key that is not a string."""
    if type(key) is not str:
        raise Opaque
    return "/" + key.replace("~", "~0").replace("/", "~1")


class Differ:
    """Collects the operations for one key; `deep` says whether containers below the key's value changed in place."""

    __slots__ = ("deep", "operations", "owner")

    def __init__(self, owner: Owner | None, deep: bool) -> None:
        self.owner = owner
        self.deep = deep
        self.operations: list[Operation] = []

    def _owned(self, value: Any) -> bool:
        kind = type(value)
        return (kind is TrackedList or kind is TrackedDict) and value._owner is self.owner is not None

    def _hot(self, value: Any) -> bool:
        """Whether `value` is one of the owner's containers that changed, or may hold one that did."""
        kind = type(value)
        return ((kind is TrackedList or kind is TrackedDict) and value._owner is self.owner is not None
                and (value._note is not None or not value._leaf))

    def _recorded(self, value: Any) -> Any:
        """The recorded items of an old container: its note's for one of the owner's, itself for plain JSON."""
        if not self._owned(value):
            return value
        note = value._note
        if note is None:
            return value
        if type(value) is TrackedDict:
            items = dict(value)
            for key, old in note.items():
                if old is MISSING:
                    items.pop(key, None)
                else:
                    items[key] = old
            return items
        return list.__getitem__(value, slice(0, note)) if type(note) is int else note

    def value(self, path: str, old: Any, new: Any) -> None:
        """Operations turning `old` (recorded) into `new` (current) at `path`."""
        if old is new:
            if self.deep and self._hot(new):
                self.settle(path, new)
            return
        old_kind, new_kind = type(old), type(new)
        if old_kind in SCALARS and new_kind in SCALARS:
            if old_kind is not new_kind or old != new:
                self.operations.append({"op": "replace", "path": path, "value": new})
        elif isinstance(old, list) and isinstance(new, list):
            self.lists(path, old, new)
        elif isinstance(old, dict) and isinstance(new, dict):
            self.dicts(path, self._recorded(old), new)
        else:
            self.operations.append({"op": "replace", "path": path, "value": new})

    def settle(self, path: str, node: TrackedList | TrackedDict) -> None:
        """Operations for one of the owner's containers that stayed where it was: its own changes, then (if deep)
        those of the containers in it."""
        if isinstance(node, TrackedDict):
            self._settle_entries(path, node)
        elif isinstance(node._note, list):
            self.lists(path, node, node)
        else:
            grown = len(node) if node._note is None else node._note
            if self.deep:
                hot = self._hot
                for index, item in enumerate(node if grown == len(node) else node[:grown]):
                    if type(item) in TRACKED and hot(item):
                        self.settle(f"{path}/{index}", item)
            for index in range(grown, len(node)):
                self.operations.append({"op": "add", "path": f"{path}/{index}", "value": node[index]})

    def _settle_entries(self, path: str, node: TrackedDict) -> None:
        note = node._note
        if note is not None:
            for key, old in note.items():
                self.entry(path + pointer(key), old, dict.get(node, key, MISSING))
        if self.deep:
            hot = self._hot
            for key, item in node.items():
                if (note is None or key not in note) and hot(item):
                    self.settle(path + pointer(key), item)

    def entry(self, path: str, old: Any, new: Any) -> None:
        """A dict entry: removed, added or changed."""
        if new is MISSING:
            if old is not MISSING:
                self.operations.append({"op": "remove", "path": path})
        elif old is MISSING:
            self.operations.append({"op": "add", "path": path, "value": new})
        else:
            self.value(path, old, new)

    def dicts(self, path: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key in old:
            if key not in new:
                self.operations.append({"op": "remove", "path": path + pointer(key)})
        for key, item in new.items():
            self.entry(path + pointer(key), old.get(key, MISSING), item)

    def lists(self, path: str, old_list: list[Any], new: list[Any]) -> None:
        """Matched ends (identical or equal items) stay; the middle is diffed, then the identical items settled."""
        old = self._recorded(old_list)
        head = _known_prefix(old_list, new, self.owner)
        shortest = min(len(old), len(new))
        equal = self.equal
        while head < shortest:
            before, after = old[head], new[head]
            if before is not after and not equal(before, after):
                break
            head += 1
        tail = 0
        while tail < shortest - head:
            before, after = old[-1 - tail], new[-1 - tail]
            if before is not after and not equal(before, after):
                break
            tail += 1
        kept = self._middle(path, old[head:len(old) - tail], new[head:len(new) - tail], head)
        if self.deep:
            kept += [index for index in range(head) if new[index] is old[index]]
            kept += [len(new) - 1 - back for back in range(tail) if new[-1 - back] is old[-1 - back]]
            for index in kept:
                if self._hot(new[index]):
                    self.settle(f"{path}/{index}", new[index])

    def _middle(self, path: str, old: list[Any], new: list[Any], offset: int) -> list[int]:
        """Operations for the unmatched middle of a list (at `offset`); returns where identical items were kept.

        Walks both sides: an item the new side has further on means the old items before it were removed, an
        old item the new side has further on means new items were inserted before it, anything else is
        diffed in place."""
        further_old = {id(item): index for index, item in enumerate(old) if type(item) not in SCALARS}
        further_new = {id(item): index for index, item in enumerate(new) if type(item) not in SCALARS}
        kept: list[int] = []
        i = j = 0
        while i < len(old) and j < len(new):
            before, after = old[i], new[j]
            if before is after:
                kept.append(offset + j)
                i, j = i + 1, j + 1
            elif (k := further_old.get(id(after), -1)) > i and old[k] is after:
                for _ in range(k - i):
                    self.operations.append({"op": "remove", "path": f"{path}/{offset + j}"})
                i = k
            elif (k := further_new.get(id(before), -1)) > j and new[k] is before:
                for index in range(j, k):
                    self.operations.append({"op": "add", "path": f"{path}/{offset + index}", "value": new[index]})
                j = k
            else:
                self.value(f"{path}/{offset + j}", before, after)
                i, j = i + 1, j + 1
        for _ in range(i, len(old)):
            self.operations.append({"op": "remove", "path": f"{path}/{offset + j}"})
        for index in range(j, len(new)):
            self.operations.append({"op": "add", "path": f"{path}/{offset + index}", "value": new[index]})
        return kept

    def equal(self, old: Any, new: Any) -> bool:
        """Equal as JSON, types included; an identical container with changes below it is not known to be equal."""
        if old is new:
            return not (self.deep and self._hot(old))
        old_kind, new_kind = type(old), type(new)
        if old_kind in SCALARS or new_kind in SCALARS:
            return old_kind is new_kind and old == new
        if isinstance(old, list) and isinstance(new, list):
            items = self._recorded(old)
            return len(items) == len(new) and all(map(self.equal, items, new))
        if isinstance(old, dict) and isinstance(new, dict):
            items = self._recorded(old)
            return items.keys() == new.keys() and all(self.equal(items[key], new[key]) for key in items)
        return False


def _known_prefix(old: list[Any], new: list[Any], owner: Owner | None) -> int:
    """How many leading items of `new` are `old`'s recorded ones, when `new` was built as `old + [...]`."""
    if type(new) is not TrackedList or new._origin is None:
        return 0
    base, origin_owner, cycle, known = new._origin
    if base is not old or origin_owner is not owner or cycle != origin_owner.cycle:
        return 0
    return known
