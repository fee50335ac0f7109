"""Durable runs: the store interface and `open_store`, which picks the implementation from a URL.

Importing this package is cheap (the SQLite store is imported when a store is opened).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    RunNotFound,
    RunMoved,
    RunRow,
    StepRow,
    Store,
    StoreError,
)

__all__ = [
    "DEFAULT_STORE", "FINISHED", "STATUSES", "BranchRow", "CheckpointRow", "Conflict", "EventRow", "LeaseHeld",
    "LeaseLost", "RunFilter", "RunMoved", "RunNotFound", "RunRow", "StepRow", "Store", "StoreError", "open_store",
    "store_path",
]

DEFAULT_STORE = Path(".agentfsm") / "runs.db"
"""Where the store lives when neither a URL nor AGENTFSM_STORE says otherwise (under the working directory)."""
ENV_VARIABLE = "AGENTFSM_STORE"


STORE_OPTIONS = ("synchronous", "timeout")
"""What a store URL's query may set: `sqlite:///runs.db?synchronous=FULL&timeout=2` (timeout: seconds to wait
for a lock held by another process)."""


def store_path(url: str) -> Path:
    """The SQLite file a store URL names: `sqlite:///PATH` (SQLAlchemy's convention: `sqlite:///runs.db` is
    relative, `sqlite:////tmp/runs.db` absolute) or a bare path. Raises StoreError for any other URL."""
    return _parse(url)[0]


def _parse(url: str) -> tuple[Path, dict[str, str]]:
    scheme, separator, rest = url.partition("://")
    if not separator:
        if not url:
            raise StoreError("the store URL is empty: use sqlite:///PATH")
        return Path(url), {}
    # after `sqlite://` comes an empty host, then `/` and the path, then perhaps `?options`
    rest, _, query = rest.partition("?")
    if scheme.lower() != "sqlite" or not rest.startswith("/") or len(rest) == 1:
        raise StoreError(f"unsupported store URL '{url}': use sqlite:///PATH")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in STORE_OPTIONS:
            raise StoreError(f"store URL '{url}': unknown option '{key}' (options: {', '.join(STORE_OPTIONS)})")
        options[key] = value
    return Path(rest[1:]), options


def open_store(url: str | None = None, *, synchronous: str | None = None, create: bool = True) -> Store:
    """Open the store at `url`, else at $AGENTFSM_STORE, else at `.agentfsm/runs.db` in the working directory.

    The URL's query may set `synchronous` (NORMAL, the default, or FULL) and `timeout` (seconds, default 5);
    the `synchronous` argument wins over the URL. With `create=False` a store that is not there yet (no file,
    or an empty one) is refused instead of created: what reading commands want.
    """
    if url is None:
        url = os.environ.get(ENV_VARIABLE) or f"sqlite:///{DEFAULT_STORE}"
    path, options = _parse(url)
    from agentfsm.store.sqlite import SQLiteStore  # imported here: listing this package stays cheap

    settings: dict[str, Any] = {}
    if synchronous is not None or "synchronous" in options:
        settings["synchronous"] = synchronous if synchronous is not None else options["synchronous"]
    if "timeout" in options:
        try:
            settings["busy_timeout"] = float(options["timeout"])
        except ValueError:
            raise StoreError(f"store URL '{url}': timeout must be a number of seconds") from None
    return SQLiteStore(path, create=create, **settings)
