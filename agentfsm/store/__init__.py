"""Durable runs: the store interface and `open_store`, which picks a backend from a URL.

`sqlite:///PATH` (the default, `.agentfsm/runs.db` under the working directory),
`postgresql://USER[:PASSWORD]@HOST:PORT/DB[?schema=NAME]` (many processes and machines; needs the
`postgres` extra) and `memory://NAME`. Opening the same URL twice in one process gives the same store (one
connection, and the steps of all its runs committed together); it closes when the last
opener closes it. Importing this package is cheap: a backend is imported when a store of
its kind is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfsm.store.base import (
    FINISHED,
    STATUSES,
    BranchRow,
    CheckpointRow,
    Conflict,
    EventRow,
    LeaseHeld,
    LeaseLost,
    RunFilter,
    RunMoved,
    RunNotFound,
    RunRow,
    StepRow,
    StoreError,
    TraceRow,
    TraceWrite,
)
from agentfsm.store.urls import is_postgres, mask_url

if TYPE_CHECKING:
    from agentfsm.store.core import Store

__all__ = [
    "DEFAULT_STORE", "FINISHED", "STATUSES", "BranchRow", "CheckpointRow", "Conflict", "EventRow", "LeaseHeld",
    "LeaseLost", "RunFilter", "RunMoved", "RunNotFound", "RunRow", "StepRow", "Store", "StoreError", "TraceRow",
    "TraceWrite", "open_store", "store_path",
]

DEFAULT_STORE = Path(".agentfsm") / "runs.db"
"""Where the store lives when neither a URL nor AGENTFSM_STORE says otherwise (under the working directory)."""
ENV_VARIABLE = "AGENTFSM_STORE"

STORE_OPTIONS = ("synchronous", "timeout")
"""What a SQLite store URL's query may set: `sqlite:///runs.db?synchronous=FULL&timeout=2` (timeout: seconds to
wait for a lock held by another process)."""

_OPEN: dict[tuple[str, ...], tuple[Store, list[int]]] = {}
"""Stores open in this process, by what they were opened on, with how many openers have not closed them."""


def store_path(url: str) -> Path:
    """The SQLite file a store URL names: `sqlite:///PATH` (SQLAlchemy's convention: `sqlite:///runs.db` is
    relative, `sqlite:////tmp/runs.db` absolute) or a bare path. Raises StoreError for any other URL."""
    return _parse_sqlite(url)[0]


def is_memory(url: str) -> bool:
    return url.lower().startswith("memory://")


def _parse_sqlite(url: str) -> tuple[Path, dict[str, str]]:
    scheme, separator, rest = url.partition("://")
    if not separator:
        if not url:
            raise StoreError("the store URL is empty: use sqlite:///PATH")
        return Path(url), {}
    # after `sqlite://` comes an empty host, then `/` and the path, then perhaps `?options`
    rest, _, query = rest.partition("?")
    if scheme.lower() != "sqlite" or not rest.startswith("/") or len(rest) == 1:
        raise StoreError(f"unsupported store URL '{mask_url(url)}': use sqlite:///PATH or "
                         "postgresql://USER@HOST:PORT/DATABASE")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in STORE_OPTIONS:
            raise StoreError(f"store URL '{url}': unknown option '{key}' (options: {', '.join(STORE_OPTIONS)})")
        options[key] = value
    return Path(rest[1:]), options


def _sqlite_settings(url: str, options: dict[str, str], synchronous: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if synchronous is not None or "synchronous" in options:
        settings["synchronous"] = synchronous if synchronous is not None else options["synchronous"]
    if "timeout" in options:
        try:
            settings["busy_timeout"] = float(options["timeout"])
        except ValueError:
            raise StoreError(f"store URL '{url}': timeout must be a number of seconds") from None
    return settings


def default_url() -> str:
    """$AGENTFSM_STORE, else the default SQLite file under the working directory."""
    return os.environ.get(ENV_VARIABLE) or f"sqlite:///{DEFAULT_STORE}"


def open_store(url: str | None = None, *, synchronous: str | None = None, create: bool = True) -> Store:
    """Open the store at `url`, else at $AGENTFSM_STORE, else at `.agentfsm/runs.db` in the working directory.

    A SQLite URL's query may set `synchronous` (NORMAL, the default, or FULL) and `timeout` (seconds, default 5);
    the `synchronous` argument wins over the URL. With `create=False` a store that is not there yet (no file,
    or an empty one) is refused instead of created: what reading commands want.
    """
    url = url or default_url()
    if is_memory(url):
        name = url[len("memory://"):]
        return _shared(("memory", name), lambda: _memory_store(name))
    if is_postgres(url):
        return _shared(("postgres", url, str(create)), lambda: _postgres_store(url, create))
    path, options = _parse_sqlite(url)
    settings = _sqlite_settings(url, options, synchronous)
    key = ("sqlite", str(path.expanduser().absolute()), repr(sorted(settings.items())))
    return _shared(key, lambda: _sqlite_store(path, create, settings))


def __getattr__(name: str) -> Any:
    if name == "Store":  # imported on first use: catching the store's errors must not load asyncio
        from agentfsm.store.core import Store

        return Store
    raise AttributeError(f"module 'agentfsm.store' has no attribute {name!r}")


def _sqlite_store(path: Path, create: bool, settings: dict[str, Any]) -> Store:
    from agentfsm.store.core import Store
    from agentfsm.store.sqlite import SQLiteBackend  # here: listing this package stays cheap

    return Store(SQLiteBackend(path, create=create, **settings))


def _postgres_store(url: str, create: bool) -> Store:
    from agentfsm.store.core import Store
    from agentfsm.store.postgres import PostgresBackend  # psycopg: only for a postgresql:// URL

    return Store(PostgresBackend(url, create=create))


def _memory_store(name: str) -> Store:
    from agentfsm.store.core import Store
    from agentfsm.store.memory import memory_backend

    return Store(memory_backend(name))


def _shared(key: tuple[str, ...], make: Any) -> Store:
    """The store open on `key` in this process, or a new one; each opener closes it once."""
    if key in _OPEN:
        store, openers = _OPEN[key]
        openers[0] += 1
        return store
    store = make()
    openers = [1]
    _OPEN[key] = (store, openers)

    def closed() -> Any:
        openers[0] -= 1
        if openers[0] == 0:
            del _OPEN[key]
            return store.backend.close()
        return None

    store._closer = closed  # noqa: SLF001 - the registry owns when a shared store really closes
    return store
