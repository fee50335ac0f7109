"""Durable runs: the store interface and `open_store`, which picks the implementation from a URL.

Importing this package is cheap (the SQLite store is imported when a store is opened).
"""

from __future__ import annotations

import os
from pathlib import Path

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
    RunRow,
    StepRow,
    Store,
    StoreError,
)

__all__ = [
    "DEFAULT_STORE", "FINISHED", "STATUSES", "BranchRow", "CheckpointRow", "Conflict", "EventRow", "LeaseHeld",
    "LeaseLost", "RunFilter", "RunNotFound", "RunRow", "StepRow", "Store", "StoreError", "open_store",
    "store_path",
]

DEFAULT_STORE = Path(".agentfsm") / "runs.db"
"""Where the store lives when neither a URL nor AGENTFSM_STORE says otherwise (under the working directory)."""
ENV_VARIABLE = "AGENTFSM_STORE"


def store_path(url: str) -> Path:
    """The SQLite file a store URL names: `sqlite:///PATH` (SQLAlchemy's convention: `sqlite:///runs.db` is
    relative, `sqlite:////tmp/runs.db` absolute) or a bare path. Raises StoreError for any other URL."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        if not url:
            raise StoreError("the store URL is empty: use sqlite:///PATH")
        return Path(url)
    # after `sqlite://` comes an empty host, then `/` and the path
    if scheme.lower() != "sqlite" or not rest.startswith("/") or len(rest) == 1:
        raise StoreError(f"unsupported store URL '{url}': use sqlite:///PATH")
    return Path(rest[1:])


def open_store(url: str | None = None, *, synchronous: str | None = None) -> Store:
    """Open the store at `url`, else at $AGENTFSM_STORE, else at `.agentfsm/runs.db` in the working directory."""
    if url is None:
        url = os.environ.get(ENV_VARIABLE) or f"sqlite:///{DEFAULT_STORE}"
    path = store_path(url)
    from agentfsm.store.sqlite import SQLiteStore  # imported here: listing this package stays cheap

    if synchronous is None:
        return SQLiteStore(path)
    return SQLiteStore(path, synchronous=synchronous)
