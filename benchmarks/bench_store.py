"""What a durable step costs in agentfsm's SQLite store, next to LangGraph's and Burr's SQLite persistence.

Run it by hand, from the repository root, in an environment that has the peers:

    python3 -m venv /root/bench-venv
    /root/bench-venv/bin/pip install -e '.[bench]'
    /root/bench-venv/bin/python benchmarks/bench_store.py [--steps 1000] [--repeats 5] [--payload-kb 100]

What it measures
----------------
Every engine runs the same loop as bench_transitions.py: a step `inc` adds 1 to a
counter `n`, a step `check` goes back to `inc` while `n < limit`, so `--steps 1000`
is 1,000 steps (limit 500), each one recorded by the engine's SQLite persistence
before the next step runs.

1. Time per step, small context ({n, limit}). Each run gets its own fresh temporary
   directory and store (opened, tables created, before the clock starts); the run is
   timed with `time.perf_counter_ns`; the figure is the median of `--repeats` runs,
   after one warm-up run. The same loop is also timed without any store, and the
   table prints both totals per step and their difference, the store's share of a
   step: (time of the durable run - time of the same run without a store) / steps.
2. Bytes on disk, with a `--payload-kb` string (default 100 KB, random hex) put in
   the context at the start and never changed, after `--steps` steps: the size of
   every file in the store's directory (db, -wal, -shm, ...) right after the run with
   the connection still open, and again after the connection is closed (closing
   the last connection of a WAL database checkpoints the WAL into the db and
   deletes it). The time per step of that one run is printed too.

The rows:

  bare sqlite3, WAL, synchronous=NORMAL: one INSERT of a small row + COMMIT per step
      (the floor; for the bytes table it inserts the payload once, then a small row per step)
  bare sqlite3, WAL, synchronous=FULL: the same
  agentfsm: `await agentfsm.Runs(open_store(url, synchronous=...)).start(machine, inputs)`, a
      durable run of benchmarks' loop YAML (every step committed before the next), NORMAL and FULL;
      the store is opened (tables created) before the clock starts and closed (awaited) after it stops,
      and each session drives its run on an event loop of its own
  LangGraph: a compiled StateGraph with `checkpointer=SqliteSaver(conn)`, invoked with a
      thread_id and durability="sync" (each checkpoint written before the next step, the
      same guarantee); also its default durability="async" (written while the next step
      runs), and durability="sync" with synchronous=NORMAL set on its connection.
      SqliteSaver switches the file to WAL itself and leaves synchronous at SQLite's
      default (FULL).
  Burr: an Application with `.with_state_persister(SQLitePersister(...))` (Burr also
      spells it SQLLitePersister), run with `app.run(halt_after=["done"])`; at its
      defaults (rollback journal, synchronous=FULL) and on a connection we put in WAL +
      synchronous=NORMAL.

The journal mode and synchronous level each peer actually ran with are read back from
its connection and printed. Ratios are against agentfsm with synchronous=NORMAL.
A peer that is not installed, or an agentfsm without its store, is reported as such;
it does not stop the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

NOT_INSTALLED = "not installed (pip install -e '.[bench]')"
SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}

LOOP_YAML = """\
agentfsm: 1
name: store_loop
description: Counts n up to limit, one `set` step and one `choice` step per increment (bench_store.py).
inputs:
  limit: {type: integer, default: 500, description: Where the counter stops.}
  blob: {type: string, default: "", description: A payload that no state changes.}
context: {n: 0}
max_steps: 10000000
initial: inc
states:
  inc:
    type: set
    set: {n: "{{ n + 1 }}"}
    next: check
  check:
    type: choice
    transitions:
      - {when: "n < limit", to: inc}
      - {to: done}
  done:
    type: final
    output: "{{ n }}"
"""


class Session(Protocol):
    """One engine, set up on one directory (or on none), ready to run the loop once."""

    def run(self) -> int:
        """Run the loop to its end; return the final counter (checked against the limit)."""
        ...

    def settings(self) -> str:
        """The journal mode and synchronous level it ran with, as read back ("" when not known)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Params:
    limit: int
    payload: str  # "" for the small context


Opener = Callable[[Path | None, Params], Session]
"""Opens a session: on a fresh directory (durable), or with None (the same loop without a store)."""


@dataclass(frozen=True)
class Case:
    label: str
    distributions: tuple[str, ...]  # the packages whose absence means "not installed"
    open: Opener
    has_plain: bool = True  # False: there is no "without a store" run (the bare commit)
    target_us: float | None = None
    target_mb: float | None = None
    baseline: bool = False


def pragmas(conn: sqlite3.Connection) -> str:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    return f"{mode.upper()}, {SYNC_NAMES.get(level, level)}"


# -- bare sqlite3 ----------------------------------------------------------------------------------


def bare_sqlite(synchronous: str) -> Opener:
    class Bare:
        def __init__(self, directory: Path | None, params: Params) -> None:
            assert directory is not None
            self.params = params
            self.conn = sqlite3.connect(directory / "bare.db", isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self.conn.execute("CREATE TABLE payload (id INTEGER PRIMARY KEY, data TEXT)")
            self.conn.execute(
                "CREATE TABLE steps (run TEXT, step INTEGER, state TEXT, data TEXT, PRIMARY KEY (run, step))"
            )

        def run(self) -> int:
            conn, limit = self.conn, self.params.limit
            if self.params.payload:
                conn.execute("BEGIN")
                conn.execute("INSERT INTO payload (data) VALUES (?)", (self.params.payload,))
                conn.execute("COMMIT")
            n = step = 0
            while True:
                step += 1
                n += 1
                conn.execute("BEGIN")
                conn.execute("INSERT INTO steps VALUES ('r', ?, 'inc', ?)", (step, f'{{"n": {n}}}'))
                conn.execute("COMMIT")
                step += 1
                conn.execute("BEGIN")
                conn.execute("INSERT INTO steps VALUES ('r', ?, 'check', NULL)", (step,))
                conn.execute("COMMIT")
                if n >= limit:
                    return n

        def settings(self) -> str:
            return pragmas(self.conn)

        def close(self) -> None:
            self.conn.close()

    return Bare


# -- agentfsm --------------------------------------------------------------------------------------

AGENTFSM_STORE_ERROR: str | None = None


def agentfsm_store_available() -> bool:
    """Whether agentfsm.store.open_store and agentfsm.Runs import (kept in AGENTFSM_STORE_ERROR if not)."""
    global AGENTFSM_STORE_ERROR
    try:
        from agentfsm import Runs  # noqa: F401
        from agentfsm.store import open_store  # noqa: F401
    except ImportError as error:
        AGENTFSM_STORE_ERROR = f"{type(error).__name__}: {error}"
        return False
    return True


_machine_cache: dict[Path, Any] = {}


def loop_machine(workdir: Path) -> Any:
    from agentfsm import load_machine

    path = workdir / "store_loop.yaml"
    if path not in _machine_cache:
        path.write_text(LOOP_YAML, encoding="utf-8")
        _machine_cache[path] = load_machine(path)
    return _machine_cache[path]


def final_counter(result: Any) -> int:
    if not getattr(result, "succeeded", True):
        raise RuntimeError(f"the agentfsm loop failed: {getattr(result, 'error', result)}")
    return int(result.output)


def agentfsm(synchronous: str, workdir: Path) -> Opener:
    class Agentfsm:
        def __init__(self, directory: Path | None, params: Params) -> None:
            self.machine = loop_machine(workdir)
            self.inputs = {"limit": params.limit, "blob": params.payload}
            self.loop = asyncio.new_event_loop()
            self.store = self.runs = None
            if directory is not None:
                from agentfsm import Runs
                from agentfsm.store import open_store

                self.store = open_store(f"sqlite:///{directory / 'runs.db'}", synchronous=synchronous)
                self.runs = Runs(self.store)  # async: every method is awaited on self.loop

        def run(self) -> int:
            if self.runs is None:
                result = self.loop.run_until_complete(self.machine.run(self.inputs))
            else:
                result = self.loop.run_until_complete(self.runs.start(self.machine, self.inputs))
            return final_counter(result)

        def settings(self) -> str:
            backend = getattr(self.store, "backend", self.store)  # Store wraps a backend; SQLite's holds `db`
            for name in ("db", "conn", "connection", "_conn", "_connection", "_db"):
                conn = getattr(backend, name, None)
                if isinstance(conn, sqlite3.Connection):
                    try:
                        return pragmas(conn)
                    except sqlite3.Error:
                        break
            return f"{synchronous} (asked)"

        def close(self) -> None:
            if self.runs is not None:
                self.loop.run_until_complete(self.runs.close())  # closes the store (it is opened once here)
            self.loop.close()

    return Agentfsm


# -- LangGraph -------------------------------------------------------------------------------------


class LoopState(TypedDict):
    n: int
    limit: int
    blob: str


def langgraph(durability: str, synchronous: str | None = None) -> Opener:
    class LangGraph:
        def __init__(self, directory: Path | None, params: Params) -> None:
            from langgraph.graph import END, START, StateGraph

            def inc(state: LoopState) -> dict[str, Any]:
                return {"n": state["n"] + 1}

            def check(state: LoopState) -> dict[str, Any]:
                return {}

            def route(state: LoopState) -> str:
                return "inc" if state["n"] < state["limit"] else END

            graph = StateGraph(LoopState)
            graph.add_node("inc", inc)
            graph.add_node("check", check)
            graph.add_edge(START, "inc")
            graph.add_edge("inc", "check")
            graph.add_conditional_edges("check", route, ["inc", END])
            self.params = params
            self.conn = self.saver = None
            if directory is None:
                self.app = graph.compile()
            else:
                from langgraph.checkpoint.sqlite import SqliteSaver

                self.conn = sqlite3.connect(directory / "checkpoints.sqlite", check_same_thread=False)
                if synchronous is not None:
                    self.conn.execute(f"PRAGMA synchronous={synchronous}")
                self.saver = SqliteSaver(self.conn)
                self.saver.setup()  # tables and WAL, before the clock starts
                self.app = graph.compile(checkpointer=self.saver)

        def run(self) -> int:
            config: dict[str, Any] = {"recursion_limit": 2 * self.params.limit + 10}
            state = LoopState(n=0, limit=self.params.limit, blob=self.params.payload)
            if self.saver is None:
                return self.app.invoke(state, config)["n"]
            config["configurable"] = {"thread_id": "bench"}
            return self.app.invoke(state, config, durability=durability)["n"]

        def settings(self) -> str:
            return pragmas(self.conn) if self.conn is not None else ""

        def close(self) -> None:
            if self.conn is not None:
                self.conn.close()

    return LangGraph


# -- Burr ------------------------------------------------------------------------------------------


def burr(tuned: bool) -> Opener:
    class Burr:
        def __init__(self, directory: Path | None, params: Params) -> None:
            from burr.core import ApplicationBuilder, State, action, default, expr

            @action(reads=["n"], writes=["n"])
            def inc(state: State) -> State:
                return state.update(n=state["n"] + 1)

            @action(reads=[], writes=[])
            def check(state: State) -> State:
                return state

            @action(reads=[], writes=[])
            def done(state: State) -> State:
                return state

            builder = (
                ApplicationBuilder()
                .with_actions(inc=inc, check=check, done=done)
                .with_transitions(("inc", "check"), ("check", "inc", expr("n < limit")), ("check", "done", default))
                .with_state(n=0, limit=params.limit, blob=params.payload)
                .with_entrypoint("inc")
                .with_identifiers(app_id="bench")
            )
            self.persister = None
            if directory is not None:
                from burr.core.persistence import SQLitePersister

                path = str(directory / "burr.db")
                if tuned:
                    conn = sqlite3.connect(path)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    self.persister = SQLitePersister(db_path=path, connection=conn)
                else:
                    self.persister = SQLitePersister(db_path=path)
                self.persister.initialize()  # the table, before the clock starts
                builder = builder.with_state_persister(self.persister)
            self.app = builder.build()

        def run(self) -> int:
            _, _, state = self.app.run(halt_after=["done"])
            return state["n"]

        def settings(self) -> str:
            return pragmas(self.persister.connection) if self.persister is not None else ""

        def close(self) -> None:
            if self.persister is not None:
                self.persister.cleanup()

    return Burr


def cases(workdir: Path) -> list[Case]:
    return [
        Case("bare sqlite3 commit, WAL, NORMAL", (), bare_sqlite("NORMAL"), has_plain=False),
        Case("bare sqlite3 commit, WAL, FULL", (), bare_sqlite("FULL"), has_plain=False),
        Case(
            "agentfsm durable run, NORMAL",
            ("agentfsm",),
            agentfsm("NORMAL", workdir),
            target_us=100,
            target_mb=2,
            baseline=True,
        ),
        Case("agentfsm durable run, FULL", ("agentfsm",), agentfsm("FULL", workdir)),
        Case("LangGraph SqliteSaver, sync", ("langgraph", "langgraph-checkpoint-sqlite"), langgraph("sync")),
        Case(
            "LangGraph SqliteSaver, async (default)", ("langgraph", "langgraph-checkpoint-sqlite"), langgraph("async")
        ),
        Case(
            "LangGraph SqliteSaver, sync, NORMAL",
            ("langgraph", "langgraph-checkpoint-sqlite"),
            langgraph("sync", "NORMAL"),
        ),
        Case("Burr SQLitePersister (defaults)", ("apache-burr",), burr(tuned=False)),
        Case("Burr SQLitePersister, WAL, NORMAL", ("apache-burr",), burr(tuned=True)),
    ]


# -- measuring -------------------------------------------------------------------------------------


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def fresh_dir(root: Path, label: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="".join(c if c.isalnum() else "_" for c in label)[:24] + "-", dir=root))


def timed_run(opener: Opener, directory: Path | None, params: Params) -> tuple[int, str, Session]:
    """Open a session, run it once under the clock; returns (ns, settings, the still-open session)."""
    session = opener(directory, params)
    gc.collect()
    started = time.perf_counter_ns()
    final = session.run()
    elapsed = time.perf_counter_ns() - started
    if final != params.limit:
        session.close()
        raise RuntimeError(f"the loop ended at n={final}, expected {params.limit}")
    return elapsed, session.settings(), session


def median_ns(opener: Opener, root: Path | None, label: str, params: Params, repeats: int) -> tuple[float, str]:
    """Median ns of `repeats` runs, each on a fresh directory (or with no store when root is None), after a warm-up."""
    times: list[int] = []
    settings = ""
    for attempt in range(repeats + 1):
        directory = fresh_dir(root, label) if root is not None else None
        elapsed, settings, session = timed_run(opener, directory, params)
        session.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        if attempt:  # the first run warms up
            times.append(elapsed)
    return statistics.median(times), settings


def dir_bytes(directory: Path) -> tuple[int, str]:
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix != ".yaml")
    names = " ".join(p.name for p in files)
    return sum(p.stat().st_size for p in files), names


@dataclass
class Row:
    label: str
    error: str | None = None
    settings: str = ""
    durable_us: float | None = None
    plain_us: float | None = None
    open_bytes: int | None = None
    closed_bytes: int | None = None
    files: str = ""
    big_us: float | None = None


def measure(case: Case, root: Path, args: argparse.Namespace) -> Row:
    row = Row(case.label)
    missing = [d for d in case.distributions if version_of(d) is None]
    if missing:
        row.error = NOT_INSTALLED + f" [{', '.join(missing)}]"
        return row
    if case.distributions == ("agentfsm",) and not agentfsm_store_available():
        row.error = f"agentfsm store: not available ({AGENTFSM_STORE_ERROR})"
        return row
    steps = args.steps
    small = Params(limit=steps // 2, payload="")
    big = Params(limit=steps // 2, payload=secrets.token_hex(args.payload_kb * 500))
    try:
        durable, row.settings = median_ns(case.open, root, case.label, small, args.repeats)
        row.durable_us = durable / steps / 1e3
        if case.has_plain:
            plain, _ = median_ns(case.open, None, case.label, small, args.repeats)
            row.plain_us = plain / steps / 1e3
        directory = fresh_dir(root, case.label)
        elapsed, _, session = timed_run(case.open, directory, big)
        row.big_us = elapsed / steps / 1e3
        row.open_bytes, row.files = dir_bytes(directory)
        session.close()
        row.closed_bytes, _ = dir_bytes(directory)
        shutil.rmtree(directory, ignore_errors=True)
    except Exception as error:  # noqa: BLE001  # one engine failing must not hide the others
        row.error = f"failed: {type(error).__name__}: {error}"
        if args.verbose:
            traceback.print_exc()
    return row


# -- printing --------------------------------------------------------------------------------------

TIME_ROW = "{:<40}{:>10}{:>10}{:>10}{:>9}   {:<22}{}"
BYTES_ROW = "{:<40}{:>10}{:>10}{:>9}{:>10}   {:<28}{}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.1f}x"


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_header(args: argparse.Namespace) -> None:
    names = ("agentfsm", "langgraph", "langgraph-checkpoint-sqlite", "apache-burr")
    versions = ", ".join(f"{name} {version_of(name) or '-'}" for name in names)
    print(f"Python {platform.python_version()} on {platform.machine()}, SQLite {sqlite3.sqlite_version}; {versions}")
    print(
        f"{args.steps:,} steps per run (counter to {args.steps // 2:,}); "
        f"median of {args.repeats} runs after a warm-up, each on a fresh store in a fresh temporary directory\n"
    )


def print_times(rows: list[Row], cases_: list[Case], steps: int) -> None:
    base = next((r.durable_us for r, c in zip(rows, cases_) if c.baseline), None)
    print(f"Time per step, small context {{n, limit}} ({steps:,} steps)")
    print(TIME_ROW.format("engine", "durable", "no store", "store's", "total", "journal, synchronous", "note"))
    print(TIME_ROW.format("", "µs/step", "µs/step", "µs/step", "vs afsm", "", ""))
    for row, case in zip(rows, cases_):
        if row.error:
            print(f"{row.label:<40}{row.error}")
            continue
        assert row.durable_us is not None  # measured when there is no error
        share = row.durable_us - row.plain_us if row.plain_us is not None else row.durable_us
        note = ""
        if case.target_us is not None:
            note = f"target: store's share <= {case.target_us:g} µs  {'ok' if share <= case.target_us else 'MISSED'}"
        print(
            TIME_ROW.format(
                row.label,
                fmt(row.durable_us, ".1f"),
                fmt(row.plain_us, ".1f"),
                f"{share:.1f}",
                ratio(row.durable_us, base),
                row.settings,
                note,
            )
        )
    print("  durable: the run with its store; no store: the same loop without one; store's = durable - no store\n")


def print_bytes(rows: list[Row], cases_: list[Case], steps: int, payload_kb: int) -> None:
    base = next((r.closed_bytes for r, c in zip(rows, cases_) if c.baseline), None)
    print(f"Bytes on disk after {steps:,} steps, a {payload_kb} KB string in the context that never changes")
    print(BYTES_ROW.format("engine", "open MB", "closed MB", "vs afsm", "µs/step", "note", "files while open"))
    for row, case in zip(rows, cases_):
        if row.error:
            print(f"{row.label:<40}{row.error}")
            continue
        assert row.open_bytes is not None and row.closed_bytes is not None  # measured when there is no error
        note = ""
        if case.target_mb is not None:
            ok = row.closed_bytes <= case.target_mb * 1e6
            note = f"target <= {case.target_mb:g} MB  {'ok' if ok else 'MISSED'}"
        if not case.has_plain:
            note = "payload once, small rows"
        print(
            BYTES_ROW.format(
                row.label,
                f"{row.open_bytes / 1e6:.3f}",
                f"{row.closed_bytes / 1e6:.3f}",
                ratio(row.closed_bytes, base),
                fmt(row.big_us, ".1f"),
                note,
                row.files,
            )
        )
    print("  open: every file in the store's directory (db, -wal, -shm) right after the run, connection open;")
    print("  closed: the same after closing the connection (which checkpoints a WAL into the db and deletes it);")
    print("  vs afsm compares closed sizes; MB = 10^6 bytes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per run, even (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per engine after a warm-up (default 5)")
    parser.add_argument("--payload-kb", type=int, default=100, help="the unchanging payload, KB (default 100)")
    parser.add_argument("--only", default="", help="run only the rows whose label contains this text (any case)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an engine that fails")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.steps % 2:
        parser.error("--steps must be an even number >= 2")
    print_header(args)
    with tempfile.TemporaryDirectory(prefix="bench_store-") as tmp:
        root = Path(tmp)
        selected = [c for c in cases(root) if args.only.lower() in c.label.lower()]
        rows = []
        for case in selected:
            rows.append(measure(case, root, args))
            print(f"  measured {case.label}", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        print_times(rows, selected, args.steps)
        print_bytes(rows, selected, args.steps, args.payload_kb)


if __name__ == "__main__":
    main()
