"""Serving the UI with uvicorn on a socket bound first, so a taken port is one clear line (and port 0 works)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import signal
import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import uvicorn

from agentfsm.service.errors import InputError
from agentfsm.service.stores import open_runs
from agentfsm.web import live
from agentfsm.web.app import create_app
from agentfsm.web.security import is_loopback


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(store: str | None, *, host: str, port: int, token: str | None, open_browser: bool, root: Path,
          say: Callable[[str], None], observers: Iterable[object] = ()) -> None:
    """Serve until Ctrl-C or SIGTERM. Off loopback a token is required: `token`, else one made and said once."""
    if token is not None and not token.strip():
        raise InputError("--token must not be empty")
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    poll = _poll()
    sock = bind(host, port)
    shown_host = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")

    async def main() -> None:
        async with open_runs(store, create=True) as runs:
            app = create_app(runs, root=root, token=token, loopback_only=is_loopback(host), poll=poll,
                             observers=observers)
            config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on",
                                    access_log=False)
            server = uvicorn.Server(config)
            server.capture_signals = functools.partial(_stopping_on_signals, server)  # type: ignore[method-assign]
            say(f"agentfsm ui: runs of {runs.store.url}, machines in {root}")
            say(f"open {url}  (Ctrl-C stops it)")
            if open_browser:  # in a thread: a browser started from $BROWSER is waited for until it exits
                opening = threading.Thread(target=webbrowser.open, args=(url,), name="agentfsm-ui-open", daemon=True)
                asyncio.get_running_loop().call_later(0.5, opening.start)
            await server.serve(sockets=[sock])

    try:
        asyncio.run(main())
    finally:
        sock.close()
    say("agentfsm ui stopped")


def _poll() -> float:
    """AGENTFSM_UI_POLL: seconds between a live stream's reads of a store that does not say what changed."""
    text = os.environ.get("AGENTFSM_UI_POLL", "").strip()
    if not text:
        return live.POLL
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.05 <= seconds <= 3600:  # NaN too
        raise InputError(f"AGENTFSM_UI_POLL: '{text}' is not a number of seconds between 0.05 and 3600")
    return seconds


@contextlib.contextmanager
def _stopping_on_signals(server: uvicorn.Server) -> Iterator[None]:
    """Ctrl-C or SIGTERM (twice: at once) stops the server; the command then ends normally (exit 0), where
    uvicorn's own handling would raise the signal again and end the process by it."""
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, server.handle_exit, signum, None)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows; a thread other than the main one
            pass
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
