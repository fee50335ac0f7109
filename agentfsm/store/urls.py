"""Store URLs: which backend a URL names, how a PostgreSQL URL is read, and how any URL is shown (no password).

`mask_url` is the one place a URL's password is hidden: every message, log line and JSON
view that names a store shows `store.url`, which backends build with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from agentfsm.store.base import StoreError

POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "agentfsm"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/?#]*):(?P<password>[^@/?#]*)@")


def mask_url(url: str) -> str:
    """`url` with its password (and any `password=` option) replaced by `***`."""
    masked = _USERINFO.sub(lambda found: f"{found['scheme']}{found['user']}:***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", masked)


def scheme(url: str) -> str:
    """The URL's scheme, lower-cased ('' for a bare path)."""
    name, separator, _ = url.partition("://")
    return name.lower() if separator else ""


def is_postgres(url: str) -> bool:
    return scheme(url) in POSTGRES_SCHEMES


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """What a `postgresql://` store URL names: how to connect (libpq's URL form), and the schema to use."""

    conninfo: str
    schema: str
    shown: str
    """The URL as messages show it: password masked."""


def parse_postgres(url: str) -> PostgresTarget:
    """Read `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?schema=NAME&libpq options]`."""
    parts = urlsplit(url)
    shown = mask_url(url)
    if not parts.path.strip("/"):
        raise StoreError(f"store URL '{shown}' names no database: use postgresql://USER@HOST:PORT/DATABASE")
    options = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    kept: list[tuple[str, str]] = []
    for key, value in options:
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _SCHEMA_NAME.fullmatch(schema):
        raise StoreError(f"store URL '{shown}': schema must be lower-case letters, digits and _ (not '{schema}')")
    if not any(key == "connect_timeout" for key, _ in kept):
        kept.append(("connect_timeout", "5"))
    if not any(key == "application_name" for key, _ in kept):  # which process a server connection is, for admins
        kept.append(("application_name", f"agentfsm-{os.getpid()}"))
    try:
        port = parts.port
    except ValueError:
        raise StoreError(f"store URL '{shown}': the port is not a number") from None
    netloc = parts.netloc if port is None or port > 0 else parts.netloc
    conninfo = urlunsplit(("postgresql", netloc, quote(unquote(parts.path)), urlencode(kept), ""))
    return PostgresTarget(conninfo, schema, shown)
