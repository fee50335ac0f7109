"""Which store a front end works on, and whether it is there: only commands that record runs create one."""

from __future__ import annotations

from pathlib import Path

from agentfsm.service.runs import Runs
from agentfsm.store import DEFAULT_STORE, default_url, is_memory, open_store, store_path
from agentfsm.store.base import StoreError
from agentfsm.store.urls import is_postgres


def store_exists(url: str | None) -> bool:
    """Whether the store `url` names (default: $AGENTFSM_STORE, else `.agentfsm/runs.db` here) has been made."""
    url = url or default_url()
    # a server's store is asked when it is opened (without `create`, a schema without our tables is refused)
    return is_memory(url) or is_postgres(url) or store_path(url).expanduser().is_file()


def open_runs(url: str | None, *, create: bool) -> Runs:
    """Runs in the store at `url`. Without `create`, a store that is not there is refused instead of made: a
    mistyped --store is an error, not a new empty store somewhere (an empty file is refused too)."""
    if create:
        return Runs(url)
    chosen = url or default_url()
    if not store_exists(chosen):
        where = "" if url else " (the default store; --store URL or AGENTFSM_STORE picks another)"
        raise StoreError(f"no store at {_place(chosen)}{where}: no run was recorded there")
    return Runs(open_store(chosen, create=False))


def _place(url: str) -> Path | str:
    return url if is_memory(url) else store_path(url).expanduser().absolute()


__all__ = ["DEFAULT_STORE", "open_runs", "store_exists"]
