"""`agentfsm import`: an Amazon States Language definition (JSON or YAML) as an agentfsm machine (YAML text)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from agentfsm.asl.problems import AslInputError, Refusal
from agentfsm.asl import composite, context_object  # noqa: F401 - composite registers Parallel and Map
from agentfsm.asl.states import Converter
from agentfsm.asl.tasks import Tools

MAX_STEPS = 25_000
"""Step Functions ends a standard execution at 25,000 history events; a loop guard of the same order."""


@dataclass(slots=True)
class Imported:
    """What an import made: the machine (None when something was refused), what was refused, what to bind."""

    machine: dict[str, Any] | None
    text: str | None
    refusals: list[Refusal] = field(default_factory=list)
    unbound: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_bind(text: str) -> tuple[str, dict[str, Any]]:
    """`RESOURCE=python:module:function` (or `builtin:NAME`, or an http(s) URL) as (resource, binding)."""
    key, sep, target = text.partition("=")
    key, target = key.strip(), target.strip()
    if not sep or not key or not target:
        raise AslInputError((), f"--bind expects RESOURCE=BINDING, got {text!r}")
    if target.startswith("python:"):
        reference = target.removeprefix("python:")
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", reference):
            raise AslInputError((), f"--bind {key}: python: needs module:function, got {reference!r}")
        return key, {"python": reference}
    if target.startswith("builtin:"):
        return key, {"builtin": target.removeprefix("builtin:")}
    if re.match(r"https?://[^/]+", target):
        url = target if "/" in target.split("://", 1)[1] else target + "/"
        return key, {"http": url, "method": "POST", "json": "{{ args.input }}"}
    raise AslInputError((), f"--bind {key}: the binding must be python:module:function, builtin:NAME or an "
                        f"http(s):// URL, got {target!r}")


def read_definition(text: str) -> dict[str, Any]:
    """The ASL document: JSON, or YAML (which CloudFormation and SAM templates use)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AslInputError((), f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    else:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            raise AslInputError((), f"not JSON or YAML: {getattr(exc, 'problem', None) or exc}{where}") from None
    if not isinstance(document, dict) or "StartAt" not in document or not isinstance(document.get("States"), dict):
        raise AslInputError((), "not an Amazon States Language machine: it needs StartAt and States (an object)")
    if not document["States"]:
        raise AslInputError(("States",), "States is empty")
    return document


def import_definition(text: str, *, name: str, source: str, binds: Mapping[str, dict[str, Any]] = {}) -> Imported:
    """Convert an ASL definition; raises AslInputError for input that cannot be imported at all."""
    document = read_definition(text)
    refusals: list[Refusal] = []
    if document.get("QueryLanguage", "JSONPath") != "JSONPath":
        refused = Refusal(("QueryLanguage",), "JSONata machines are not imported (only JSONPath)")
        return Imported(None, None, [refused], [], [])
    start = document["StartAt"]
    if not isinstance(start, str) or start not in document["States"]:
        raise AslInputError(("StartAt",), f"StartAt names no state: {json.dumps(start)}")
    tools = Tools(binds=dict(binds))
    converter = Converter(document["States"], ("States",), tools)
    converter.convert()
    converter.finish()
    unused = sorted(set(binds) - tools.used_binds)
    if unused:
        known = ", ".join(sorted({*tools.resources, *tools.bindings})) or "none"
        raise AslInputError((), f"--bind {unused[0]}: no task of this machine uses that resource (its tools: "
                            f"{known})")
    notes = list(converter.notes)
    if "TimeoutSeconds" in document:
        notes.append("ignored: the machine's TimeoutSeconds (a local run has max_steps, not a time limit)")
    refusals += converter.refusals
    if refusals:
        return Imported(None, None, refusals, tools.unbound(), notes)
    machine = _machine(document, name, tools, converter)
    return Imported(machine, machine_text(machine, source), [], tools.unbound(), notes)


def _machine(document: dict[str, Any], name: str, tools: Tools, converter: Converter) -> dict[str, Any]:
    machine: dict[str, Any] = {"agentfsm": 1, "name": name}
    if isinstance(document.get("Comment"), str):
        machine["description"] = document["Comment"]
    machine["extra_inputs"] = True
    machine["max_steps"] = MAX_STEPS
    if tools.bindings:
        machine["tools"] = tools.bindings
    machine["initial"] = document["StartAt"]
    machine["states"] = converter.states
    if context_object.used(converter.states):
        entry = converter.fresh(context_object.ENTRY)
        machine["initial"] = entry
        machine["states"] = {entry: context_object.entry_state(name, document["StartAt"]), **converter.states}
    return machine


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written, long text kept on one line."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def machine_text(machine: dict[str, Any], source: str) -> str:
    body = yaml.dump(machine, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000,
                     default_flow_style=False)
    header = (f"# Imported from {source} (Amazon States Language) by agentfsm import.\n"
              "# The execution input is the run's initial context: agentfsm run FILE --inputs input.json\n")
    return header + body
