"""A distributed Map's `ItemReader` and `ItemBatcher` onto the `map` kind's `tool:` (a binding whose result is the
list of items: an S3 read becomes a tool the user binds) and `batch_size`/`batch_bytes` (each run gets a list
`{Items, BatchInput}` as Step Functions gives it)."""

from __future__ import annotations

import json
from typing import Any

from agentfsm.asl.exprs import Code, Lit, Obj, Value, template
from agentfsm.asl.paths import Scope
from agentfsm.asl.payloads import payload
from agentfsm.asl.problems import AslInputError, Pointer, Refused
from agentfsm.asl.tasks import Tools

READER_FIELDS = {"Resource", "Parameters", "ReaderConfig"}
BATCHER_FIELDS = {"MaxItemsPerBatch", "MaxInputBytesPerBatch", "BatchInput"}


def reader(spec: Any, scope: Scope, tools: Tools, where: Pointer) -> dict[str, Any]:
    """`tool:` and `args:` of a map reading its items: `input` is the reader's Parameters with its ReaderConfig."""
    if not isinstance(spec, dict):
        raise AslInputError(where, "ItemReader must be an object")
    for key in spec:
        if key not in READER_FIELDS:
            raise Refused((*where, key), f"ItemReader field {key} is not imported")
    resource = spec.get("Resource")
    if not isinstance(resource, str) or not resource:
        raise AslInputError((*where, "Resource"), "an ItemReader needs a Resource (text)")
    given: Value = payload(spec.get("Parameters", {}), scope, (*where, "Parameters"))
    if "ReaderConfig" in spec:
        config = spec["ReaderConfig"]
        if not isinstance(config, dict):
            raise AslInputError((*where, "ReaderConfig"), "ReaderConfig must be an object")
        given = _with(given, "ReaderConfig", Lit(config))
    tool = tools.tool_for(resource, describe=f"reads the items of a Map ({resource}); returns the list")
    return {"tool": tool, "args": {"input": template(given)}}


def batcher(spec: Any, scope: Scope, where: Pointer) -> tuple[dict[str, Any], Value]:
    """`batch_size`/`batch_bytes`, and each run's input: `{Items: [...], BatchInput: ...}`."""
    if not isinstance(spec, dict):
        raise AslInputError(where, "ItemBatcher must be an object")
    for key in spec:
        if key not in BATCHER_FIELDS:
            raise Refused((*where, key), f"ItemBatcher field {key} is not imported (only fixed sizes are)")
    fields: dict[str, Any] = {}
    for key, target in (("MaxItemsPerBatch", "batch_size"), ("MaxInputBytesPerBatch", "batch_bytes")):
        if key in spec:
            value = spec[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AslInputError((*where, key), f"{key} must be an integer of at least 1")
            fields[target] = value
    if not fields:
        raise AslInputError(where, "an ItemBatcher needs MaxItemsPerBatch or MaxInputBytesPerBatch")
    items: list[tuple[str, Value]] = [("Items", Code("item"))]
    if "BatchInput" in spec:
        items.append(("BatchInput", payload(spec["BatchInput"], scope, (*where, "BatchInput"))))
    return fields, Obj(tuple(items))


def _with(value: Value, key: str, extra: Value) -> Value:
    """An object value with one more key."""
    if isinstance(value, Lit) and isinstance(value.value, dict) and isinstance(extra, Lit):
        return Lit({**value.value, key: extra.value})
    if isinstance(value, Obj):
        return Obj((*value.items, (key, extra)))
    if isinstance(value, Lit) and isinstance(value.value, dict):
        return Obj((*((k, Lit(v)) for k, v in value.value.items()), (key, extra)))
    raise AslInputError((), f"the reader's Parameters must be an object, got {json.dumps(value)}")
