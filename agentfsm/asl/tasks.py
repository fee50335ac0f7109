"""A Task's `Resource` as a tool binding: each distinct resource (for `lambda:invoke`, each function) is one tool
the user points at a real implementation; until then it is `unbound:` and fails with `tool.unbound`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentfsm.asl.exprs import RESULT, Code, Lit, Obj, Value
from agentfsm.asl.problems import AslInputError, Pointer

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
HTTP_INVOKE = "arn:aws:states:::http:invoke"
_SUFFIXES = (".sync:2", ".sync", ".waitForTaskToken")


@dataclass(slots=True)
class Task:
    """What a Task becomes: the tool it calls, what it is given, and how its result reads in ASL terms."""

    tool: str
    payload: Value
    result: Value


@dataclass(slots=True)
class Tools:
    """The tools an import declares, one per distinct resource, and the user's `--bind` choices."""

    binds: dict[str, dict[str, Any]] = field(default_factory=dict)
    bindings: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    """resource -> tool name"""
    used_binds: set[str] = field(default_factory=set)

    def tool_for(self, resource: str, *, aliases: tuple[str, ...] = (), binding: dict[str, Any] | None = None,
                 describe: str | None = None) -> str:
        """The tool name standing for `resource` (made on first use)."""
        if resource in self.resources:
            return self.resources[resource]
        name = _unique(tool_name(aliases[0] if aliases else resource), self.bindings)
        self.resources[resource] = name
        chosen = None
        for key in (name, resource, *aliases):
            if key in self.binds:
                chosen = self.binds[key]
                self.used_binds.add(key)
        if chosen is not None:
            self.bindings[name] = chosen
        elif binding is not None:
            self.bindings[name] = binding
        else:
            self.bindings[name] = {"unbound": resource, **({"description": describe} if describe else {})}
        return name

    def unbound(self) -> list[dict[str, str]]:
        return [{"tool": name, "resource": binding["unbound"]} for name, binding in self.bindings.items()
                if "unbound" in binding]


def tool_name(resource: str) -> str:
    """A readable identifier for a resource: a function's or activity's name, a service action, a substitution."""
    text = resource.strip()
    substitution = re.fullmatch(r"\$\{([^}]+)\}", text)
    if substitution:
        text = substitution.group(1)
    elif ":function:" in text:
        text = text.split(":function:", 1)[1].split(":", 1)[0]
    elif ":activity:" in text:
        text = text.split(":activity:", 1)[1]
    elif ":::" in text:
        text = text.split(":::", 1)[1]
        for suffix in _SUFFIXES:
            text = text.removesuffix(suffix)
        text = text.removeprefix("aws-sdk:")
    name = re.sub(r"\W+", "_", text).strip("_") or "task"
    return name if re.match(r"[A-Za-z_]", name) else "_" + name


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    return candidate


def task(resource: Any, parameters: Value, raw_parameters: Any, tools: Tools, where: Pointer) -> Task:
    """The tool call a Task makes: `lambda:invoke` gives the function its `Payload` and wraps the answer as Step
    Functions does (`{Payload, StatusCode, ...}`); `http:invoke` calls an `http` tool; the others get the
    parameters and answer directly."""
    if not isinstance(resource, str) or not resource:
        raise AslInputError((*where, "Resource"), "a Task needs a Resource (text)")
    base = resource
    for suffix in _SUFFIXES:
        base = base.removesuffix(suffix)
    if base == LAMBDA_INVOKE:
        return _lambda_invoke(resource, parameters, raw_parameters, tools)
    if base == HTTP_INVOKE and isinstance(raw_parameters, dict):
        http = _http_binding(raw_parameters)
        if http is not None:
            name = tools.tool_for(resource + " " + str(raw_parameters.get("ApiEndpoint")),
                                  aliases=(tool_name(str(raw_parameters.get("ApiEndpoint"))),), binding=http)
            result = Obj((("ResponseBody", Code("result.output")), ("StatusCode", Code("result.status"))))
            return Task(name, parameters, result)
    function = resource.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in resource else None
    return Task(tools.tool_for(resource, aliases=(function,) if function else ()), parameters, RESULT)


def _lambda_invoke(resource: str, parameters: Value, raw: Any, tools: Tools) -> Task:
    function = raw.get("FunctionName") if isinstance(raw, dict) else None
    payload: Value = parameters
    if isinstance(parameters, Obj | Lit) and isinstance(raw, dict) and ("Payload" in raw or "Payload.$" in raw):
        items = parameters.items if isinstance(parameters, Obj) else tuple(
            (key, Lit(value)) for key, value in parameters.value.items())
        payload = dict(items).get("Payload", Lit(None))
    if isinstance(function, str):
        name = tools.tool_for(f"{resource} {function}", aliases=(function,),
                              describe=f"Lambda function {function}")
    else:
        name, payload = tools.tool_for(resource), parameters
    result = Obj((("ExecutedVersion", Lit("$LATEST")), ("Payload", RESULT), ("StatusCode", Lit(200))))
    return Task(name, payload, result)


def _http_binding(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Our `http` tool for an `http:invoke` with a fixed endpoint (None: a computed one stays a plain tool)."""
    endpoint, method = raw.get("ApiEndpoint"), raw.get("Method", "GET")
    if not isinstance(endpoint, str) or not re.match(r"https?://[^/]+", endpoint) or "{" in endpoint:
        return None
    if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        return None
    binding: dict[str, Any] = {"http": endpoint if "/" in endpoint.split("://", 1)[1] else endpoint + "/",
                               "method": method}
    if method != "GET" and ("RequestBody" in raw or "RequestBody.$" in raw):
        binding["json"] = "{{ args.input.RequestBody }}"
    return binding
