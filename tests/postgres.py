"""A real, throwaway PostgreSQL server for the tests (and the benchmarks): one cluster per session.

`Cluster` runs `initdb` and `pg_ctl` in a temporary folder, on a free port of 127.0.0.1, with a
password (scram) for TCP logins. PostgreSQL refuses to run as root, so when the tests run as root
(CI does) the cluster runs as the unprivileged `postgres` user Debian's package creates.
The binaries are looked up on PATH, then where Debian puts them (/usr/lib/postgresql/*/bin).

Fixtures: `postgres_server` (the session's `Cluster`) and `postgres_url` (a store URL with a
schema of its own: an empty store for one test). Without the binaries they skip, saying how to
get them; with AGENTFSM_REQUIRE_SERVICES=1 (CI) they fail instead.
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import find_binary, require_binary

DATABASE = "agentfsm"
USER = "agentfsm"
_schemas = itertools.count()


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and psql: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = find_binary("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster of its own, started in a temporary folder and removed by `stop`."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False) -> None:
        self.bin_dir = bin_dir
        self.password = secrets.token_hex(8)
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="agentfsm-pg-"))
        self.data_dir = self.root / "data"
        self.log = self.root / "server.log"
        self.fsync = fsync
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)

    def _run(self, *argv: str) -> None:
        done = subprocess.run([str(self.bin_dir / argv[0]), *argv[1:]], user=self._user, group=self._user,
                              env={**os.environ, "LC_ALL": "C"}, cwd=self.root, capture_output=True, text=True)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> Cluster:
        secret = self.root / "password"
        secret.write_text(self.password)
        if self._user is not None:
            shutil.chown(secret, self._user, self._user)
        self._run("initdb", "-D", str(self.data_dir), "-U", USER, f"--pwfile={secret}", "--auth-host=scram-sha-256",
                  "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        secret.unlink()
        self._pg_ctl("start")
        self._run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", USER, "-w", DATABASE)
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                   f"-c fsync={'on' if self.fsync else 'off'}")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-o", options, "-w", action, *extra)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is closed, the server comes back on the same port."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, schema: str | None = None, *, password: str | None = None) -> str:
        """A store URL on this server (the default schema `agentfsm`, or `schema`)."""
        query = f"?schema={schema}" if schema else ""
        return f"postgresql://{USER}:{password or self.password}@127.0.0.1:{self.port}/{DATABASE}{query}"

    def fresh_url(self) -> str:
        """A store URL with a schema nobody used yet: an empty store of its own."""
        return self.url(f"t{os.getpid()}_{next(_schemas)}")

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser (over the local socket) and return what psql printed."""
        done = subprocess.run([str(self.bin_dir / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", USER,
                               "-d", DATABASE, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], user=self._user,
                              group=self._user, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return done.stdout


def require_postgres() -> Path:
    """The binaries' folder; skips (fails in CI) saying how to install them when there are none."""
    return Path(require_binary("initdb", package="postgresql")).resolve().parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Cluster]:
    """One real PostgreSQL server for the whole test session."""
    cluster = Cluster(require_postgres()).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: Cluster) -> str:
    """A store URL on the session's server with a schema of its own (an empty store for this test)."""
    return postgres_server.fresh_url()
