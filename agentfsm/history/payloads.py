"""Large values of a run's trace, stored once: each long string as a payload under the digest of its text.

A string longer than `LARGE` characters leaves its trace entry for the run's `payloads`, and the
entry holds `{"$ref": DIGEST}`. A string that shares most of its text with the last one kept whole
at the same place of an entry (a prompt that embeds the same document with a new question, a
conversation rendered into one prompt that grew) is kept as a change of it (`TraceWrite` describes
the form), and a small change sits in the entry itself: storing what changed, not the whole text
again, is what keeps an always-on trace of long prompts cheap. Secrets this process has read are redacted before anything is digested or stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from agentfsm.bindings.known_secrets import known_secrets
from agentfsm.history.recorder import redacted
from agentfsm.store.base import inline_base  # noqa: F401 - the trace's readers take it from here

LARGE = 1024
"""Strings longer than this many characters are kept as payloads, once per run and digest."""

KNOWN_TEXTS = 512
"""How many stored strings a run remembers (to find a repeat by identity) before it starts over."""

KNOWN_CHARS = 8_000_000
"""How many characters of stored strings a run remembers before it starts over: a tool returning a new
5 MB document at every step must not keep hundreds of them alive after the context has let them go."""

def _json_default(value: Any) -> Any:
    """Values that are not JSON (a tool's odd result object) are kept as their text."""
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)


def dumps(value: Any) -> str:
    """Compact JSON text (one encoder, made once: `json.dumps` with options makes one per call)."""
    return _ENCODER.encode(value)


class Payloads:
    """Large strings moved out of entries, each kept once under the sha256 of its (redacted) JSON text.

    A string that shares most of its text with one kept whole before in the same place (a prompt
    that embeds the same document with a new question, a conversation rendered into one prompt
    that grew) is kept as a change of it: what differs, between the shared start and end (see
    `TraceWrite`). Storing what changed, not the whole text again, is what keeps an always-on trace
    of long prompts cheap. A change always refers to a whole payload, so reading one takes at most
    one more look-up.
    """

    __slots__ = ("known", "known_chars", "pending", "bases")

    def __init__(self) -> None:
        self.known: dict[int, tuple[str, dict[str, Any]]] = {}
        """id(text) -> (text, its stand-in) for the strings this run stored: a conversation sends the same message
        objects again at every call, and finding them by identity costs nothing, where hashing 50 KB does not.
        Holding the text keeps its id from being reused."""
        self.known_chars = 0
        """The characters the texts in `known` hold (bounded by KNOWN_CHARS)."""
        self.pending: dict[str, str] = {}
        """Digest -> JSON text not written yet."""
        self.bases: dict[str, tuple[str, str]] = {}
        """Where a string sits in an entry -> the last string kept whole there, and its digest."""

    def shrink(self, value: Any, depth: int = 0, slot: str = "") -> Any:
        """`value` with its long strings replaced by their stand-ins (`stand_in`).

        `slot` is where a string sits (`request.messages.0.content`): a change is sought of what was there
        before. Leaves that stay as they are (short strings, numbers) are passed over without a call: every
        LLM call's request and reply go through here."""
        if isinstance(value, str):
            return value if len(value) <= LARGE else self.stand_in(value, slot)
        if value is None or isinstance(value, bool | int | float) or depth > 60:
            return value
        if isinstance(value, dict):
            found = {}
            for key, item in value.items():
                kind = type(item)
                if item is None or kind in _SCALARS or (kind is str and len(item) <= LARGE):
                    found[key] = item
                else:
                    found[key] = self.shrink(item, depth + 1, f"{slot}.{key}")
            return found
        if isinstance(value, list | tuple):
            return [self.shrink(item, depth + 1, f"{slot}.{index}") for index, item in enumerate(value)]
        return value

    def stand_in(self, text: str, slot: str = "") -> dict[str, Any]:
        """What an entry holds instead of the long string `text`: `{"$ref": DIGEST}` of a payload (stored now
        if it is new: whole, or as a change of the slot's base), or, when the change is small, the change
        itself, in the entry (no payload row: a step that changes a few words of a long prompt writes those)."""
        known = self.known.get(id(text))
        if known is not None and known[0] is text:
            return known[1]
        base = self.bases.get(slot)
        if base is not None and base[0] == text:  # the same text again (a memcmp, no digest)
            return {"$ref": base[1]}
        if len(self.known) >= KNOWN_TEXTS or self.known_chars + len(text) > KNOWN_CHARS:  # what a long run holds
            self.known.clear()
            self.known_chars = 0
        secrets = known_secrets()
        # a text holding a secret is kept whole (redacted): a change must not split a secret across its base
        clean = not secrets or not any(secret in text for secret in secrets)
        change = _change(text, base) if clean and base is not None else None
        found: dict[str, Any]
        if change is not None and len(change["middle"]) <= LARGE:
            found = change
        else:
            data = dumps(text if change is None else change)
            if secrets:
                data = redacted(data)
            digest = "sha256:" + hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()
            if change is None and clean:
                self.bases[slot] = (text, digest)
            self.pending[digest] = data
            found = {"$ref": digest}
        self.known[id(text)] = (text, found)
        self.known_chars += len(text)
        return found

    def take(self) -> dict[str, str]:
        taken, self.pending = self.pending, {}
        return taken


_SCALARS = frozenset({bool, int, float})

_PROBE = 64
"""Characters compared first at each side of the shared part: where two prompts part is mostly near one side."""


def _common_start(a: str, b: str, limit: int) -> int:
    """How many first characters `a` and `b` share (at most `limit`)."""
    def same(low: int, high: int) -> bool:  # `b.startswith(slice, at)` compares without copying `b`
        return b.startswith(a[low:high], low)

    return _shared(same, limit)


def _common_end(a: str, b: str, limit: int) -> int:
    """How many last characters `a` and `b` share (at most `limit`)."""
    size_a, size_b = len(a), len(b)

    def same(low: int, high: int) -> bool:  # the characters `low` to `high` from the end
        return b.startswith(a[size_a - high:size_a - low], size_b - high)

    return _shared(same, limit)


def _shared(same: Callable[[int, int], bool], limit: int) -> int:
    """The length of the longest shared run from one side, `same(low, high)` telling whether positions `low`
    to `high` (counted from that side) hold the same characters in both texts. Looks near the side, then at
    the middle in one comparison, then near the far end, and halves the part where they differ."""
    near = min(_PROBE, limit)
    low, high = 0, near
    if same(0, near):
        far = max(limit - _PROBE, near)
        low, high = near, far
        if same(near, far):
            low, high = far, limit
            if same(far, limit):
                return limit
    while high - low > 1:  # [0, low) is shared, [low, high) is not: halve until they are neighbours
        middle = (low + high) // 2
        if same(low, middle):
            low = middle
        else:
            high = middle
    return low


def _change(text: str, base: tuple[str, str]) -> dict[str, Any] | None:
    """`text` as a change of `base` (text, digest), or None when they share less than half of `text`."""
    old, digest = base
    start = _common_start(old, text, min(len(old), len(text)))
    end = _common_end(old, text, min(len(old), len(text)) - start)
    if (start + end) * 2 < len(text):  # less than half of it is shared: keep it whole, as the next base
        return None
    return {"$base": digest, "start": start, "end": end, "middle": text[start:len(text) - end]}


def changed(base: str, change: dict[str, Any]) -> str:
    """The text a change stands for: the base's first `start` characters, `middle`, its last `end`."""
    end = change.get("end", 0)
    return base[:change.get("start", 0)] + change.get("middle", "") + (base[len(base) - end:] if end else "")


def restore(payloads: dict[str, Any], bases: dict[str, Any]) -> dict[str, Any]:
    """Decoded payloads (digest -> value) with every change put together from its base (`bases`: the whole
    payloads they refer to, decoded, that `payloads` lacks)."""
    restored = {}
    for digest, value in payloads.items():
        if isinstance(value, dict) and "$base" in value:
            base = payloads.get(value["$base"], bases.get(value["$base"]))
            if not isinstance(base, str):
                continue  # its base is missing: the entry keeps its `$ref`, as for any missing payload
            value = changed(base, value)
        restored[digest] = value
    return restored


def change_bases(payloads: dict[str, Any]) -> set[str]:
    """The digests of the bases that the decoded `payloads` refer to and do not hold."""
    return {value["$base"] for value in payloads.values()
            if isinstance(value, dict) and isinstance(value.get("$base"), str)} - payloads.keys()
