"""`http:` tool bindings: one HTTP request per call, with data kept out of the URL's structure.

Threat model (DESIGN.md): the YAML is the author's, `args` are data. The URL's scheme and
host are written literally (the models refuse a template before `scheme://host/`), and
each `{{ expression }}` in the URL renders to one value that is percent-encoded whole
(`quote(value, safe="")`), so `../admin?x=1` in data arrives as `..%2Fadmin%3Fx%3D1`:
one path segment or one query value, never a new path, query or host (a value that is
exactly `.` or `..` is sent as `%2E` / `%2E%2E`, since a dot segment would move up a level). The JSON body is a
value template: data is a JSON value inside it. Headers are literal or `{env: NAME}`,
read when the run starts, and removed from any text an error quotes. Redirects are not
followed (a 3xx could lead to another host with the headers). The response body is read
in chunks and the call fails as soon as it passes `max_response`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx

from agentfsm import __version__
from agentfsm.bindings.arguments import scalar_text
from agentfsm.bindings.http_body import ReplyTooLarge, read_capped
from agentfsm.bindings.llm import loads_json
from agentfsm.bindings.pool import LoopLocalPool
from agentfsm.bindings.secrets import Redactor, display_host, refuse_clear_text, resolve_headers
from agentfsm.runtime.errors import StateError, describe_exception
from agentfsm.spec.expressions import ENVIRONMENT, Expression, ExpressionError, base_scope, compile_template
from agentfsm.spec.models import HttpTool

BODY_EXCERPT = 500
"""Characters of a failed response's body put in the error's detail."""

UrlPart = str | Expression


def compile_url(url: str) -> list[UrlPart]:
    """The URL as literal text and compiled `{{ expression }}` parts (the models allow nothing else in it)."""
    parts: list[UrlPart] = []
    expression: list[str] | None = None
    for _, token, value in ENVIRONMENT.lex(url):
        if token == "variable_begin":
            expression = []
        elif token == "variable_end":
            assert expression is not None
            parts.append(compile_template("{{" + "".join(expression) + "}}"))
            expression = None
        elif expression is not None:
            expression.append(value)
        else:
            assert token == "data", "the models refuse {% %} and {# #} in a URL"
            parts.append(value)
    return parts


def _component(value: Any, where: str) -> str:
    """One rendered URL template as one percent-encoded component."""
    text = scalar_text(value)
    if text is None:
        kind = "nothing (null)" if value is None else f"a {type(value).__name__}"
        raise StateError("tool.bad_arguments", f"{where}: a URL template rendered to {kind}; each one must be "
                         "a string, a number or a boolean")
    encoded = urllib.parse.quote(text, safe="")
    if encoded in (".", ".."):  # a dot segment would be resolved away (`/items/..` is `/`): encode it
        encoded = encoded.replace(".", "%2E")
    return encoded


class HttpToolClient:
    """`http: URL`: see the module's docstring. Result: `{status, output}`."""

    def __init__(self, name: str, binding: HttpTool) -> None:
        """Reads `{env: NAME}` headers now (at run start); BindingError naming a variable that is unset."""
        self.name = name
        self.binding = binding
        self.url_parts = compile_url(binding.http)
        self.body = _compile_value(binding.json_body) if "json_body" in binding.model_fields_set else None
        headers, secrets = resolve_headers(binding.headers, f"tools.{name}")
        if secrets and self.url_parts and isinstance(self.url_parts[0], str):  # the scheme and host are literal
            refuse_clear_text(self.url_parts[0], f"tools.{name}.http")
        self._headers = {"User-Agent": f"agentfsm/{__version__}", **headers}
        self._redactor = Redactor(secrets)
        self._pool: LoopLocalPool[httpx.AsyncClient] = LoopLocalPool(self._new_http_client)
        self.description = binding.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments, from the binding's `parameters:` (each one required)."""
        return declared_parameters(self.binding.parameters)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def call(self, args: Mapping[str, Any]) -> Any:
        scope = base_scope()
        scope["args"] = dict(args)
        url = self._url(scope)
        body = self._render_body(scope)
        http = await self._pool.get()
        timeout = self.binding.timeout
        try:
            request = http.build_request(self.binding.method, url, **({"json": body} if self.body is not None else {}))
        except (ValueError, TypeError, httpx.InvalidURL) as exc:  # NaN in the body, a URL too long...
            raise self._error("tool.bad_arguments", f"cannot build the request: {describe_exception(exc)}") from None
        try:
            async with asyncio.timeout(timeout):  # the whole exchange, the body included
                response = await http.send(request, stream=True)
                try:
                    data = await self._read(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            raise self._error("tool.timeout", f"no complete reply within {timeout:g}s",
                              {"timeout": timeout}) from None
        except StateError:
            raise
        except httpx.HTTPError as exc:  # refused, reset, a broken protocol...
            raise self._error("tool.error", f"cannot reach {self._host()}: {describe_exception(exc)}") from None
        return self._result(response, data)

    # -- the request ---------------------------------------------------------------------------

    def _url(self, scope: dict[str, Any]) -> str:
        pieces = []
        for part in self.url_parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            try:
                value = part.render(scope)
            except ExpressionError as exc:
                raise StateError(exc.error_type, f"tools.{self.name}.http: {exc}") from None
            pieces.append(_component(value, f"tools.{self.name}.http"))
        return "".join(pieces)

    def _render_body(self, scope: dict[str, Any]) -> Any:
        if self.body is None:
            return None
        try:
            return _render_value(self.body, scope)
        except ExpressionError as exc:
            raise StateError(exc.error_type, f"tools.{self.name}.json: {exc}") from None

    # -- the response --------------------------------------------------------------------------

    async def _read(self, response: httpx.Response) -> bytes:
        try:
            return await read_capped(response, self.binding.max_response)
        except ReplyTooLarge as exc:
            how = f"announces {exc.announced} bytes, more" if exc.announced else "is longer"
            raise self._too_large(response.status_code, how) from None

    def _too_large(self, status: int, how: str) -> StateError:
        return self._error("tool.error", f"the response {how} than max_response ({self.binding.max_response} "
                           "bytes); not read further", {"status": status})

    def _result(self, response: httpx.Response, data: bytes) -> dict[str, Any]:
        status = response.status_code
        ok = status in self.binding.ok_status if self.binding.ok_status else 200 <= status < 300
        try:
            text = data.decode(response.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset codecs knows but cannot decode bytes with (rot13, hex)
            text = data.decode("utf-8", errors="replace")
        text = self._redactor.clean(text)  # a server echoing our token must not put it into the context
        if not ok:
            excerpt = " ".join(text[:BODY_EXCERPT].split())
            reason = response.reason_phrase or ""
            raise self._error("tool.error", f"HTTP {status}{' ' + reason if reason else ''} from "
                              f"{self.binding.method} {self._host()}",
                              {"status": status, "body": self._redactor.clean(excerpt)})
        if self.binding.parse == "text":
            output: Any = text
        elif not data.strip():
            output = None
        else:
            try:
                output = loads_json(text)
            except json.JSONDecodeError as exc:
                raise self._error("tool.error", f"the reply is not JSON: {exc.msg} at line {exc.lineno} column "
                                  f"{exc.colno}", {"status": status,
                                                   "body": self._redactor.clean(text[:BODY_EXCERPT])}) from None
            except ValueError as exc:  # nested too deep, an int too long to convert
                raise self._error("tool.error", f"the reply is JSON that cannot be read: {describe_exception(exc)}",
                                  {"status": status}) from None
        return {"status": status, "output": output}

    def _error(self, type: str, message: str, detail: dict[str, Any] | None = None) -> StateError:
        """A `tool.*` error; its message and detail are redacted whatever they quote."""
        return StateError(type, self._redactor.clean(message), detail={"tool": self.name, **(detail or {})})

    def _host(self) -> str:
        return display_host(self.binding.http)

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self._headers, timeout=self.binding.timeout, follow_redirects=False)


def _compile_value(value: Any) -> Any:
    """Every string holding a template, at any depth, compiled; the rest kept as is."""
    if isinstance(value, str):
        return compile_template(value)
    if isinstance(value, dict):
        return {key: _compile_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compile_value(item) for item in value]
    return value


def _render_value(value: Any, scope: dict[str, Any]) -> Any:
    if isinstance(value, Expression):
        return value.render(scope)
    if isinstance(value, dict):
        return {key: _render_value(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, scope) for item in value]
    return value


def declared_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON Schema of a tool whose binding lists `parameters:` (each one required)."""
    properties = dict(parameters or {})
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if properties:
        schema["required"] = list(properties)
    return schema
