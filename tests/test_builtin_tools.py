"""The builtins (`now`, `json_query`, `read_file`, `calculator`) and the argument checks of Python tools.

Every case writes a machine to tmp_path and runs it with `agentfsm.run`, asserting what a
user sees: the saved result, or the error's type and one-line message.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import load_machine, validate_file
from agentfsm.bindings.imports import BindingError
from agentfsm.runtime.loop import RunResult

_modules = itertools.count()


def write_machine(folder: Path, tool: dict[str, Any], args: dict[str, Any] | str, name: str = "m.yaml") -> Path:
    """One `tool` state calling binding `t` with `args` (which may read the input `x`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    rendered_args = args if isinstance(args, str) else json.dumps(args)
    path.write_text(
        "agentfsm: 1\n"
        "name: builtin-test\n"
        "inputs: {x: {type: any}}\n"
        f"tools:\n  t: {json.dumps(tool)}\n"
        "initial: call\n"
        "states:\n"
        f"  call: {{type: tool, tool: t, args: {rendered_args}, save: r, next: end}}\n"
        "  end: {type: final, output: '{{ r }}'}\n",
        encoding="utf-8",
    )
    return path


def run(path: Path, x: Any = None) -> RunResult:
    return asyncio.run(agentfsm.run(path, {"x": x}))


def problems(path: Path) -> list[str]:
    return [str(problem) for problem in validate_file(path).problems]


# -- now -------------------------------------------------------------------------------------


def test_now_returns_iso_8601_in_utc_by_default_and_in_a_named_zone(tmp_path: Path) -> None:
    before = datetime.datetime.now(datetime.UTC)
    utc = run(write_machine(tmp_path, {"builtin": "now"}, {}))
    tokyo = run(write_machine(tmp_path, {"builtin": "now"}, {"timezone": "Asia/Tokyo"}))
    after = datetime.datetime.now(datetime.UTC)

    parsed = datetime.datetime.fromisoformat(utc.output)
    assert parsed.utcoffset() == datetime.timedelta(0)
    assert before <= parsed <= after
    in_tokyo = datetime.datetime.fromisoformat(tokyo.output)
    assert in_tokyo.utcoffset() == datetime.timedelta(hours=9)
    assert before <= in_tokyo <= after


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", ""])
def test_now_refuses_an_unknown_zone(tmp_path: Path, zone: str) -> None:
    result = run(write_machine(tmp_path, {"builtin": "now"}, {"timezone": "{{ x }}"}), zone)
    assert result.error["type"] == "tool.bad_arguments"
    assert "unknown time zone" in result.error["message"]
    assert result.error["detail"]["tool"] == "t"


def test_a_builtin_refuses_unknown_and_missing_arguments(tmp_path: Path) -> None:
    unknown = run(write_machine(tmp_path, {"builtin": "now"}, {"tz": "UTC"}))
    assert unknown.error["type"] == "tool.bad_arguments"
    assert unknown.error["message"] == "tool 't': unexpected argument 'tz' (it takes timezone)"

    missing = run(write_machine(tmp_path, {"builtin": "calculator"}, {}))
    assert missing.error["type"] == "tool.bad_arguments"
    assert missing.error["message"] == "tool 't': missing required argument 'expression'"

    assert run(write_machine(tmp_path, {"builtin": "calculator"}, {"expression": "6 * 7"})).output == 42


# -- json_query ------------------------------------------------------------------------------

DATA = {"a": {"b": [{"c": 1}, {"c": [10, 20]}]}, "key with spaces": "yes", "n": None}


@pytest.mark.parametrize(("path", "expected"), [
    ("a.b[0].c", 1),
    ("a.b[1].c[-1]", 20),
    ("$.a.b[1].c[0]", 10),
    ('["key with spaces"]', "yes"),
    ("a['b'][0]", {"c": 1}),
    ("n", None),
    ("", DATA),
])
def test_json_query_finds_the_value_at_a_path(tmp_path: Path, path: str, expected: Any) -> None:
    result = run(write_machine(tmp_path, {"builtin": "json_query"}, {"data": "{{ x }}", "path": path}), DATA)
    assert result.status == "succeeded", result.error
    assert result.output == expected


@pytest.mark.parametrize(("path", "message"), [
    ("a.x", "json_query: $.a has no key 'x'"),
    ("a.b[5]", "json_query: $.a.b has 2 items, no [5]"),
    ("a.b.c", "json_query: $.a.b is a list, not a mapping, so it has no key 'c'"),
    ("a.b[0].c[0]", "json_query: $.a.b[0].c is a number, not a list, so it has no [0]"),
])
def test_json_query_on_a_missing_path_is_a_tool_error(tmp_path: Path, path: str, message: str) -> None:
    result = run(write_machine(tmp_path, {"builtin": "json_query"}, {"data": "{{ x }}", "path": path}), DATA)
    assert result.error["type"] == "tool.error"
    assert result.error["message"] == message


@pytest.mark.parametrize("path", ["a..b", "a[x]", "a.b[0", "__import__('os')", "a b"])
def test_json_query_refuses_what_is_not_a_path(tmp_path: Path, path: str) -> None:
    result = run(write_machine(tmp_path, {"builtin": "json_query"}, {"data": "{{ x }}", "path": path}), DATA)
    assert result.error["type"] == "tool.bad_arguments"
    assert "cannot read the path" in result.error["message"]


# -- read_file -------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A machine folder with `docs/` (the root) and a secret next to it, outside the root."""
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "hello.txt").write_text("héllo\nworld\n", encoding="utf-8")
    (tmp_path / "docs" / "sub" / "deep.md").write_text("# deep", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("s3cr3t", encoding="utf-8")
    return tmp_path


def read(folder: Path, path: str, **options: Any) -> RunResult:
    return run(write_machine(folder, {"builtin": "read_file", "root": "docs", **options}, {"path": "{{ x }}"}), path)


def test_read_file_returns_the_text_of_a_file_under_root(files: Path) -> None:
    assert read(files, "hello.txt").output == "héllo\nworld\n"
    assert read(files, "sub/deep.md").output == "# deep"
    assert read(files, "sub/../hello.txt").output == "héllo\nworld\n"  # `..` that stays inside is fine


@pytest.mark.parametrize("path", ["../secret.txt", "sub/../../secret.txt", "../m.yaml"])
def test_read_file_refuses_a_path_leading_outside_root(files: Path, path: str) -> None:
    result = read(files, path)
    assert result.error["type"] == "tool.error"
    assert "leads outside the tool's root folder" in result.error["message"]


def test_read_file_refuses_an_absolute_path(files: Path) -> None:
    result = read(files, str(files / "secret.txt"))
    assert result.error["type"] == "tool.bad_arguments"
    assert "is absolute" in result.error["message"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_read_file_follows_symlinks_only_inside_root(files: Path) -> None:
    (files / "docs" / "escape.txt").symlink_to(files / "secret.txt")
    (files / "docs" / "alias.txt").symlink_to(files / "docs" / "hello.txt")
    (files / "docs" / "up").symlink_to(files)
    assert read(files, "alias.txt").output == "héllo\nworld\n"
    for path in ("escape.txt", "up/secret.txt"):
        result = read(files, path)
        assert result.error["type"] == "tool.error", path
        assert "s3cr3t" not in json.dumps(result.error)


def test_read_file_size_cap_binary_and_missing_files(files: Path) -> None:
    (files / "docs" / "big.txt").write_text("x" * 2000, encoding="utf-8")
    (files / "docs" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (files / "docs" / "latin1.txt").write_bytes("café".encode("latin-1"))

    big = read(files, "big.txt", max_bytes=1000)
    assert big.error["type"] == "tool.error"
    assert big.error["message"] == "read_file: 'big.txt' has 2000 bytes, more than max_bytes (1000)"
    assert read(files, "big.txt", max_bytes=2000).output == "x" * 2000

    for path, message in [("image.png", "is a binary file, not text"), ("latin1.txt", "is not UTF-8 text"),
                          ("nope.txt", "no such file: 'nope.txt'"), ("sub", "is not a regular file")]:
        result = read(files, path)
        assert result.error["type"] == "tool.error", path
        assert message in result.error["message"], result.error


def test_read_file_root_is_checked(files: Path, tmp_path: Path) -> None:
    inner = files / "inner"
    inner.mkdir()
    with pytest.raises(BindingError, match=r"tools\.t\.root: '\.\./docs' leads to .*outside the machine file's"):
        load_machine(write_machine(inner, {"builtin": "read_file", "root": "../docs"}, {"path": "a"}))
    with pytest.raises(BindingError, match=r"tools\.t\.root: 'missing' is not a folder"):
        load_machine(write_machine(files, {"builtin": "read_file", "root": "missing"}, {"path": "a"}))

    no_root = problems(write_machine(files, {"builtin": "read_file"}, {"path": "a"}))
    assert any("builtin read_file needs root" in p for p in no_root), no_root
    misplaced = problems(write_machine(files, {"builtin": "now", "root": "docs"}, {}))
    assert any("root: only builtin read_file takes it, not now" in p for p in misplaced), misplaced
    cap = problems(write_machine(files, {"builtin": "calculator", "max_bytes": 5}, {}))
    assert any("max_bytes: only builtin read_file takes it" in p for p in cap), cap


def test_builtins_describe_their_arguments(files: Path) -> None:
    machine = load_machine(write_machine(files, {"builtin": "read_file", "root": "docs"}, {"path": "a"}))
    client = machine.states["call"].client
    assert client.parameters == {"type": "object", "properties": {"path": {"type": "string"}},
                                 "required": ["path"], "additionalProperties": False}
    assert client.description.startswith("Read a UTF-8 text file")

    machine = load_machine(write_machine(files, {"builtin": "now", "description": "What time is it"}, {}))
    client = machine.states["call"].client
    assert client.description == "What time is it"
    assert client.parameters["properties"]["timezone"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert "required" not in client.parameters


# -- Python tools: arguments checked against the signature -----------------------------------

TYPED_TOOL = '''
from pydantic import BaseModel

CALLS = []


class Item(BaseModel):
    name: str
    qty: int = 1


def order(customer: str, items: list[Item], express: bool = False, note: str | None = None) -> dict:
    """Place an order for a customer.

    The rest of the docstring is not part of the description.
    """
    CALLS.append(customer)
    return {"customer": customer, "count": sum(item.qty for item in items), "express": express}


def loose(a, **more):
    return {"a": a, **more}
'''


def python_machine(folder: Path, function: str, args: dict[str, Any] | str) -> Path:
    module = f"typed_tool_{next(_modules)}"
    (folder / f"{module}.py").write_text(TYPED_TOOL, encoding="utf-8")
    return write_machine(folder, {"python": f"{module}:{function}"}, args)


def test_python_tool_args_are_validated_and_coerced_before_the_call(tmp_path: Path) -> None:
    items = [{"name": "pen", "qty": "3"}, {"name": "ink"}]
    path = python_machine(tmp_path, "order", {"customer": "ada", "items": items, "express": "yes"})
    result = run(path)
    assert result.status == "succeeded", result.error
    assert result.output == {"customer": "ada", "count": 4, "express": True}


@pytest.mark.parametrize(("args", "message"), [
    ({"items": []}, "tool 't': missing required argument 'customer'"),
    ({"customer": "ada", "items": [], "colour": "red"},
     "tool 't': unexpected argument 'colour' (it takes customer, items, express, note)"),
    ({"customer": "ada", "items": "pens"}, "tool 't': argument 'items': Input should be a valid list"),
    ({"customer": "ada", "items": [{"qty": 2}]}, "tool 't': argument 'items[0].name': Field required"),
    ({"customer": 7, "items": [], "express": "maybe"},
     "tool 't': argument 'customer': Input should be a valid string (and 1 more)"),
])
def test_python_tool_bad_arguments_are_refused_without_calling_it(tmp_path: Path, args: dict[str, Any],
                                                                  message: str) -> None:
    path = python_machine(tmp_path, "order", args)
    result = run(path)
    assert result.error["type"] == "tool.bad_arguments"
    assert result.error["message"] == message
    assert result.error["state"] == "call"
    module = sys.modules[next(p.stem for p in tmp_path.glob("typed_tool_*.py"))]
    assert module.CALLS == []  # never called


def test_bad_arguments_can_be_caught_like_any_tool_error(tmp_path: Path) -> None:
    module = f"typed_tool_{next(_modules)}"
    (tmp_path / f"{module}.py").write_text(TYPED_TOOL, encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(
        "agentfsm: 1\nname: c\n"
        f"tools: {{t: {{python: '{module}:order'}}}}\n"
        "initial: call\n"
        "states:\n"
        "  call: {type: tool, tool: t, args: {customer: 1}, next: end,\n"
        "         catch: [{errors: [tool], to: recover, as: e}]}\n"
        "  recover: {type: final, output: '{{ e.type }}'}\n"
        "  end: {type: final}\n",
        encoding="utf-8",
    )
    assert asyncio.run(agentfsm.run(path)).output == "tool.bad_arguments"


def test_a_function_with_kwargs_takes_any_extra_argument(tmp_path: Path) -> None:
    result = run(python_machine(tmp_path, "loose", {"a": 1, "b": [2], "c": "three"}))
    assert result.output == {"a": 1, "b": [2], "c": "three"}


def test_python_tool_describes_its_arguments_as_json_schema(tmp_path: Path) -> None:
    client = load_machine(python_machine(tmp_path, "order", {})).states["call"].client
    assert client.description == "Place an order for a customer."
    schema = client.parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["customer", "items"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["customer"] == {"type": "string"}
    assert schema["properties"]["express"] == {"type": "boolean", "default": False}
    assert schema["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert schema["properties"]["items"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}
    assert schema["$defs"]["Item"]["required"] == ["name"]
    assert schema["$defs"]["Item"]["properties"]["qty"]["type"] == "integer"

    loose = load_machine(python_machine(tmp_path, "loose", {})).states["call"].client
    assert loose.parameters == {"type": "object", "properties": {"a": {}}, "required": ["a"],
                                "additionalProperties": True}  # **more: any other name too
    assert loose.description is None


def test_command_tools_describe_declared_parameters(tmp_path: Path) -> None:
    tool = {"command": ["echo", "{{ args.word }}"], "description": "Echo a word.",
            "parameters": {"word": {"type": "string"}}}
    client = load_machine(write_machine(tmp_path, tool, {"word": "hi"})).states["call"].client
    assert client.description == "Echo a word."
    assert client.parameters == {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
    bare = load_machine(write_machine(tmp_path, {"command": ["true"]}, {})).states["call"].client
    assert bare.parameters == {"type": "object", "properties": {}}
