"""A real HTTP server on 127.0.0.1 that answers what a test scripts, for testing the HTTP LLM providers.

It knows no protocol: the test lists the responses (status, headers, a JSON body or raw
bytes, an optional delay), they are used in order, one per request, and every request is
recorded (path, headers, JSON body) for assertions. So it serves OpenAI's and Anthropic's
wire formats alike. It speaks HTTP/1.1 with keep-alive, so tests can see pooled connections
being reused (`Recorded.client_port`).

Bounded: it listens on loopback only, on a free port; `serve()` stops it when the test
ends, which also cuts idle connections and delays short; and a watchdog stops it after
`lifetime` seconds whatever happens.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
"""Variables that would send loopback requests through a proxy; tests clear them."""

EXHAUSTED = {"error": {"message": "test server: no scripted response left", "type": "test_error"}}


@dataclass(frozen=True)
class Reply:
    """One scripted response. `json` is sent as JSON; `body` (raw bytes) wins when given."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps(self.json).encode() if self.json is not None else b""


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    client_port: int

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class LLMServer(ThreadingHTTPServer):
    """The scripted server; use `serve()` to run one for the length of a `with` block."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self.requests: list[Recorded] = []
        self.stopping = threading.Event()
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Append responses to the script."""
        with self._lock:
            self._script.extend(replies)

    @property
    def unused(self) -> int:
        """Scripted responses not used yet."""
        with self._lock:
            return len(self._script)

    def take(self, request: Recorded) -> Reply:
        """Record the request and hand out the next response (a 418 when the script is used up)."""
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else Reply(418, EXHAUSTED)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def stop(self) -> None:
        """Stop serving, end delays, and cut every open connection; safe to call more than once."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.shutdown()
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible
    timeout = 10  # an idle keep-alive connection is dropped after this long
    server: LLMServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        try:
            super().finish()
        except OSError:  # the client went away first
            pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.take(Recorded(self.command, self.path, headers, raw, self.client_address[1]))
        if reply.delay and self.server.stopping.wait(reply.delay):
            self.close_connection = True
            return
        self._send(reply)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _send(self, reply: Reply) -> None:
        payload = reply.payload()
        try:
            self.send_response(reply.status)
            if reply.body is None:
                self.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a timeout test): nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: pytest shows failures, not an access log."""


@contextmanager
def serve(lifetime: float = 60.0) -> Iterator[LLMServer]:
    """A running server for the block; stopped at its end, or by a watchdog after `lifetime` seconds."""
    server = LLMServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    watchdog = threading.Timer(lifetime, server.stop)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield server
    finally:
        watchdog.cancel()
        server.stop()
        thread.join(timeout=5)
