"""Lists and dicts that note their own changes, so that recording a step costs what changed, not what is there.

A recorded run's context keeps its big lists and dicts as `TrackedList` and `TrackedDict`:
subclasses that behave as `list` and `dict` do (equality, `isinstance`, `json.dumps`,
Jinja, pydantic; `copy.copy`, `copy.deepcopy` and pickling give plain lists and dicts),
and that, on their first change after a recorded step, note what they were: a list that
only grew notes its length, any other list a shallow copy of its items, a dict the old
value of each key it changes. `ContextTracker` reads those notes to write the step's
patch without looking at what did not change (see `jsondiff.py`).

Every tracked container belongs to an `Owner`, one per context key, which lists the
containers changed since the last recorded step. Between steps, every list or dict
reachable from a tracked key is a tracked container of that key's owner: the tracker
adopts (copies, once) the plain ones a step put there.

What is not seen: changes made through `list` or `dict` themselves (`list.append(x, 1)`)
and by C code that writes a list directly (the `heapq` functions). A state must not keep
a context value across steps either: the tracker may have replaced it with its tracked
copy (and a run resumed from the store gets new objects anyway).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, SupportsIndex

SCALARS = frozenset({str, int, float, bool, type(None)})
"""The exact types of JSON's atoms; their subclasses (enums...) are not JSON's and are compared as text."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""A dict key that was not there."""


class Opaque(Exception):  # noqa: N818 - a signal, not an error a user sees
    """A value holds what JSON has no type for (a tuple, a subclass, a key that is not a string): not tracked."""


class Owner:
    """One context key's tracked containers: those changed since the last recorded step, and how often it changed."""

    __slots__ = ("changed", "cycle")

    def __init__(self) -> None:
        self.changed: list[TrackedList | TrackedDict] = []
        self.cycle = 0
        """Counts the recorded steps that changed the key; a list built by `+` knows its origin for one cycle."""

    def reset(self) -> None:
        """Forget the changes just recorded: each container's note starts afresh."""
        for container in self.changed:
            container._note = None
        self.changed.clear()
        self.cycle += 1


class TrackedList(list[Any]):
    """A list that notes its first change after a recorded step (see the module docstring)."""

    __slots__ = ("_leaf", "_note", "_origin", "_owner")

    def __init__(self, *args: Iterable[Any]) -> None:
        self._owner: Owner | None = None
        self._note: int | list[Any] | None = None
        """None: unchanged; an int: only grown since it had that length; a list: the items it had."""
        self._leaf = False
        """True: it held only atoms when last recorded (so, unchanged, nothing below it changed either)."""
        self._origin: tuple[TrackedList, Owner, int, int] | None = None
        """For a list built by `base + other`: (base, its owner, the owner's cycle, how many leading items are
        base's recorded items), so a reassignment like `messages = messages + [m]` is seen as an append."""
        super().__init__(*args)

    def _grow(self) -> None:
        if self._note is None and self._owner is not None:
            self._note = len(self)
            self._owner.changed.append(self)

    def _change(self) -> None:
        owner = self._owner
        if owner is None:
            self._origin = None  # its items may no longer be its base's
            return
        note = self._note
        if note is None:
            self._note = list(self)
            owner.changed.append(self)
        elif type(note) is int:
            self._note = list.__getitem__(self, slice(0, note))

    def recorded_length(self) -> int:
        """How many leading items are, one for one, the items recorded at the last step."""
        note = self._note
        if note is None:
            return len(self)
        return note if type(note) is int else 0

    def append(self, item: Any) -> None:
        self._grow()
        list.append(self, item)

    def extend(self, items: Iterable[Any]) -> None:
        self._grow()
        list.extend(self, items)

    def __iadd__(self, items: Iterable[Any]) -> TrackedList:  # type: ignore[override,misc]
        self._grow()
        list.extend(self, items)
        return self

    def insert(self, index: SupportsIndex, item: Any) -> None:
        self._change()
        list.insert(self, index, item)

    def remove(self, item: Any) -> None:
        self._change()
        list.remove(self, item)

    def pop(self, index: SupportsIndex = -1) -> Any:
        self._change()
        return list.pop(self, index)

    def clear(self) -> None:
        self._change()
        list.clear(self)

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._change()
        list.sort(self, *args, **kwargs)

    def reverse(self) -> None:
        self._change()
        list.reverse(self)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._change()
        list.__setitem__(self, index, value)

    def __delitem__(self, index: Any) -> None:
        self._change()
        list.__delitem__(self, index)

    def __imul__(self, times: SupportsIndex) -> TrackedList:  # type: ignore[override,misc]
        self._change()
        list.__imul__(self, times)
        return self

    def __add__(self, other: Any) -> Any:
        if not isinstance(other, list):
            return NotImplemented
        joined = TrackedList(self)
        list.extend(joined, other)
        owner = self._owner
        if owner is not None:
            joined._origin = (self, owner, owner.cycle, self.recorded_length())
        return joined

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        plain: list[Any] = []
        memo[id(self)] = plain
        plain.extend(copy.deepcopy(item, memo) for item in self)
        return plain

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (list, (list(self),))


class TrackedDict(dict[str, Any]):
    """A dict that notes the old value of each key it changes after a recorded step (see the module docstring)."""

    __slots__ = ("_leaf", "_note", "_owner")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._owner: Owner | None = None
        self._note: dict[str, Any] | None = None
        """None: unchanged; else the value each changed key had (MISSING: it was not there)."""
        self._leaf = False
        """True: it held only atoms when last recorded (so, unchanged, nothing below it changed either)."""
        super().__init__(*args, **kwargs)

    def _touch(self, key: Any) -> None:
        owner = self._owner
        if owner is None:
            return
        note = self._note
        if note is None:
            note = self._note = {}
            owner.changed.append(self)
        if key not in note:
            note[key] = dict.get(self, key, MISSING)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._touch(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._touch(key)
        dict.__delitem__(self, key)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self._touch(key)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        if self:
            self._touch(next(reversed(self)))
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._touch(key)
        return dict.setdefault(self, key, default)

    def clear(self) -> None:
        for key in self:
            self._touch(key)
        dict.clear(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        values = dict(*args, **kwargs)
        for key in values:
            self._touch(key)
        dict.update(self, values)

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        memo[id(self)] = plain
        for key, item in self.items():
            plain[copy.deepcopy(key, memo)] = copy.deepcopy(item, memo)
        return plain

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (dict, (dict(self),))


TRACKED = (TrackedList, TrackedDict)


def owned(value: Any, owner: Owner) -> bool:
    """Whether `value` is a tracked container of `owner`."""
    kind = type(value)
    return (kind is TrackedList or kind is TrackedDict) and value._owner is owner


def adopt(value: Any, owner: Owner) -> Any:
    """`value` as `owner`'s: atoms and its own containers as they are, any other list or dict copied as tracked.

    A list built by `+` from one of the owner's lists is taken over without a copy. Raises Opaque when
    `value` holds something other than JSON's types."""
    kind = type(value)
    if kind in SCALARS:
        return value
    if kind is TrackedList or kind is TrackedDict:
        if value._owner is owner:
            return value
        if kind is TrackedList and _take_over(value, owner):
            return value
    if kind is list or kind is TrackedList:
        adopted: TrackedList | TrackedDict = TrackedList([adopt(item, owner) for item in value])
        items: Iterable[Any] = adopted
    elif kind is dict or kind is TrackedDict:
        adopted = TrackedDict()
        for key, item in value.items():
            if type(key) is not str:
                raise Opaque
            dict.__setitem__(adopted, key, adopt(item, owner))
        items = adopted.values()
    else:
        raise Opaque
    adopted._owner = owner
    adopted._leaf = _atoms(items)
    return adopted


def _atoms(items: Iterable[Any]) -> bool:
    """Whether every item is an atom."""
    return all(type(item) in SCALARS for item in items)


def _take_over(value: TrackedList, owner: Owner) -> bool:
    """Adopt a list built by `+` from `owner`'s list in place: its leading items are the owner's already."""
    origin = value._origin
    if origin is None or origin[1] is not owner or origin[2] != owner.cycle or value._owner is not None:
        return False
    value._origin = None
    for index in range(origin[3], len(value)):
        item = list.__getitem__(value, index)
        if type(item) not in SCALARS:
            list.__setitem__(value, index, adopt(item, owner))
    value._owner = owner
    return True


def adopt_changes(owner: Owner) -> None:
    """Adopt what the owner's changed containers were given since the last recorded step; raises Opaque.

    A container stays a leaf if it was one and was given only atoms (a list with other changes is looked at
    whole); otherwise it is not taken for one, which only costs a look below it on a later step."""
    for container in owner.changed:
        if isinstance(container, TrackedDict):
            container._leaf = _adopt_entries(container, owner)
        else:
            container._leaf = _adopt_items(container, owner)


def _adopt_entries(container: TrackedDict, owner: Owner) -> bool:
    """Adopt the values of the keys a dict changed; whether it is still known to hold only atoms."""
    leaf = container._leaf
    for key in container._note or ():
        if key in container:
            if type(key) is not str:
                raise Opaque
            item = dict.__getitem__(container, key)
            if type(item) not in SCALARS:
                leaf = False
                if not owned(item, owner):
                    dict.__setitem__(container, key, adopt(item, owner))
    return leaf


def _adopt_items(container: TrackedList, owner: Owner) -> bool:
    """Adopt the items a list was given (only the new ones if it only grew); whether it holds only atoms."""
    note = container._note
    start = note if isinstance(note, int) else 0
    leaf = container._leaf or start == 0
    for index, item in enumerate(list.__getitem__(container, slice(start, None)), start):
        kind = type(item)
        if kind not in SCALARS:
            leaf = False
            if not ((kind is TrackedList or kind is TrackedDict) and item._owner is owner):
                list.__setitem__(container, index, adopt(item, owner))
    return leaf
