"""JSONPath, the context object (`$$.`) and intrinsic functions (`States.Format(...)`) as template expressions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from agentfsm.asl import context_object
from agentfsm.asl.exprs import Code, Lit, Value, expression, member
from agentfsm.asl.problems import AslInputError, Pointer, Refused
from agentfsm.spec.functions import HASHES, compiled_path, simple_path

CONTEXT_PATHS = {
    "$$.Execution.Id": Code("run.id"),
    "$$.Execution.Name": Code("run.id"),
    "$$.State.Name": Code("run.state"),
    "$$.Task.Token": Code('run.id ~ "/" ~ run.state'),
    "$$.State.EnteredTime": Code("now_timestamp()"),
}
"""The context object's fields with a meaning in a local run (a task token names the run and state: the task's
tool gives the callback's answer itself)."""

ARITY: dict[str, tuple[int, int | None]] = {
    "Format": (1, None), "StringToJson": (1, 1), "JsonToString": (1, 1), "Array": (0, None),
    "ArrayPartition": (2, 2), "ArrayContains": (2, 2), "ArrayRange": (3, 3), "ArrayGetItem": (2, 2),
    "ArrayLength": (1, 1), "ArrayUnique": (1, 1), "Base64Encode": (1, 1), "Base64Decode": (1, 1),
    "Hash": (2, 2), "JsonMerge": (3, 3), "MathRandom": (2, 3), "MathAdd": (2, 2), "StringSplit": (2, 2),
    "UUID": (0, 0),
}
"""The intrinsic functions and how many arguments each takes."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What paths are read against: the state's effective input, and the item of a map (if inside one)."""

    input: Value
    map_item: Value | None = None
    map_index: Value | None = None


def check_path(path: object, where: Pointer) -> str:
    """A JSONPath (`$...`) that parses; raises AslInputError otherwise."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise AslInputError(where, f"{json.dumps(path)} is not a JSONPath (it must start with $)")
    if path.startswith("$$"):
        return path
    if simple_path(path) is None:
        try:
            compiled_path(path)
        except Exception as exc:  # noqa: BLE001 - the parser raises several kinds; any is a bad path
            raise AslInputError(where, f"malformed JSONPath {path!r}: {str(exc).splitlines()[0]}") from None
    return path


def read_path(path: object, scope: Scope, where: Pointer) -> Value:
    """What a path (`$.a.b`, `$$.Execution.Id`, `$.items[*].id`) reads, as an expression."""
    text = check_path(path, where)
    if text.startswith("$$"):
        return context_path(text, scope, where)
    steps = simple_path(text)
    if steps is not None:
        return member(scope.input, steps)
    return Code(f"jsonpath({expression(scope.input)}, {json.dumps(text)})")


def context_path(text: str, scope: Scope, where: Pointer) -> Value:
    for prefix, value in (("$$.Map.Item.Value", scope.map_item), ("$$.Map.Item.Index", scope.map_index)):
        if text == prefix or text.startswith(prefix + ".") or text.startswith(prefix + "["):
            if value is None:
                raise Refused(where, f"{prefix} is read outside a Map's item processor")
            steps = simple_path("$" + text[len(prefix):])
            if steps is None:
                raise Refused(where, f"{text}: only plain keys and indexes are read below {prefix}")
            return member(value, steps)
    if text in CONTEXT_PATHS:
        return CONTEXT_PATHS[text]
    if text == "$$":
        return context_object.whole(CONTEXT_PATHS["$$.State.Name"], CONTEXT_PATHS["$$.State.EnteredTime"],
                                    CONTEXT_PATHS["$$.Task.Token"], scope.map_item, scope.map_index)
    steps = simple_path("$" + text[2:])
    if not steps:
        raise Refused(where, f"{text}: only plain keys and indexes are read in the context object")
    return context_object.kept_part(steps, text, where)


def reference_steps(path: object, where: Pointer) -> list[str] | None:
    """A ResultPath: the keys it names (`$` is []), None for `null`; refused when it is not a plain path."""
    if path is None:
        return None
    text = check_path(path, where)
    steps = simple_path(text) if not text.startswith("$$") else None
    if steps is None or any(isinstance(step, int) for step in steps):
        raise Refused(where, f"{text}: a result path must name keys only ($.a.b)")
    return [str(step) for step in steps]


# -- intrinsic functions ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
                    r"|(?P<word>null|true|false)\b|(?P<call>States\.[A-Za-z0-9]+)\s*\(|(?P<path>\$))")


def is_intrinsic(text: object) -> bool:
    return isinstance(text, str) and text.startswith("States.")


def intrinsic(text: str, scope: Scope, where: Pointer) -> Value:
    """`States.Format('Hi {}', $.name)` as `States.Format("Hi {}", run.data.name)`."""
    parser = _Intrinsic(text, scope, where)
    value = parser.call(0)
    if text[parser.end:].strip():
        raise AslInputError(where, f"unexpected text after the intrinsic function: {text[parser.end:].strip()!r}")
    return value


class _Intrinsic:
    def __init__(self, text: str, scope: Scope, where: Pointer) -> None:
        self.text, self.scope, self.where = text, scope, where
        self.end = 0

    def fail(self, message: str) -> AslInputError:
        return AslInputError(self.where, f"{message} (in {self.text!r})")

    def call(self, position: int) -> Value:
        match = _TOKEN.match(self.text, position)
        if match is None or match.group("call") is None:
            raise self.fail("expected an intrinsic function such as States.Format(...)")
        name = match.group("call").removeprefix("States.")
        if name not in ARITY:
            raise self.fail(f"unknown intrinsic function States.{name} (known: {', '.join(sorted(ARITY))})")
        args, position = self.arguments(match.end(), name)
        self.end = position
        low, high = ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            count = str(low) if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            raise self.fail(f"States.{name} takes {count} argument(s), got {len(args)}")
        self.check_literals(name, args)
        return Code(f"States.{name}(" + ", ".join(expression(arg) for arg in args) + ")")

    def arguments(self, position: int, name: str) -> tuple[list[Value], int]:
        args: list[Value] = []
        if self.text[position:].lstrip().startswith(")"):
            return args, self.text.index(")", position) + 1
        while True:
            value, position = self.argument(position, raw=(name == "Format" and not args))
            args.append(value)
            rest = self.text[position:].lstrip()
            position = len(self.text) - len(rest) + 1
            if rest.startswith(")"):
                return args, position
            if not rest.startswith(","):
                raise self.fail("expected ',' or ')' between arguments")

    def argument(self, position: int, raw: bool) -> tuple[Value, int]:
        match = _TOKEN.match(self.text, position)
        if match is None:
            raise self.fail("expected a string in quotes, a number, null, a path or a function")
        if match.group("string") is not None:
            return Lit(_unquote(match.group("string")[1:-1], raw)), match.end()
        if match.group("number") is not None:
            return Lit(json.loads(match.group("number"))), match.end()
        if match.group("word") is not None:
            return Lit(json.loads(match.group("word"))), match.end()
        if match.group("call") is not None:
            value = self.call(match.start("call"))
            return value, self.end
        end = _path_end(self.text, match.start("path"))
        return read_path(self.text[match.start("path"):end].strip(), self.scope, self.where), end

    def check_literals(self, name: str, args: list[Value]) -> None:
        first = args[0] if args else None
        if name == "Format" and not (isinstance(first, Lit) and isinstance(first.value, str)):
            raise self.fail("States.Format's first argument must be a string in quotes")
        if name == "Hash" and isinstance(args[1], Lit) and args[1].value not in HASHES:
            raise self.fail(f"States.Hash's algorithm must be one of {', '.join(HASHES)}")
        if name == "JsonMerge" and not (isinstance(args[2], Lit) and args[2].value is False):
            raise self.fail("States.JsonMerge's third argument must be false (a shallow merge)")
        for arg in args:
            if isinstance(arg, Lit) and isinstance(arg.value, str) and name in ("MathAdd", "ArrayRange"):
                raise self.fail(f"States.{name} takes numbers, got the string {arg.value!r}")


def _unquote(body: str, raw: bool) -> str:
    """A quoted argument's text: `\\'` is a quote, `\\\\` a backslash; States.Format keeps `\\{`, `\\}` for itself."""
    if raw:
        return re.sub(r"\\'", "'", body)
    return re.sub(r"\\(.)", r"\1", body)


def _path_end(text: str, start: int) -> int:
    """Where a path argument ends: at a ',' or ')' outside brackets and quotes."""
    depth, quote, index = 0, "", start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            if depth == 0:
                return index
            depth -= 1
        elif char == "," and depth == 0:
            return index
        index += 1
    return index
