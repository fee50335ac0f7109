"""Which URLs would carry a secret across a network in clear text."""

from __future__ import annotations

import ipaddress
import urllib.parse

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".test")


def is_local_host(host: str) -> bool:
    """Loopback, a private or link-local address, `localhost`, a one-label name (a container's, `ollama`), or a
    name under a suffix kept for local networks: hosts whose traffic does not cross the internet."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    return not address.is_global


def sends_in_clear(url: str) -> bool:
    """True for a plain `http://` URL to a host that is not local: whatever it carries, anyone on the way reads."""
    parts = urllib.parse.urlsplit(str(url))
    return parts.scheme.lower() == "http" and not is_local_host(parts.hostname or "")
