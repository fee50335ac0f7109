"""Where a map's items come from, written back as ASL: `items:` as `ItemsPath`/`Items`, a reader `tool:` as an
`ItemReader` (the resource of its unbound binding), `batch_size`/`batch_bytes` as an `ItemBatcher`."""

from __future__ import annotations

from typing import Any

from agentfsm.asl.placement import DOC
from agentfsm.asl.problems import Pointer, Refused
from agentfsm.asl.reverse import dynamic_of, payload_of


def item_source(machine: dict[str, Any], state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    """`ItemsPath`, `Items` or `ItemReader`."""
    if state.get("tool"):
        binding = (machine.get("tools") or {}).get(state["tool"]) or {}
        if not isinstance(binding.get("unbound"), str):
            raise Refused((*where, "tool"), "a map's reader tool has an ASL form only while it stands for a "
                          "resource (unbound: ...)")
        given = (state.get("args") or {}).get("input", {})
        parameters = payload_of(given, DOC, (*where, "args", "input")) if given else {}
        reader: dict[str, Any] = {"Resource": binding["unbound"]}
        if isinstance(parameters, dict) and "ReaderConfig" in parameters:
            reader["ReaderConfig"] = parameters.pop("ReaderConfig")
        if parameters:
            reader["Parameters"] = parameters
        return {"ItemReader": reader}
    items = state.get("items")
    kind, found = dynamic_of(items, DOC, (*where, "items")) if isinstance(items, str) else ("literal", items)
    if kind not in ("path", "literal") or (kind == "literal" and not isinstance(found, list)):
        raise Refused((*where, "items"), "the items must be a path or a literal list")
    return {"ItemsPath": found} if kind == "path" else {"Items": found}


def item_batcher(state: dict[str, Any], selector: Any, where: Pointer) -> dict[str, Any]:
    """The `ItemBatcher` of a map whose runs get `{Items, BatchInput}` (what `agentfsm import` writes)."""
    if not isinstance(selector, dict) or selector.get("Items.$") != "$$.Map.Item.Value" or set(selector) - {
            "Items.$", "BatchInput"}:
        raise Refused(where, "a batched map's runs must get {Items: item, BatchInput: ...} to have an ASL form")
    out: dict[str, Any] = {}
    if state.get("batch_size"):
        out["MaxItemsPerBatch"] = state["batch_size"]
    if state.get("batch_bytes"):
        out["MaxInputBytesPerBatch"] = state["batch_bytes"]
    if "BatchInput" in selector:
        out["BatchInput"] = selector["BatchInput"]
    return out
