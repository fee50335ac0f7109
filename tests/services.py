"""Real services some tests need (PostgreSQL, Graphviz, Chromium): find them, or skip with how to get them.

On a developer's machine a missing one skips its tests with a line saying which Debian package brings it. CI sets
`AGENTFSM_REQUIRE_SERVICES=1` (`.ci/run` installs the packages first), and there a missing one fails the test
instead: a suite that silently skipped its PostgreSQL or browser tests would pass without checking them.
"""

from __future__ import annotations

import glob
import os
import shutil

import pytest

REQUIRE_VARIABLE = "AGENTFSM_REQUIRE_SERVICES"

# Debian installs some programs off PATH (PostgreSQL's server tools live under a versioned folder).
_EXTRA_PLACES = {
    "initdb": "/usr/lib/postgresql/*/bin/initdb",
    "pg_ctl": "/usr/lib/postgresql/*/bin/pg_ctl",
    "postgres": "/usr/lib/postgresql/*/bin/postgres",
}


def services_required() -> bool:
    """True where a missing service must fail its tests rather than skip them (CI)."""
    return os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")


def find_binary(name: str) -> str | None:
    """The path of program `name`: on PATH, or where Debian's package puts it off PATH (newest version first)."""
    found = shutil.which(name)
    if found:
        return found
    pattern = _EXTRA_PLACES.get(name)
    if pattern is None:
        return None
    candidates = sorted(glob.glob(pattern), key=_version_key, reverse=True)
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


def require_binary(name: str, *, package: str) -> str:
    """The path of program `name`, or skip (fail under CI) saying how to install it."""
    found = find_binary(name)
    if found:
        return found
    missing_service(f"`{name}` is not installed: install it with `apt-get install {package}` (Debian/Ubuntu)")
    raise AssertionError("unreachable")  # pragma: no cover - skip and fail both raise


def missing_service(reason: str) -> None:
    """Skip the calling test with `reason`, or fail it when CI requires every service."""
    if services_required():
        pytest.fail(f"{reason}; {REQUIRE_VARIABLE} is set, so this test may not skip", pytrace=False)
    pytest.skip(reason)


def _version_key(path: str) -> tuple[int, ...]:
    parts = path.split(os.sep)
    return tuple(int(part) for part in parts if part.isdigit())
