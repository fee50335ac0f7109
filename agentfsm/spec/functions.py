"""Template functions beyond Jinja's: Amazon States Language's intrinsics (`States.Format(...)`), JSON paths,
and the tests a Step Functions `Choice` compares with.

They give the results the ASL specification gives, so a machine brought in by `agentfsm import` computes what
Step Functions would. Every one returns a new value: none changes what it is given (templates see the context
read-only). A wrong argument raises ValueError or TypeError, which a render reports as `template.error`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import random
import re
import uuid
import warnings
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
from typing import Any

from agentfsm.spec.timestamps import is_rfc3339, parse_timestamp

MAX_RANGE = 1000
"""States.ArrayRange gives at most this many items (the limit Step Functions sets)."""
MAX_BASE64 = 10_000
HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
ASL_ERROR_NAMES = {"timeout": "States.Timeout", "tool.error": "States.TaskFailed",
                   "template.error": "States.Runtime", "tool.unbound": "States.TaskFailed"}
"""Our error types as ASL names them (the reverse of what `agentfsm import` maps Retry/Catch onto)."""


def is_number(value: Any) -> bool:
    """A JSON number: an int or a finite float, not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Intrinsics:
    """`States.NAME(...)` in templates: Amazon States Language's intrinsic functions."""

    def Format(self, template: str, *args: Any) -> str:  # noqa: N802 - the names ASL gives them
        """`{}` takes the next argument (text as it is, other values as JSON); `\\{` and `\\}` are braces."""
        _need(isinstance(template, str), "States.Format: the first argument must be a string")
        out: list[str] = []
        values = list(args)
        index = 0
        while index < len(template):
            char = template[index]
            if char == "\\" and index + 1 < len(template) and template[index + 1] in "{}\\'":
                out.append(template[index + 1])
                index += 2
                continue
            if template.startswith("{}", index):
                _need(bool(values), "States.Format: more {} than arguments")
                value = values.pop(0)
                _need(not isinstance(value, dict | list), "States.Format: an argument is an object or an array")
                out.append(value if isinstance(value, str) else _json_text(value))
                index += 2
                continue
            out.append(char)
            index += 1
        _need(not values, "States.Format: more arguments than {}")
        return "".join(out)

    def StringToJson(self, text: str) -> Any:  # noqa: N802
        _need(isinstance(text, str), "States.StringToJson: the argument must be a string")
        return json.loads(text)

    def JsonToString(self, value: Any) -> str:  # noqa: N802
        return _json_text(value)

    def Array(self, *items: Any) -> list[Any]:  # noqa: N802
        return list(items)

    def ArrayPartition(self, items: list[Any], size: int) -> list[list[Any]]:  # noqa: N802
        _need(isinstance(items, list), "States.ArrayPartition: the first argument must be an array")
        _need(is_number(size) and size == int(size) and size > 0, "States.ArrayPartition: the size must be a "
              "positive integer")
        size = int(size)
        return [items[start:start + size] for start in range(0, len(items), size)]

    def ArrayContains(self, items: list[Any], value: Any) -> bool:  # noqa: N802
        _need(isinstance(items, list), "States.ArrayContains: the first argument must be an array")
        return any(_same(item, value) for item in items)

    def ArrayRange(self, start: int, end: int, step: int) -> list[int]:  # noqa: N802
        _need(all(is_number(n) and n == int(n) for n in (start, end, step)) and step != 0,
              "States.ArrayRange: start, end and a step other than 0 must be integers")
        start, end, step = int(start), int(end), int(step)
        count = max(0, (end - start) // step + 1)
        _need(count <= MAX_RANGE, f"States.ArrayRange: more than {MAX_RANGE} items")
        return list(range(start, end + (1 if step > 0 else -1), step))

    def ArrayGetItem(self, items: list[Any], index: int) -> Any:  # noqa: N802
        _need(isinstance(items, list), "States.ArrayGetItem: the first argument must be an array")
        _need(is_number(index) and index == int(index) and 0 <= index < len(items),
              "States.ArrayGetItem: the index is not one of the array's")
        return items[int(index)]

    def ArrayLength(self, items: list[Any]) -> int:  # noqa: N802
        _need(isinstance(items, list), "States.ArrayLength: the argument must be an array")
        return len(items)

    def ArrayUnique(self, items: list[Any]) -> list[Any]:  # noqa: N802
        _need(isinstance(items, list), "States.ArrayUnique: the argument must be an array")
        unique: list[Any] = []
        for item in items:
            if not any(_same(item, kept) for kept in unique):
                unique.append(item)
        return unique

    def Base64Encode(self, text: str) -> str:  # noqa: N802
        _need(isinstance(text, str) and len(text) <= MAX_BASE64, "States.Base64Encode: the argument must be a "
              f"string of at most {MAX_BASE64} characters")
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    def Base64Decode(self, text: str) -> str:  # noqa: N802
        _need(isinstance(text, str) and len(text) <= MAX_BASE64, "States.Base64Decode: the argument must be a "
              f"string of at most {MAX_BASE64} characters")
        return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")

    def Hash(self, data: str, algorithm: str) -> str:  # noqa: N802
        _need(isinstance(data, str), "States.Hash: the data must be a string")
        _need(algorithm in HASHES, f"States.Hash: the algorithm must be one of {', '.join(HASHES)}")
        return hashlib.new(HASHES[algorithm], data.encode("utf-8")).hexdigest()

    def JsonMerge(self, left: dict[str, Any], right: dict[str, Any], deep: bool = False) -> dict[str, Any]:  # noqa: N802
        _need(isinstance(left, dict) and isinstance(right, dict), "States.JsonMerge: both must be objects")
        _need(deep is False, "States.JsonMerge: only a shallow merge (false) is defined")
        return {**left, **right}

    def MathRandom(self, start: int, end: int, seed: int | None = None) -> int:  # noqa: N802
        _need(is_number(start) and is_number(end) and int(start) < int(end),
              "States.MathRandom: start must be a number below end")
        generator = random.Random(seed) if seed is not None else random
        return generator.randrange(int(start), int(end))

    def MathAdd(self, left: int | float, right: int | float) -> int | float:  # noqa: N802
        _need(is_number(left) and is_number(right), "States.MathAdd: both arguments must be numbers")
        return left + right

    def StringSplit(self, text: str, delimiters: str) -> list[str]:  # noqa: N802
        _need(isinstance(text, str) and isinstance(delimiters, str) and delimiters != "",
              "States.StringSplit: both arguments must be strings (the second not empty)")
        return [part for part in re.split("[" + re.escape(delimiters) + "]", text) if part]

    def UUID(self) -> str:  # noqa: N802
        return str(uuid.uuid4())


def _same(left: Any, right: Any) -> bool:
    """JSON equality: `1` is not `true`."""
    return _json_text(left) == _json_text(right) if isinstance(left, dict | list) else (
        type(left) is type(right) or (is_number(left) and is_number(right))) and left == right


# -- JSON paths -------------------------------------------------------------------------------------

_SIMPLE_STEP = re.compile(r"\.([A-Za-z_$][A-Za-z0-9_${}-]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\[\"((?:[^\"\\]|\\.)*)\"\]")


def simple_path(path: str) -> list[str | int] | None:
    """The keys and indexes of a path such as `$.a.b[0]['c d']`, or None when it has wildcards, filters, slices."""
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _SIMPLE_STEP.match(path, position)
        if match is None:
            return None
        name, index, single, double = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else re.sub(r"\\(.)", r"\1", single or double or ""))
        position = match.end()
    return steps


def _walk(value: Any, steps: Sequence[str | int]) -> tuple[bool, Any]:
    for step in steps:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return False, None
    return True, value


@functools.lru_cache(maxsize=256)
def compiled_path(path: str) -> Any:
    """A JSON path with wildcards or filters, parsed (raises on a malformed one)."""
    from jsonpath_ng.ext import parse  # only machines with such paths need it

    with warnings.catch_warnings():  # the parser warns about unquoted words, which ASL's samples use
        warnings.simplefilter("ignore")
        return parse(re.sub(r"\.\[", "[", path))  # `$.[0]` is Step Functions' `$[0]`


def jsonpath(value: Any, path: str) -> Any:
    """What a JSON path selects in `value`: one value for a definite path, a list for wildcards and filters."""
    steps = simple_path(path)
    if steps is not None:
        found, selected = _walk(value, steps)
        _need(found, f"the path {path} selects nothing")
        return selected
    return [match.value for match in compiled_path(path).find(value)]


def has_path(value: Any, path: str) -> bool:
    """Whether the path selects something in `value` (ASL's `IsPresent`)."""
    steps = simple_path(path)
    if steps is not None:
        return _walk(value, steps)[0]
    return bool(compiled_path(path).find(value))


def set_path(document: Any, steps: Sequence[str | int], value: Any) -> Any:
    """A copy of `document` with `value` at `steps` (ASL's `ResultPath`: missing objects on the way are made)."""
    if not steps:
        return value
    _need(isinstance(document, dict), "the result path goes through a value that is not an object")
    merged = dict(document)
    step = steps[0]
    _need(isinstance(step, str), "a result path names keys, not array items")
    merged[step] = set_path(merged.get(step, {}), steps[1:], value)
    return merged


def now_timestamp() -> str:
    """The current time as ISO 8601 in UTC with milliseconds (`2026-03-14T01:59:00.123Z`), as Step Functions
    writes `$$.State.EnteredTime`."""
    moment = datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def omit(value: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A copy of an object without some keys."""
    _need(isinstance(value, dict), "omit: the value must be an object")
    return {key: item for key, item in value.items() if key not in keys}


def error_object(error: Any) -> dict[str, Any]:
    """A caught error (`{type, message, ...}`) as Step Functions shows one: `{Error, Cause}`."""
    if not isinstance(error, dict):
        return {"Error": "States.Runtime", "Cause": str(error)}
    kind = str(error.get("type"))
    detail = error.get("detail")
    if kind == "fail" and isinstance(detail, dict) and "error" in detail:
        return {"Error": detail.get("error"), "Cause": detail.get("cause")}
    return {"Error": ASL_ERROR_NAMES.get(kind, kind), "Cause": error.get("message")}


# -- Choice's tests ---------------------------------------------------------------------------------


def is_timestamp(value: Any) -> bool:
    return is_rfc3339(value)


def to_epoch(value: Any) -> float:
    """A timestamp's seconds since the epoch."""
    moment = parse_timestamp(value) if isinstance(value, str) else None
    _need(moment is not None, f"{str(value)[:40]!r} is not a timestamp")
    return moment  # type: ignore[return-value]


def matches_wildcard(value: Any, pattern: str) -> bool:
    """ASL's `StringMatches`: `*` matches any text, `\\*` a star, `\\\\` a backslash."""
    if not isinstance(value, str):
        return False
    regex = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        index += 1
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None


def is_numeric(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


GLOBALS: dict[str, Any] = {
    "States": Intrinsics(),
    "jsonpath": jsonpath,
    "has_path": has_path,
    "set_path": set_path,
    "omit": omit,
    "now_timestamp": now_timestamp,
    "error_object": error_object,
}
TESTS: dict[str, Callable[..., bool]] = {"numeric": is_numeric, "timestamp": is_timestamp,
                                         "wildcard": matches_wildcard}
FILTERS: dict[str, Callable[..., Any]] = {"to_epoch": to_epoch}
