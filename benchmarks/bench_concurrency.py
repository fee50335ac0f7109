"""Many runs at once: 1,000 concurrent runs of a 5-state machine in one process, in memory and recorded.

Run it by hand, from the repository root, in an environment that has the peers:

    python3 -m venv .venv && .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_concurrency.py [--runs 1000] [--repeats 3] [--only TEXT] [--no-memory] [-v]

What it measures
----------------
Every engine runs the same machine: five states `s1` -> `s2` -> `s3` -> `s4` -> `s5`, each of
which awaits `asyncio.sleep(0.01)` (an LLM or tool call that takes 10 ms); `s5` is final and
returns the run's input `i` as the output, which is checked for every run. `--runs` runs
(default 1,000) are started at once, as a user would write it, with one `asyncio.gather`:

  bare asyncio floor    `--runs` tasks, each awaiting five `asyncio.sleep(0.01)`: what the sleeps
                        alone take on this machine, with no engine at all
  agentfsm in memory    `agentfsm.run(machine, {"i": i})` (a `StateMachine` built in Python from
                        `State` subclasses; one machine object for every run)
  agentfsm recorded     `agentfsm.run(machine, {"i": i}, store=URL)`: every step committed to the
                        store before the run's next state starts. URL is `sqlite:///DIR/runs.db`
                        (one file; created, tables and all, before the clock starts, so the timed
                        calls open an existing store, as they would after the first day) and
                        `memory://NAME`. Calls in one process naming the same store share its
                        connection, and the steps ready at the same moment are committed in one
                        transaction (agentfsm/store/batch.py)
  LangGraph in memory   a `StateGraph` of the same five async nodes, `ainvoke({"i": i})`
  LangGraph SQLite      the same graph compiled with `AsyncSqliteSaver` (langgraph-checkpoint-sqlite,
                        over aiosqlite; tables made by `setup()` before the clock starts), one
                        `thread_id` per run, with `durability="sync"` (each checkpoint written
                        before the next step: agentfsm's guarantee) and with LangGraph's default
                        durability, "async" (written while the next step runs)

Each timed repeat of a case runs in a fresh child process of this interpreter (`--child CASE`),
so no engine runs in a heap grown by another (a full garbage collection walks every object the
process holds, imported modules included). The child warms up with one gather of 50 runs
(imports, caches), then times one gather of `--runs` runs in a fresh event loop (`asyncio.run`)
with a fresh store in a fresh temporary directory; only the `gather` is timed
(`time.perf_counter`). Printed beside the wall time: the process's CPU time over the same span
(`time.process_time`, every thread: aiosqlite works in one), per run; the time spent in garbage
collections during the gather (`gc.callbacks`), with how many were full (generation 2). The
repeats go round-robin over the cases (case A, B, C, A, B, C...), so a change in the machine's
load hits every case alike. The figure is the median of `--repeats` (default 3), with the range.
Ratios are to the floor's median from the same run. Targets (issue 8): agentfsm recorded at most
5x the floor, in memory at most 2x.

Group commit: in the agentfsm recorded rows, `agentfsm.store.batch.WriteBatch._commit` (one call
per write transaction) is wrapped, in the child process only, to count transactions and the
writes in them (a counter increment per transaction, nothing per write). A run makes 7 writes:
the run's creation, five steps, and its end. The table prints the median number of write
transactions per repeat and the average writes per transaction.

Memory per run (unless `--no-memory`): each case runs once more in a fresh child process, which
warms up with 50 runs, then gathers `--runs` runs twice:
  RSS     the resident set's high-water mark (Linux's VmHWM, reset through /proc/self/clear_refs
          just before the gather) minus the resident set just before it, divided by the runs:
          what a run costs the operating system, allocator slack included (no tracemalloc yet)
  traced  the peak of `tracemalloc`'s traced memory during the second gather, minus what was
          traced before it, divided by the runs: the Python objects a run keeps alive at once
          (all of the runs are alive together: each sleeps before any can end)
The target (issue 8: at most 10 KB per run in memory) is read against the traced figure; the
floor's own cost per task is printed in the same table.

A peer that is not installed is reported as such; it does not stop the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

NOT_INSTALLED = "not installed (pip install -e '.[bench]')"
STATES = ("s1", "s2", "s3", "s4", "s5")
SLEEP = 0.01
WARMUP_RUNS = 50
IN_MEMORY_TARGET = 2.0
RECORDED_TARGET = 5.0
MEMORY_TARGET_KB = 10.0

Gather = Callable[[int], Awaitable[None]]
"""Starts n runs at once and returns when every one has ended (checking each run's output)."""


class Setup:
    """One case on one fresh directory: `prepare` (untimed), `gather(n)` (timed), `close` (untimed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def prepare(self) -> None: ...

    async def gather(self, n: int) -> None:
        raise NotImplementedError

    async def close(self) -> None: ...

    def check(self, n: int) -> None:
        """After close: anything to check in what was stored."""


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    distributions: tuple[str, ...]
    make: Callable[[Path], Setup]
    target: float | None = None  # x the floor
    memory_target_kb: float | None = None
    counts_commits: bool = False
    floor: bool = False


def check_outputs(outputs: list[Any], n: int) -> None:
    if outputs != list(range(n)):
        wrong = next(i for i, value in enumerate(outputs) if value != i)
        raise RuntimeError(f"run {wrong} ended with {outputs[wrong]!r}, expected {wrong}")


# -- the floor --------------------------------------------------------------------------------------


class Floor(Setup):
    async def gather(self, n: int) -> None:
        async def one(i: int) -> int:
            for _ in STATES:
                await asyncio.sleep(SLEEP)
            return i

        check_outputs(list(await asyncio.gather(*(one(i) for i in range(n)))), n)


# -- agentfsm ---------------------------------------------------------------------------------------

_machine: Any = None


def five_states() -> Any:
    """The machine, built once: five `State` subclasses, each awaiting 10 ms; the last returns input `i`."""
    global _machine
    if _machine is not None:
        return _machine
    from agentfsm import State, StateContext, StateMachine

    class Sleep(State):
        def __init__(self, name: str, following: str | None) -> None:
            super().__init__(name)
            self.following = following

        async def execute(self, context: StateContext) -> Any:
            await asyncio.sleep(SLEEP)
            return self.following if self.following is not None else context.data["i"]

    machine = StateMachine("five", max_steps=100)
    for index, name in enumerate(STATES):
        following = STATES[index + 1] if index + 1 < len(STATES) else None
        machine.add_state(Sleep(name, following), initial=index == 0, final=following is None)
    for source, target in zip(STATES, STATES[1:]):
        machine.add_transition(source, target)
    _machine = machine
    return machine


async def agentfsm_gather(n: int, store: str | None) -> None:
    import agentfsm

    machine = five_states()
    if store is None:
        results = await asyncio.gather(*(agentfsm.run(machine, {"i": i}) for i in range(n)))
    else:
        results = await asyncio.gather(*(agentfsm.run(machine, {"i": i}, store=store) for i in range(n)))
    failed = [r for r in results if r.status != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs did not succeed; the first: {failed[0].status} {failed[0].error}")
    check_outputs([r.output for r in results], n)


class AgentfsmMemory(Setup):
    async def gather(self, n: int) -> None:
        await agentfsm_gather(n, None)


class AgentfsmSQLite(Setup):
    async def prepare(self) -> None:
        import agentfsm

        self.url = f"sqlite:///{self.directory / 'runs.db'}"
        async with agentfsm.Runs(self.url):  # creates the file and its tables
            pass

    async def gather(self, n: int) -> None:
        await agentfsm_gather(n, self.url)

    def check(self, n: int) -> None:
        with sqlite3.connect(self.directory / "runs.db") as db:
            runs = db.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone()[0]
            steps = db.execute("SELECT count(*) FROM steps").fetchone()[0]
        db.close()
        if runs != n or steps != n * (len(STATES) + 1):
            raise RuntimeError(f"the store holds {runs} succeeded runs and {steps} steps, "
                               f"expected {n} and {n * (len(STATES) + 1)}")


_memory_stores = 0


class AgentfsmMemoryStore(Setup):
    async def prepare(self) -> None:
        global _memory_stores
        _memory_stores += 1
        self.name = f"bench-concurrency-{_memory_stores}"

    async def gather(self, n: int) -> None:
        await agentfsm_gather(n, f"memory://{self.name}")

    async def close(self) -> None:
        from agentfsm.store import memory

        memory._SHARED.pop(self.name, None)  # noqa: SLF001 - rows of a finished repeat: let them go


# -- LangGraph --------------------------------------------------------------------------------------


class FiveState(TypedDict, total=False):
    i: int
    out: int


def five_node_graph() -> Any:
    from langgraph.graph import END, START, StateGraph

    def node(last: bool) -> Callable[[FiveState], Awaitable[dict[str, Any]]]:
        async def run(state: FiveState) -> dict[str, Any]:
            await asyncio.sleep(SLEEP)
            return {"out": state["i"]} if last else {}

        return run

    graph = StateGraph(FiveState)
    for index, name in enumerate(STATES):
        graph.add_node(name, node(index == len(STATES) - 1))
    graph.add_edge(START, STATES[0])
    for source, target in zip(STATES, STATES[1:]):
        graph.add_edge(source, target)
    graph.add_edge(STATES[-1], END)
    return graph


class LangGraphMemory(Setup):
    async def prepare(self) -> None:
        self.app = five_node_graph().compile()

    async def gather(self, n: int) -> None:
        results = await asyncio.gather(*(self.app.ainvoke({"i": i}) for i in range(n)))
        check_outputs([r["out"] for r in results], n)


def langgraph_sqlite(durability: str | None) -> type[Setup]:
    class LangGraphSQLite(Setup):
        async def prepare(self) -> None:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            self._saver_context = AsyncSqliteSaver.from_conn_string(str(self.directory / "checkpoints.sqlite"))
            self.saver = await self._saver_context.__aenter__()
            await self.saver.setup()
            self.app = five_node_graph().compile(checkpointer=self.saver)

        async def gather(self, n: int) -> None:
            extra = {} if durability is None else {"durability": durability}
            results = await asyncio.gather(*(
                self.app.ainvoke({"i": i}, {"configurable": {"thread_id": f"t{i}"}}, **extra) for i in range(n)))
            check_outputs([r["out"] for r in results], n)

        async def close(self) -> None:
            global LANGGRAPH_SETTINGS
            try:
                values = []
                for pragma in ("journal_mode", "synchronous"):
                    async with self.saver.conn.execute(f"PRAGMA {pragma}") as cursor:
                        values.append(str((await cursor.fetchone())[0]).upper())
                level = {"0": "OFF", "1": "NORMAL", "2": "FULL"}.get(values[1], values[1])
                LANGGRAPH_SETTINGS = f"its connection: {values[0]}, synchronous={level}"
            except Exception:  # noqa: BLE001 - only a note
                pass
            await self._saver_context.__aexit__(None, None, None)

    return LangGraphSQLite


LANGGRAPH_SETTINGS = ""
LANGGRAPH = ("langgraph",)
LANGGRAPH_SQLITE = ("langgraph", "langgraph-checkpoint-sqlite", "aiosqlite")

CASES = [
    Case("floor", "bare asyncio floor (5 sleeps per task)", (), Floor, floor=True),
    Case("agentfsm-memory", "agentfsm in memory", ("agentfsm",), AgentfsmMemory, target=IN_MEMORY_TARGET,
         memory_target_kb=MEMORY_TARGET_KB),
    Case("agentfsm-sqlite", "agentfsm recorded, sqlite:///runs.db", ("agentfsm",), AgentfsmSQLite,
         target=RECORDED_TARGET, counts_commits=True),
    Case("agentfsm-memory-store", "agentfsm recorded, memory://", ("agentfsm",), AgentfsmMemoryStore,
         target=RECORDED_TARGET, counts_commits=True),
    Case("langgraph-memory", "LangGraph in memory", LANGGRAPH, LangGraphMemory),
    Case("langgraph-sqlite-sync", "LangGraph AsyncSqliteSaver, sync", LANGGRAPH_SQLITE, langgraph_sqlite("sync")),
    Case("langgraph-sqlite-async", "LangGraph AsyncSqliteSaver, default", LANGGRAPH_SQLITE, langgraph_sqlite(None)),
]


# -- counting write transactions and garbage collections ------------------------------------------


@dataclass
class Counts:
    transactions: int = 0
    writes: int = 0
    gc_seconds: float = 0.0
    full_collections: int = 0
    _gc_started: float = 0.0


COUNTS = Counts()


def count_commits() -> bool:
    """Wrap WriteBatch._commit to count transactions and writes; False if agentfsm has no such method."""
    try:
        from agentfsm.store.batch import WriteBatch
    except ImportError:
        return False
    commit = getattr(WriteBatch, "_commit", None)
    if commit is None or getattr(commit, "counted", False):
        return commit is not None

    async def counted(self: Any, batch: list[Any]) -> None:
        COUNTS.transactions += 1
        COUNTS.writes += len(batch)
        await commit(self, batch)

    counted.counted = True  # type: ignore[attr-defined]
    WriteBatch._commit = counted  # type: ignore[method-assign]  # noqa: SLF001 - counting, in this process only
    return True


def count_collections() -> None:
    """Time every garbage collection (gc.callbacks: two calls per collection)."""
    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            COUNTS._gc_started = time.perf_counter()  # noqa: SLF001
        else:
            COUNTS.gc_seconds += time.perf_counter() - COUNTS._gc_started  # noqa: SLF001
            COUNTS.full_collections += info["generation"] == 2

    gc.callbacks.append(callback)


# -- measuring, in a child process per case and repeat ----------------------------------------------


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def once(case: Case, root: Path, n: int) -> dict[str, float]:
    """One timed gather of n runs on a fresh directory: wall and cpu seconds, transactions, writes, GC."""
    directory = Path(tempfile.mkdtemp(prefix=case.key + "-", dir=root))
    setup = case.make(directory)

    async def go() -> dict[str, float]:
        await setup.prepare()
        try:
            gc.collect()  # before the clock: the garbage of the set-up is not the runs'
            before = Counts(COUNTS.transactions, COUNTS.writes, COUNTS.gc_seconds, COUNTS.full_collections)
            cpu, wall = time.process_time(), time.perf_counter()
            await setup.gather(n)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return {"wall": wall, "cpu": cpu, "transactions": COUNTS.transactions - before.transactions,
                    "writes": COUNTS.writes - before.writes, "gc": COUNTS.gc_seconds - before.gc_seconds,
                    "full_collections": COUNTS.full_collections - before.full_collections}
        finally:
            await setup.close()

    try:
        measured = asyncio.run(go())
        setup.check(n)
        return measured
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def time_child(key: str, n: int) -> dict[str, Any]:
    """In a fresh process: a warm-up gather of 50 runs, then the timed gather of n."""
    case = next(c for c in CASES if c.key == key)
    count_commits()
    count_collections()
    with tempfile.TemporaryDirectory(prefix="bench_concurrency-") as tmp:
        once(case, Path(tmp), WARMUP_RUNS)
        found: dict[str, Any] = dict(once(case, Path(tmp), n))
    found["settings"] = LANGGRAPH_SETTINGS if case.key.startswith("langgraph-sqlite") else ""
    return found


def _memory_status() -> dict[str, int]:
    """VmRSS and VmHWM (the resident set's high-water mark) of this process, in KiB (Linux)."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def memory_child(key: str, n: int) -> dict[str, Any]:
    """In a fresh process: warm up, then RSS and traced memory per run (see the module docstring)."""
    case = next(c for c in CASES if c.key == key)
    with tempfile.TemporaryDirectory(prefix="bench_concurrency-") as tmp:
        root = Path(tmp)
        once(case, root, WARMUP_RUNS)
        gc.collect()
        rss_kb: float | None = None
        try:
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
            before = _memory_status()["VmRSS"]
            once(case, root, n)
            rss_kb = max(_memory_status()["VmHWM"] - before, 0) / n
        except OSError:  # not Linux: no RSS figure
            once(case, root, n)

        directory = Path(tempfile.mkdtemp(dir=root))
        setup = case.make(directory)

        async def traced() -> float:
            await setup.prepare()
            try:
                gc.collect()
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                await setup.gather(n)
                return (tracemalloc.get_traced_memory()[1] - base) / n / 1024
            finally:
                await setup.close()

        tracemalloc.start()
        traced_kb = asyncio.run(traced())
        tracemalloc.stop()
    return {"rss_kb": rss_kb, "traced_kb": traced_kb}


def run_child(key: str, mode: str, n: int, verbose: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", key, "--mode", mode, "--runs", str(n)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if verbose:
            print(done.stderr, file=sys.stderr)
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit {done.returncode}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@dataclass
class Row:
    case: Case
    error: str | None = None
    repeats: list[dict[str, Any]] = field(default_factory=list)
    rss_kb: float | None = None
    traced_kb: float | None = None
    memory_error: str | None = None

    def median(self, key: str) -> float:
        return statistics.median(float(r[key]) for r in self.repeats)


def measure(cases: list[Case], args: argparse.Namespace) -> list[Row]:
    rows = [Row(case) for case in cases]
    for row in rows:
        missing = [d for d in row.case.distributions if version_of(d) is None]
        if missing:
            row.error = f"{NOT_INSTALLED} [{', '.join(missing)}]"
    for attempt in range(1, args.repeats + 1):
        for row in rows:  # round-robin: a change in the machine's load falls on every engine alike
            if row.error:
                continue
            try:
                row.repeats.append(run_child(row.case.key, "time", args.runs, args.verbose))
            except Exception as error:  # noqa: BLE001 - one engine failing must not hide the others
                row.error = f"failed: {error}"
                continue
            print(f"  {row.case.label}: repeat {attempt}: {row.repeats[-1]['wall'] * 1e3:,.0f} ms",
                  file=sys.stderr, flush=True)
    if not args.no_memory:
        for row in rows:
            if row.error:
                continue
            try:
                found = run_child(row.case.key, "memory", args.runs, args.verbose)
                row.rss_kb, row.traced_kb = found["rss_kb"], found["traced_kb"]
                print(f"  {row.case.label}: memory measured", file=sys.stderr, flush=True)
            except Exception as error:  # noqa: BLE001
                row.memory_error = str(error)
    return rows


# -- printing ---------------------------------------------------------------------------------------

TIME_ROW = "{:<38}{:>9}{:>16}{:>9}{:>9}{:>11}{:>13}   {}"
MEMORY_ROW = "{:<38}{:>12}{:>12}   {}"


def print_header(args: argparse.Namespace) -> None:
    names = ("agentfsm", "langgraph", "langgraph-checkpoint-sqlite", "aiosqlite")
    versions = ", ".join(f"{name} {version_of(name) or '-'}" for name in names)
    print(f"Python {platform.python_version()} on {platform.machine()}, SQLite {sqlite3.sqlite_version}; {versions}")
    print(f"{args.runs:,} runs at once, 5 states each awaiting {SLEEP * 1e3:g} ms; median of {args.repeats} "
          "repeats (range in brackets);\neach repeat a fresh process, warmed up with 50 runs, a fresh event loop "
          "and a fresh store\n", flush=True)


def print_times(rows: list[Row], n: int) -> None:
    floor = next((r.median("wall") for r in rows if r.case.floor and r.repeats), None)
    print(TIME_ROW.format("engine", "wall ms", "(range)", "vs floor", "cpu ms", "gc ms", "commits", "note"))
    print(TIME_ROW.format("", "", "", "", "per run", "(full gc)", "(writes/tx)", ""))
    for row in rows:
        if row.error:
            print(f"{row.case.label:<38}{row.error}")
            continue
        walls = [r["wall"] for r in row.repeats]
        wall = row.median("wall")
        spread = f"({min(walls) * 1e3:,.0f}-{max(walls) * 1e3:,.0f})"
        ratio = wall / floor if floor else None
        cpu = row.median("cpu") / n * 1e3
        collections = f"{row.median('gc') * 1e3:,.0f} ({row.median('full_collections'):.0f})"
        commits = "-"
        transactions = sum(r["transactions"] for r in row.repeats)
        if row.case.counts_commits and transactions:
            commits = f"{row.median('transactions'):,.0f} ({sum(r['writes'] for r in row.repeats) / transactions:.0f})"
        note = ""
        if row.case.target is not None and ratio is not None:
            note = f"target <= {row.case.target:g}x the floor  {'ok' if ratio <= row.case.target else 'MISSED'}"
        note = note or row.repeats[-1].get("settings", "")
        print(TIME_ROW.format(row.case.label, f"{wall * 1e3:,.0f}", spread, "-" if ratio is None else f"{ratio:.1f}x",
                              f"{cpu:.3f}", collections, commits, note))
    print("  cpu: the process's CPU time (all threads) during the gather, per run; gc: time in garbage collections")
    print("  during the gather (how many were full, generation 2); commits: write transactions per repeat and")
    print(f"  writes per transaction (a run makes {len(STATES) + 2}: create, 5 steps, end)")


def print_memory(rows: list[Row]) -> None:
    print("\nMemory per run, every run alive at once (a fresh process per engine, after a warm-up)")
    print(MEMORY_ROW.format("engine", "traced KB", "RSS KB", "note"))
    for row in rows:
        if row.error:
            continue
        if row.memory_error:
            print(f"{row.case.label:<38}failed: {row.memory_error}")
            continue
        if row.traced_kb is None:
            continue
        note = ""
        if row.case.memory_target_kb is not None:
            ok = row.traced_kb <= row.case.memory_target_kb
            note = f"target <= {row.case.memory_target_kb:g} KB (traced)  {'ok' if ok else 'MISSED'}"
        rss = "-" if row.rss_kb is None else f"{row.rss_kb:.1f}"
        print(MEMORY_ROW.format(row.case.label, f"{row.traced_kb:.1f}", rss, note))
    print("  traced: tracemalloc's peak during the gather minus what was traced before it, per run;")
    print("  RSS: the resident set's high-water mark (VmHWM, reset just before) minus the resident set before the")
    print("  gather, per run, without tracemalloc; KB = 1,024 bytes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs started at once (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per engine (default 3)")
    parser.add_argument("--only", default="", help="run only the rows whose label contains this text (any case); "
                                                   "the floor always runs")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an engine that fails")
    parser.add_argument("--child", metavar="CASE", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("time", "memory"), default="time", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child = time_child if args.mode == "time" else memory_child
        print(json.dumps(child(args.child, args.runs)))
        return
    print_header(args)
    cases = [c for c in CASES if c.floor or args.only.lower() in c.label.lower()]
    rows = measure(cases, args)
    print(file=sys.stderr)
    print_times(rows, args.runs)
    if not args.no_memory:
        print_memory(rows)


if __name__ == "__main__":
    main()
