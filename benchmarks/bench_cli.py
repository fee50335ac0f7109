"""The command line as a user feels it: cold starts, what the progress display costs a step, and what to defer.

Run it by hand, from the repository root (no peers needed):

    python benchmarks/bench_cli.py [--runs 11] [--steps 4000] [--repeats 5] [--only cold|progress|imports]

What it measures
----------------
Every command is the `agentfsm` console script next to this interpreter (else
`python -m agentfsm`), started as a fresh process with `subprocess.run`, its stdin empty, its
environment this one's without PYTHONDONTWRITEBYTECODE (so agentfsm's own modules, in an
editable install, are compiled once in an untimed first run, as `pip install` compiles an
installed package's, rather than at every start) and without AGENTFSM_STORE.

1. Cold start. Three commands, timed by wall clock from start to exit (`time.perf_counter`
   around `subprocess.run`), their output read through pipes and dropped:
     (a) `agentfsm validate machines/hello.yaml`
     (b) `agentfsm run machines/hello.yaml` in a fresh folder: each run gets a new empty
         temporary folder as its working directory (the machine file given by its absolute
         path), so the run creates `.agentfsm/runs.db` there, as a first run does
     (c) the yardstick, `python -c "import asyncio, sqlite3, json"`: this interpreter
         importing what any asyncio + SQLite + JSON program imports
   (a) and (b) each run in turn with (c), A B A B ..., `--runs` pairs (default 11) after one
   untimed pair (which also writes .pyc files); the ratio is taken pair by pair and the median
   ratio printed with the median times, so a drift in the machine's speed during the
   measurement does not move the ratio. The CPU time (user + system) of each process is
   printed and compared the same way: on a machine shared with other work it is the steadier
   figure. Targets (issue 8): (a) at most 3x (c), (b) at most 4x, read on the wall time.

2. What the progress display costs a step. `agentfsm run benchmarks/loop.yaml -i limit=L`
   (a `set` and a `choice` step per increment, 2L steps, each committed to a fresh SQLite store
   named with --store in a fresh temporary folder, under `--store-dir` if given) in three ways:
     quiet      `--quiet`, output to pipes
     pipe       progress on stderr, a pipe (what CI logs and `2>&1 | tee` see: one plain line
                per step, no live line)
     terminal   progress on stderr, a pseudo-terminal of 120 x 40 (`os.openpty`; a thread
                reads everything written to it, as a terminal does): one line per step, and
                the live line with its spinner below them (as in a pipe, past 25 lines in
                50 ms a fast loop's further lines wait for the end of the 50 ms, written together)
   The start-up of the process is taken out by running each way at two lengths, 100 steps
   and `--steps` (default 4,000): a step costs (time of the long run - time of the short
   one) / (the difference in steps). Each way and length runs `--repeats` times (default 5),
   the ways and lengths interleaved, and the medians are used. The progress display's cost
   is (pipe or terminal step - quiet step) / quiet step, in wall time and in the agentfsm
   process's CPU time (user + system, from `getrusage(RUSAGE_CHILDREN)` around each run). Target
   (issue 8): at most 20%, read on the wall time. The wall time of a step includes the disk's
   fsyncs (the WAL's checkpoints) and, on a busy machine, waiting for a core: the CPU time
   shows what the progress display itself costs.

3. What to defer. `python -X importtime` of (a) and (b) (the console script run as a file,
   three times each; the median of each module's figures): the wall time and how much of it
   is imports; the third-party packages that cost the most (the sum of their modules' own
   import times) and the first agentfsm module that imports each (the chain from it); and the
   agentfsm modules whose imports (their own and everything below them) cost the most. A chain
   marked `(top level)` starts with a module imported from a function while the command ran
   (not by another module's import). The figures of -X importtime are inflated by its own
   bookkeeping; they rank, they do not add up to the cold start. A module's own time includes
   any garbage collection that ran during its import, so the command is run once more under
   `gc.callbacks` to print how many collections it made and how long they took.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HELLO = REPO / "machines" / "hello.yaml"
LOOP = HERE / "loop.yaml"
YARDSTICK = [sys.executable, "-c", "import asyncio, sqlite3, json"]
VALIDATE_TARGET = 3.0
RUN_TARGET = 4.0
PROGRESS_TARGET = 0.20
SHORT_STEPS = 100


NO_BYTECODE = "PYTHONDONTWRITEBYTECODE"
CHILD_ENV = {k: v for k, v in os.environ.items() if k not in (NO_BYTECODE, "AGENTFSM_STORE")}
"""Every command's environment: without PYTHONDONTWRITEBYTECODE, so agentfsm's own modules (an editable install)
are compiled once, in the untimed first run, as `pip install` compiles an installed package's, and not at each start;
without AGENTFSM_STORE, so the commands use the stores this script names."""


def agentfsm_command() -> list[str]:
    """The `agentfsm` console script next to this interpreter, else `python -m agentfsm`."""
    script = Path(sys.executable).with_name("agentfsm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentfsm"]


def children_cpu() -> float:
    """User + system seconds of every child process reaped so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None, stderr: int | None = None
          ) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `command`, its output read through pipes (stderr: another file
    descriptor); a failing command stops the script."""
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=CHILD_ENV if env is None else env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE if stderr is None else stderr, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {(done.stderr or b'').decode()[-500:]}")
    return elapsed, children_cpu() - cpu


# -- 1. cold start -----------------------------------------------------------------------------------


@dataclass
class Paired:
    label: str
    a: list[tuple[float, float]] = field(default_factory=list)  # (wall, cpu) of each run
    b: list[tuple[float, float]] = field(default_factory=list)

    def median(self, side: str, which: int) -> float:
        return statistics.median(run[which] for run in getattr(self, side))

    def ratio(self, which: int) -> float:
        """The median of the pair-by-pair ratios A/B (which: 0 wall, 1 cpu)."""
        return statistics.median(x[which] / y[which] for x, y in zip(self.a, self.b, strict=True))


def paired(label: str, run_a: Callable[[], tuple[float, float]], run_b: Callable[[], tuple[float, float]],
           runs: int) -> Paired:
    """A B A B ...: `runs` timed pairs after one untimed pair."""
    result = Paired(label)
    run_a()
    run_b()
    for _ in range(runs):
        result.a.append(run_a())
        result.b.append(run_b())
    return result


def cold_starts(runs: int) -> None:
    agentfsm = agentfsm_command()

    def yardstick() -> tuple[float, float]:
        return timed(YARDSTICK, REPO)

    def validate() -> tuple[float, float]:
        return timed([*agentfsm, "validate", str(HELLO)], REPO)

    def run_fresh() -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="bench_cli-") as folder:
            return timed([*agentfsm, "run", str(HELLO)], Path(folder))

    rows = [
        (paired("agentfsm validate machines/hello.yaml", validate, yardstick, runs), VALIDATE_TARGET),
        (paired("agentfsm run machines/hello.yaml (fresh folder)", run_fresh, yardstick, runs), RUN_TARGET),
    ]
    print(f"Cold start: medians of {runs} pairs, each command run in turn with the yardstick "
          '`python -c "import asyncio, sqlite3, json"`;\nratios taken pair by pair; cpu = user + system of the process')
    print(ROW.format("command", "wall ms", "cpu ms", "yardstick", "wall", "cpu", "note"))
    print(ROW.format("", "", "", "wall/cpu ms", "ratio", "ratio", ""))
    for row, target in rows:
        wall, cpu = row.ratio(0), row.ratio(1)
        note = f"target <= {target:g}x (wall)  {'ok' if wall <= target else 'MISSED'}"
        spread = f"({min(r[0] for r in row.a) * 1e3:.0f}-{max(r[0] for r in row.a) * 1e3:.0f})"
        print(ROW.format(row.label, f"{row.median('a', 0) * 1e3:.0f} {spread}", f"{row.median('a', 1) * 1e3:.0f}",
                         f"{row.median('b', 0) * 1e3:.0f}/{row.median('b', 1) * 1e3:.0f}", f"{wall:.1f}x",
                         f"{cpu:.1f}x", note))
    print()


ROW = "{:<48}{:>16}{:>8}{:>13}{:>7}{:>7}   {}"


# -- 2. progress ---------------------------------------------------------------------------------------


class Terminal:
    """A pseudo-terminal of 120 x 40 whose output a thread reads and drops, as a terminal would show it."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.bytes = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the slave side closed
                return
            if not chunk:
                return
            self.bytes += len(chunk)

    def close(self) -> None:
        os.close(self.slave)
        self._reader.join(timeout=5)
        os.close(self.master)


def loop_run(way: str, steps: int, terminal: Terminal, store_dir: str | None) -> tuple[float, float]:
    """Wall and CPU seconds of `agentfsm run benchmarks/loop.yaml` taking `steps` steps, in a fresh folder and store."""
    with tempfile.TemporaryDirectory(prefix="bench_cli-", dir=store_dir) as folder:
        command = [*agentfsm_command(), "run", str(LOOP), "-i", f"limit={steps // 2}",
                   "--store", f"sqlite:///{Path(folder) / 'runs.db'}"]
        if way == "quiet":
            command.append("--quiet")
        env = {k: v for k, v in CHILD_ENV.items() if k not in ("NO_COLOR", "COLUMNS")}
        return timed(command, Path(folder), env, stderr=terminal.slave if way == "terminal" else None)


def progress(steps: int, repeats: int, store_dir: str | None) -> None:
    ways = ("quiet", "pipe", "terminal")
    labels = {"quiet": "--quiet (pipes)", "pipe": "progress to a pipe", "terminal": "progress to a terminal (pty)"}
    lengths = (SHORT_STEPS, steps)
    times: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    terminal = Terminal()
    try:
        for way in ways:  # one untimed run each (.pyc files, the disk's caches)
            loop_run(way, SHORT_STEPS, terminal, store_dir)
        for _ in range(repeats):
            for length in lengths:
                for way in ways:
                    times[way, length].append(loop_run(way, length, terminal, store_dir))
    finally:
        terminal.close()

    def median(way: str, length: int, which: int) -> float:
        return statistics.median(run[which] for run in times[way, length])

    def per_step(way: str, which: int) -> float:
        return (median(way, steps, which) - median(way, SHORT_STEPS, which)) / (steps - SHORT_STEPS)

    print(f"Progress display: `agentfsm run benchmarks/loop.yaml`, a step = (run of {steps:,} steps - run of "
          f"{SHORT_STEPS} steps) / {steps - SHORT_STEPS:,};\nmedians of {repeats} runs; cpu = user + system "
          f"of the agentfsm process; stores in {store_dir or tempfile.gettempdir()}")
    print(PROGRESS_ROW.format("way", f"{SHORT_STEPS} steps", f"{steps:,} steps", "µs/step", "progress", "µs/step",
                              "progress", "note"))
    print(PROGRESS_ROW.format("", "wall ms", "wall ms", "wall", "adds", "cpu", "adds", ""))
    quiet = (per_step("quiet", 0), per_step("quiet", 1))
    for way in ways:
        wall, cpu = per_step(way, 0), per_step(way, 1)
        adds_wall, adds_cpu = (wall - quiet[0]) / quiet[0], (cpu - quiet[1]) / quiet[1]
        note = "" if way == "quiet" else (
            f"target <= {PROGRESS_TARGET:.0%} (wall)  {'ok' if adds_wall <= PROGRESS_TARGET else 'MISSED'}")
        print(PROGRESS_ROW.format(
            labels[way], f"{median(way, SHORT_STEPS, 0) * 1e3:.0f}", f"{median(way, steps, 0) * 1e3:.0f}",
            f"{wall * 1e6:.1f}", "-" if way == "quiet" else f"{adds_wall:+.0%}", f"{cpu * 1e6:.1f}",
            "-" if way == "quiet" else f"{adds_cpu:+.0%}", note))
    print(f"  the terminal received {terminal.bytes / 1e6:.1f} MB in all\n")


PROGRESS_ROW = "{:<30}{:>11}{:>13}{:>9}{:>10}{:>9}{:>10}   {}"


# -- 3. imports -------------------------------------------------------------------------------------


@dataclass
class Module:
    name: str
    own_us: float
    cumulative_us: float
    depth: int
    parent: int | None = None  # index of the module whose import imported this one
    started: int = 0  # the index of the first module of its subtree: its import started before theirs


def parse_importtime(text: str) -> list[Module]:
    """The modules of a `-X importtime` report, in the order they finished, each with its importer.

    A line reads `import time: OWN | CUMULATIVE | NAME`, NAME indented two spaces a level; a module is
    reported after the modules it imported, which are one level deeper.
    """
    modules: list[Module] = []
    waiting: dict[int, list[int]] = defaultdict(list)  # modules of a depth whose importer is not reported yet
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        index = len(modules)
        modules.append(Module(name.strip(), float(own), float(cumulative), depth, started=index))
        for child in waiting.pop(depth + 1, []):
            modules[child].parent = index
            modules[index].started = min(modules[index].started, modules[child].started)
        waiting[depth].append(index)
    return modules


def chain(modules: list[Module], index: int) -> list[str]:
    names = []
    current: int | None = index
    while current is not None:
        names.append(modules[current].name)
        current = modules[current].parent
    return names


def importtime(command: list[str], cwd: Path, runs: int = 3) -> tuple[list[Module], float]:
    """The modules a command imports, each with the median of its figures over `runs` runs; the median wall ms."""
    reports: list[list[Module]] = []
    walls: list[float] = []
    subprocess.run([sys.executable, *command], cwd=cwd, env=CHILD_ENV, capture_output=True, check=False)  # .pyc
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-X", "importtime", *command], cwd=cwd, env=CHILD_ENV,
                              capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - started)
        reports.append(parse_importtime(done.stderr))
    first = reports[0]
    by_name = [{m.name: m for m in report} for report in reports]
    for module in first:
        found = [r[module.name] for r in by_name if module.name in r]
        module.own_us = statistics.median(m.own_us for m in found)
        module.cumulative_us = statistics.median(m.cumulative_us for m in found)
    return first, statistics.median(walls) * 1e3


def root_of(name: str) -> str:
    return name.split(".", 1)[0]


GC_WRAPPER = """\
import atexit, gc, runpy, sys, time
seen = {"collections": 0, "full": 0, "seconds": 0.0, "started": 0.0}
def watch(phase, info):
    if phase == "start":
        seen["started"] = time.perf_counter()
    else:
        seen["collections"] += 1
        seen["full"] += info["generation"] == 2
        seen["seconds"] += time.perf_counter() - seen["started"]
gc.callbacks.append(watch)
atexit.register(lambda: sys.__stderr__.write("bench_cli gc: %(collections)d %(full)d %(seconds).6f\\n" % seen))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def garbage_collections(command: list[str], cwd: Path) -> str:
    """How many garbage collections a command's process made, and the time they took (gc.callbacks)."""
    if command[0] == "-m":
        return "not measured (no console script)"
    done = subprocess.run([sys.executable, "-c", GC_WRAPPER, *command], cwd=cwd, env=CHILD_ENV, capture_output=True,
                          text=True, check=False)
    found = [line.split()[2:] for line in done.stderr.splitlines() if line.startswith("bench_cli gc:")]
    if not found:
        return "not measured"
    collections, full, seconds = found[-1]
    return f"{collections} collections ({full} full) took {float(seconds) * 1e3:.0f} ms"


def print_imports(label: str, command: list[str], cwd: Path, top: int) -> None:
    modules, wall_ms = importtime(command, cwd)
    total_ms = sum(m.cumulative_us for m in modules if m.parent is None) / 1e3
    print(f"python -X importtime {label}: {wall_ms:.0f} ms wall (under importtime), "
          f"{total_ms:.0f} ms of it importing {len(modules)} modules")
    print(f"  garbage collection in the command's process (run once more, without importtime): "
          f"{garbage_collections(command, cwd)}")
    # third-party packages by the sum of their modules' own time, with the agentfsm module that first pulled them in
    own_by_root: dict[str, float] = defaultdict(float)
    first_of_root: dict[str, int] = {}
    for index, module in enumerate(modules):
        root = root_of(module.name)
        own_by_root[root] += module.own_us
        known = first_of_root.get(root)
        # the package's first import: the one that started first (an importer starts before what it imports)
        if known is None or (module.started, module.depth) < (modules[known].started, modules[known].depth):
            first_of_root[root] = index
    print(f"  packages by their modules' own import time (top {top}), and the chain that imports them first")
    print("  (up to the first agentfsm module; `(top level)`: imported from a function as the command ran):")
    for root, own in sorted(own_by_root.items(), key=lambda item: -item[1])[:top]:
        if root == "agentfsm":
            continue
        path = chain(modules, first_of_root[root])
        ours = [name for name in path if root_of(name) == "agentfsm"]
        # up to the first agentfsm module; else the whole chain, whose head was imported outside any module's
        # import (from a function, while the command ran) or by the interpreter's start-up (site)
        via = " <- ".join(path[: path.index(ours[0]) + 1] if ours else path)
        if not ours:
            via += "  (top level)"
        print(f"    {own / 1e3:7.1f} ms  {root:<22} {via}")
    print(f"  agentfsm modules by cumulative import time (top {top}; each includes what it imports):")
    ours = [m for m in modules if root_of(m.name) == "agentfsm"]
    for module in sorted(ours, key=lambda m: -m.cumulative_us)[:top]:
        print(f"    {module.cumulative_us / 1e3:7.1f} ms  {module.name}  (own {module.own_us / 1e3:.1f} ms)")
    print()


def imports(top: int) -> None:
    agentfsm = agentfsm_command()
    script = agentfsm if len(agentfsm) == 1 else ["-m", "agentfsm"]
    print_imports("agentfsm validate machines/hello.yaml", [*script, "validate", str(HELLO)], REPO, top)
    with tempfile.TemporaryDirectory(prefix="bench_cli-") as folder:
        print_imports("agentfsm run machines/hello.yaml", [*script, "run", str(HELLO)], Path(folder), top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="timed pairs per cold start (default 11)")
    parser.add_argument("--steps", type=int, default=4000, help="steps of the long progress run (default 4000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per way and length for progress (default 5)")
    parser.add_argument("--top", type=int, default=12, help="rows per import table (default 12)")
    parser.add_argument("--store-dir", metavar="DIR", help="where the progress runs' stores go (default: the system's "
                        "temporary folder; /dev/shm takes the disk's fsyncs out of the figures)")
    parser.add_argument("--only", choices=("cold", "progress", "imports"), help="one part only")
    args = parser.parse_args(argv)
    if args.steps <= SHORT_STEPS or args.steps % 2:
        parser.error(f"--steps must be an even number above {SHORT_STEPS}")
    print(f"Python {platform.python_version()} on {platform.machine()}; {' '.join(agentfsm_command())}", flush=True)
    if NO_BYTECODE in os.environ:
        print(f"({NO_BYTECODE} is set here; the commands run without it, so agentfsm's modules are compiled once, "
              "in the untimed first run, not at each start)", flush=True)
    print(flush=True)
    if args.only in (None, "cold"):
        cold_starts(args.runs)
    if args.only in (None, "progress"):
        progress(args.steps, args.repeats, args.store_dir)
    if args.only in (None, "imports"):
        imports(args.top)


if __name__ == "__main__":
    main()
