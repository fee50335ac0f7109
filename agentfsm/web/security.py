"""Who may use the UI: a token on every request once one is set, a header on every action, the right Host.

- With a token, a request shows it as the `X-Agentfsm-Token` header, `Authorization: Bearer`, the
  `token` query parameter (the link printed at start), or the cookie a page opened that way is given.
- Actions (every method but GET and HEAD) need the header, never only the cookie: a page on another
  site can make a browser send cookies, not custom headers (they ask for a CORS preflight, never
  granted). Without a token, actions still need `X-Agentfsm-Token` (empty will do) for that reason.
- Served on loopback, the Host header must name a loopback address: a DNS-rebinding page that makes
  evil.example resolve to 127.0.0.1 sends `Host: evil.example` and is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = "x-agentfsm-token"
COOKIE = "agentfsm_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def host_name(header: str) -> str:
    """The name in a Host header, without its port (`[::1]:8321` is `[::1]`)."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


class Guard:
    """ASGI middleware applying the rules above to HTTP requests."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            await _plain(send, *refusal)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [None])[0]
        if self.token is not None and given is not None and scope["method"] == "GET":
            await self.app(scope, receive, _with_cookie(send, self.token))
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = host_name(headers.get("host", ""))
        if self.loopback_only and not is_loopback(host):
            return 421, f"this server answers requests for 127.0.0.1 and localhost, not for '{host}'"
        acting = scope["method"] not in ("GET", "HEAD")
        if acting and HEADER not in headers and "authorization" not in headers:
            return 403, f"an action needs the {HEADER} header (a page on another site cannot send it)"
        if self.token is None:
            return None
        shown = [headers.get(HEADER), headers.get("authorization", "").removeprefix("Bearer ").strip() or None]
        if not acting:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            cookie = SimpleCookie(headers.get("cookie", ""))
            shown += [query.get("token", [None])[0], cookie[COOKIE].value if COOKIE in cookie else None]
        if any(value is not None and hmac.compare_digest(value.encode(), self.token.encode()) for value in shown):
            return None
        return 401, "this server needs its token: open the link it printed, or send the X-Agentfsm-Token header"


def _with_cookie(send: Send, token: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode("latin-1"))]
        await send(message)

    return sending


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
