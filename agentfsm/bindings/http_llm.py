"""What the providers reached over HTTP share: credentials, the pooled client, error mapping, retries.

A provider subclass says where to POST, which headers carry the key, how to write a
request body and how to read a reply; `HttpLLMClient.complete` does the rest. Every
failure becomes a StateError with an `llm.*` type (see `http_errors.py`), its message
short and free of secrets, its `detail` `{status, binding}`. Rate limits, unavailable
servers and timeouts are retried here first (`max_retries`), before the state's `retry`.

Streaming: when the request has an `on_token` observer, the body asks for a stream
(`"stream": true`) and the server-sent events are read as they arrive by the provider's
`StreamReader`, which hands each text delta to the observer and assembles the same
`LLMReply` a plain call returns. A non-2xx status before the stream, or an error sent in
the stream, becomes the same `llm.*` error as without streaming. The provider-level retry
applies only while no token has reached the observer: once the user has seen part of a
reply, an error goes up to the state (whose `retry`, if any, starts the call over).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import httpx

from agentfsm import __version__
from agentfsm.bindings.http_body import MAX_REPLY_BYTES, ReplyTooLarge, body_lines, read_capped
from agentfsm.bindings.http_errors import (
    RETRY_AFTER_MAX,
    RETRYABLE,
    backoff_delay,
    error_type_for_status,
    provider_message,
    retry_after_seconds,
    shorten,
)
from agentfsm.bindings.llm import LLMReply, LLMRequest, loads_json
from agentfsm.bindings.pool import LoopLocalPool
from agentfsm.bindings.secrets import Redactor, display_host, read_header_env, refuse_clear_text, resolve_headers
from agentfsm.runtime.errors import StateError, describe_exception
from agentfsm.spec.models import HostedLLM

logger = logging.getLogger("agentfsm")


class ReplyShapeError(ValueError):
    """A 2xx reply whose JSON is not what the protocol promises; becomes `llm.parse`."""


class StreamReader:
    """Reads one streamed reply: `feed` gets each server-sent event, `reply` assembles the result.

    `feed` calls `emit` with each text delta, raises StateError for an error event (through
    `fail`, which the client supplies) and ReplyShapeError for an event it cannot read.
    """

    def __init__(self, emit: Callable[[str], None], fail: Callable[..., StateError]) -> None:
        self.emit = emit
        self.fail = fail

    def feed(self, event: str, data: str) -> None:
        raise NotImplementedError

    def reply(self) -> LLMReply:
        raise NotImplementedError


class _ObserverFailed(Exception):
    """The token observer raised: its exception goes up as it is, not as an `llm.*` error."""


class HttpLLMClient:
    """An LLM binding over HTTP. Subclasses fill in the protocol: the class attributes and the `_` methods."""

    DEFAULT_BASE_URL: ClassVar[str]
    DEFAULT_KEY_ENV: ClassVar[str]
    """The key's variable when `api_key_env` is not given and `base_url` is the provider's own."""
    PATH: ClassVar[str]

    def __init__(self, name: str, config: HostedLLM) -> None:
        """Reads the key and `{env: NAME}` headers now (at run start); raises BindingError naming a missing variable."""
        self.name = name
        self.model = config.model
        self.config = config
        self.provider: str = getattr(config, "provider", "")  # the subclass of HostedLLM names it
        self.base_url = config.base_url or self.DEFAULT_BASE_URL
        self.url = self.base_url + self.PATH
        api_key = self._read_api_key(f"llms.{name}")
        extra, header_secrets = resolve_headers(config.headers, f"llms.{name}")
        if api_key or header_secrets:
            refuse_clear_text(self.base_url, f"llms.{name}.base_url")
        # the machine's own headers come last: they may replace ours (an `api-key` header for Azure, say)
        self._headers = {"User-Agent": f"agentfsm/{__version__}", **self._auth_headers(api_key), **extra}
        self._redactor = Redactor([api_key, *header_secrets] if api_key else header_secrets)
        self._pool: LoopLocalPool[httpx.AsyncClient] = LoopLocalPool(self._new_http_client)

    # -- the protocol, per provider ----------------------------------------------------------

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _read_reply(self, data: Any) -> LLMReply:
        """The reply from a 2xx body's JSON; raises ReplyShapeError when it has not the protocol's shape."""
        raise NotImplementedError

    def _stream_reader(self, emit: Callable[[str], None]) -> StreamReader:
        """A reader for one streamed reply (asked for when the request has `on_token`)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    @property
    def is_providers_own_server(self) -> bool:
        """The provider's own host and port, over https: the only place its default key goes (`http://` to the
        same host is not it: a proxy on the way would read the key)."""
        same = _host(self.base_url) == _host(self.DEFAULT_BASE_URL)
        return same and urllib.parse.urlsplit(self.base_url).scheme.lower() == "https"

    @property
    def open_pools(self) -> int:
        """How many pooled HTTP clients are open: one per event loop that used this binding and is still running."""
        return len(self._pool)

    async def aclose(self) -> None:
        """Close the running loop's pooled client now; `asyncio.run` does it when its loop ends anyway."""
        await self._pool.aclose()

    async def complete(self, request: LLMRequest) -> LLMReply:
        """Call the provider, retrying rate limits, unavailable servers and timeouts up to `max_retries` times."""
        retries = 0
        observer = request.on_token
        delivered = False

        def relay(delta: str) -> None:
            nonlocal delivered
            delivered = True
            observer(delta)  # type: ignore[misc]

        if observer is not None:
            request = dataclasses.replace(request, on_token=relay)
        while True:
            try:
                reply = await self._call(request)
            except StateError as error:
                # a reply the user has partly seen is not started over silently
                delay = None if delivered else self._retry_delay(error, retries)
                if delay is None:
                    if retries:
                        error.detail = {**error.detail, "provider_retries": retries}
                    raise
                retries += 1
                logger.info("llm binding %r: %s; provider retry %d in %.2fs", self.name, error.message, retries, delay)
                await asyncio.sleep(delay)
                continue
            return dataclasses.replace(reply, retries=retries)

    def _retry_delay(self, error: StateError, retries: int) -> float | None:
        """Seconds to wait before retrying, or None when the error goes up to the state."""
        if error.type not in RETRYABLE or retries >= self.config.max_retries:
            return None
        asked = error.detail.get("retry_after")
        if asked is None:
            return backoff_delay(retries + 1)
        # Waiting less than the server asked would only meet another 429; waiting longer than a
        # minute inside one call hides the run's progress: such a wait is the state's `retry`'s job.
        return asked if asked <= RETRY_AFTER_MAX else None

    async def _call(self, request: LLMRequest) -> LLMReply:
        """One HTTP exchange; raises StateError."""
        if request.on_token is not None:
            return await self._stream_call(request, request.on_token)
        http = await self._pool.get()
        timeout = self.config.timeout
        try:
            # httpx's timeout bounds each phase (connect, each read); this one bounds the whole call
            async with asyncio.timeout(timeout):
                async with http.stream("POST", self.url, json=self._body(request)) as response:
                    body = await read_capped(response)
        except ReplyTooLarge:
            raise self._error("llm.error", TOO_LARGE) from None
        except (TimeoutError, httpx.TimeoutException):
            raise self._error("llm.timeout", f"no reply within {timeout:g}s") from None
        except httpx.HTTPError as exc:  # refused, reset, a broken protocol...
            raise self._error("llm.unavailable", f"cannot reach {_host(self.url)}: {describe_exception(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - anything else still gets a type, and a redacted message
            raise self._error("llm.error", describe_exception(exc)) from None
        if not response.is_success:
            raise self._status_error(response, body)
        try:
            return self._read_reply(loads_json(body))
        except ValueError as exc:  # not JSON (JSONDecodeError, UnicodeDecodeError) or ReplyShapeError
            what = str(exc) if isinstance(exc, ReplyShapeError) else "the body is not JSON"
            raise self._error("llm.parse", f"unexpected reply: {what}", response.status_code) from None

    async def _stream_call(self, request: LLMRequest, observer: Callable[[str], None]) -> LLMReply:
        """One streamed HTTP exchange: text deltas go to `observer` as they arrive; raises StateError.

        `timeout` bounds the whole exchange, as without streaming. A server that ignores
        `"stream": true` and answers with plain JSON is read as usual, its text one delta.
        """
        http = await self._pool.get()
        timeout = self.config.timeout

        def emit(delta: str) -> None:
            if not delta:
                return
            try:
                observer(delta)
            except Exception as exc:
                raise _ObserverFailed() from exc

        status: int | None = None
        try:
            async with asyncio.timeout(timeout):
                async with http.stream("POST", self.url, json=self._body(request)) as response:
                    status = response.status_code
                    if not response.is_success:
                        raise self._status_error(response, await read_capped(response))
                    if "text/event-stream" not in response.headers.get("content-type", ""):
                        body = await read_capped(response)
                        try:
                            reply = self._read_reply(loads_json(body))
                        except ValueError as exc:
                            what = str(exc) if isinstance(exc, ReplyShapeError) else "the body is not JSON"
                            raise self._error("llm.parse", f"unexpected reply: {what}", status) from None
                        emit(reply.text)
                        return reply
                    reader = self._stream_reader(emit)
                    async for event, data in server_sent_events(body_lines(response)):
                        reader.feed(event, data)
                    return reader.reply()
        except StateError:
            raise
        except ReplyTooLarge:
            raise self._error("llm.error", TOO_LARGE, status) from None
        except _ObserverFailed as exc:
            raise exc.__cause__ from None  # type: ignore[misc]
        except ValueError as exc:  # an event that is not JSON, or ReplyShapeError
            what = str(exc) if isinstance(exc, ReplyShapeError) else "an event is not JSON"
            raise self._error("llm.parse", f"unexpected stream: {what}", status) from None
        except (TimeoutError, httpx.TimeoutException):
            raise self._error("llm.timeout", f"no complete reply within {timeout:g}s") from None
        except httpx.HTTPError as exc:  # refused, reset, cut in the middle of the stream...
            raise self._error("llm.unavailable", f"cannot reach {_host(self.url)}: {describe_exception(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - anything else still gets a type, and a redacted message
            raise self._error("llm.error", describe_exception(exc)) from None

    def _stream_error(self, status: int | None, message: str) -> StateError:
        """An error the server sent inside a stream: typed like the HTTP status it stands for (or `llm.error`)."""
        said = shorten(self._redactor.clean(message))
        kind = error_type_for_status(status) if status is not None else "llm.error"
        return self._error(kind, "error in the stream" + (f": {said}" if said else ""), status)

    def _status_error(self, response: httpx.Response, body: bytes) -> StateError:
        status = response.status_code
        said = shorten(self._redactor.clean(provider_message(body)))
        error = self._error(error_type_for_status(status), f"HTTP {status}" + (f": {said}" if said else ""), status)
        asked = retry_after_seconds(response.headers)
        if asked is not None:
            error.detail["retry_after"] = asked
        return error

    def _error(self, type: str, message: str, status: int | None = None) -> StateError:
        """An `llm.*` error; its message is redacted whatever it quotes."""
        text = f"{self._redactor.clean(message)} (binding '{self.name}')"
        return StateError(type, text, detail={"status": status, "binding": self.name})

    def _read_api_key(self, where: str) -> str | None:
        if self.config.api_key_env is not None:
            return read_header_env(self.config.api_key_env, f"{where}.api_key_env")
        if self.is_providers_own_server:
            hint = f" (it holds the API key for {_host(self.base_url)}; `api_key_env` names another variable)"
            return read_header_env(self.DEFAULT_KEY_ENV, where, hint)
        return None  # a local server (Ollama, vLLM...) with no `api_key_env` gets no key

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self._headers, timeout=self.config.timeout, follow_redirects=False)


def _host(url: str) -> str:
    return display_host(url)


TOO_LARGE = f"the reply is larger than {MAX_REPLY_BYTES // 2**20} MB; not read further"


async def server_sent_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """The (event name, data) of each server-sent event; the name is "message" when none is given."""
    event, data = "", []
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment, a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:  # a last event without its blank line
        yield event or "message", "\n".join(data)


# -- reading a reply's JSON ------------------------------------------------------------------


def field(data: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """`data[key]`, which must be of `kind`; ReplyShapeError otherwise."""
    if not isinstance(data, dict):
        raise ReplyShapeError(f"{what} is not a JSON object")
    value = data.get(key)
    if not isinstance(value, kind):
        raise ReplyShapeError(f"no {key!r} of the right type in {what}")
    return value


def token_count(usage: Any, *keys: str) -> int:
    """The sum of the usage's counts under `keys`; a server that reports no usage counts 0."""
    if not isinstance(usage, dict):
        return 0
    counts = [usage.get(key) for key in keys]
    return sum(c for c in counts if isinstance(c, int) and not isinstance(c, bool) and c >= 0)
