"""Resume and history of a long run: what they cost after 100,000 steps, against a run of 10 (or 100) steps.

Run it by hand, from the repository root (no peers needed):

    python benchmarks/bench_resume.py [--steps 100000] [--runs 7] [--repeats 9] [--only resume|history]

What it measures
----------------
One SQLite store (in a fresh temporary folder) holds three runs of the same YAML machine: a
`set` state `count` that adds 1 to `n` and loops on itself (a guard) until `n` reaches the
input `limit`, then a `wait` state `approve` waiting for an event `go` that never comes. The
runs are made by the CLI itself, `agentfsm run long.yaml -i limit=L --quiet --store URL`, so
the store holds real step rows: one per step, the context's change as a patch, a full snapshot
now and then, a tally every 64 steps, as any recorded run. L is `--steps` (default 100,000),
130, 100 and 10; the time the long one took to record is printed. Each run ends `waiting` in
`approve`; they share one file, so the file's size is the same for both sides of every
comparison.

A resume of such a run reads where the run stands (its last step, its context rebuilt from
the newest snapshot and the patches after it, the visits and usage from the newest tally and
the steps after it), takes the lease, enters `approve` again, finds no event and hands the
run back `waiting` (exit code 3): it records no step, so the same run can be resumed again
and again. Target (issue 8): resume reads O(1) rows and its time does not grow with the
run's length.

Every command runs with this environment less PYTHONDONTWRITEBYTECODE (agentfsm's own modules
are compiled once, as an installed package's are, not at every start) and AGENTFSM_STORE.

1. Resume in a fresh process: `agentfsm resume RUN --store URL --quiet`, the long run (A) in
   turn with the 10-step run (B), `--runs` pairs (default 7) after one untimed pair: wall time
   around the process (`time.perf_counter`), its CPU time (user + system, `getrusage` of the
   children), and its peak resident set: the console script runs under a small wrapper
   (`runpy`) that writes the process's VmHWM (Linux) to stderr as it exits. Ratios A/B are
   taken pair by pair; the medians are printed.
2. Resume in process: a child process opens `agentfsm.Runs(URL)` once and awaits
   `runs.resume(RUN)` for the long run, a 130-step run and the 10-step run in turn,
   `--repeats` times each (default 9) after one untimed resume of each: the time of each
   resume (the machine is
   compiled from its stored source each time, as the CLI does), then once more under
   `tracemalloc` for the peak of traced memory during the resume (minus what was traced before
   it), and the number of step rows the store decoded during one resume (the SQLite backend's
   `step_from_row` is wrapped, in the child only, to count its calls), and the growth of the
   resident set during one resume (VmHWM, reset just before, minus VmRSS before). How many
   rows a resume reads depends on where the run stands between two snapshots (every 50
   changed steps here, each with a tally) and two tallies (every 64 steps): 100,000 falls on
   a snapshot, 130 is 30 steps after one and 2 after a tally, so the runs show the range.
3. History: `agentfsm history RUN --store URL` (the table) and with `--json`, of the long run
   against the 100-step run, output read through a pipe and dropped, `--runs` pairs: wall, CPU
   and peak resident set as in 1. Target (issue 8): `history` streams rows instead of holding
   them all, so its peak memory does not grow with the run's length.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LONG_YAML = """\
agentfsm: 1
name: long_run
description: Counts n up to limit, one step per count, then waits for an event `go` (bench_resume.py).
inputs:
  limit: {type: integer, default: 10, description: How many steps the count takes.}
context: {n: 0}
max_steps: 100000000
initial: count
states:
  count:
    type: set
    set: {n: "{{ n + 1 }}"}
    transitions:
      - {when: "n < limit", to: count}
      - {to: approve}
  approve:
    type: wait
    event: go
    transitions: [{event: go, to: done}]
  done:
    type: final
    output: "{{ n }}"
"""

RESUME_TARGET = 1.25
"""Resume of the long run at most this many times the 10-step run's: 'does not grow with the run's length'
(with room for noise)."""
HISTORY_TARGET = 1.25
"""Peak memory of `history` of the long run at most this many times the short run's: 'streams rows'."""
WAITING = 3  # the exit code of a command that leaves its run waiting

PEAK_WRAPPER = """\
import atexit, runpy, sys
def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                sys.__stderr__.write("bench_resume peak: " + line.split()[1] + "\\n")
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


CHILD_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "AGENTFSM_STORE")}
"""The commands' environment: agentfsm's own modules compiled once (not at every start, as PYTHONDONTWRITEBYTECODE
would have it in an editable install), and no AGENTFSM_STORE."""


def agentfsm_script() -> Path:
    script = Path(sys.executable).with_name("agentfsm")
    if not script.exists():
        raise SystemExit(f"no agentfsm console script next to {sys.executable}: pip install -e . in this environment")
    return script


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


@dataclass(frozen=True)
class Measured:
    wall: float
    cpu: float
    peak_kib: int | None
    output_bytes: int


def command_run(arguments: list[str], cwd: Path, *, ok: tuple[int, ...] = (0,)) -> Measured:
    """One run of `agentfsm ARGUMENTS` under the peak wrapper: wall and CPU seconds, peak RSS, bytes printed."""
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(agentfsm_script()), *arguments], cwd=cwd,
                          env=CHILD_ENV, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu
    if done.returncode not in ok:
        raise RuntimeError(f"agentfsm {' '.join(arguments)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    peaks = [line.split()[-1] for line in done.stderr.decode().splitlines() if line.startswith("bench_resume peak:")]
    return Measured(wall, cpu, int(peaks[-1]) if peaks else None, len(done.stdout))


# -- building the runs ---------------------------------------------------------------------------------


@dataclass
class Store:
    folder: Path
    url: str
    machine: Path
    runs: dict[int, str] = field(default_factory=dict)  # steps -> run id


def build(folder: Path, lengths: list[int]) -> Store:
    machine = folder / "long.yaml"
    machine.write_text(LONG_YAML, encoding="utf-8")
    store = Store(folder, f"sqlite:///{folder / 'runs.db'}", machine)
    for steps in lengths:
        started = time.perf_counter()
        done = subprocess.run([str(agentfsm_script()), "run", str(machine), "-i", f"limit={steps}", "--quiet",
                               "--json", "--store", store.url], cwd=folder, env=CHILD_ENV, capture_output=True,
                              text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != WAITING:
            raise RuntimeError(f"building the {steps}-step run: exit {done.returncode}: {done.stderr[-500:]}")
        result = json.loads(done.stdout)
        if result["steps"] != steps or result["status"] != "waiting":
            raise RuntimeError(f"the {steps}-step run took {result['steps']} steps and is {result['status']}")
        store.runs[steps] = result["run_id"]
        if steps >= 10_000:
            print(f"Built a recorded run of {steps:,} steps in {elapsed:.1f} s ({elapsed / steps * 1e6:.0f} µs a "
                  f"step, the process's start-up included); store {os.path.getsize(folder / 'runs.db') / 1e6:.1f} MB",
                  flush=True)
    return store


# -- 1 and 3: a command in a fresh process, paired ------------------------------------------------------


def paired(make_a: Callable[[], Measured], make_b: Callable[[], Measured], runs: int
           ) -> tuple[list[Measured], list[Measured]]:
    make_a()
    make_b()
    a: list[Measured] = []
    b: list[Measured] = []
    for _ in range(runs):
        a.append(make_a())
        b.append(make_b())
    return a, b


def med(values: list[Measured], key: Callable[[Measured], float]) -> float:
    return statistics.median(key(m) for m in values)


def ratio(a: list[Measured], b: list[Measured], key: Callable[[Measured], float]) -> float:
    return statistics.median(key(x) / key(y) for x, y in zip(a, b, strict=True))


ROW = "{:<44}{:>10}{:>9}{:>11}   {}"
INPROC_ROW = "{:<44}{:>8}{:>14}{:>11}{:>12}{:>16}   {}"


def print_pair(label_a: str, label_b: str, a: list[Measured], b: list[Measured], target: float, on: str) -> None:
    print(ROW.format("", "wall ms", "cpu ms", "peak MiB", ""))
    for label, values in ((label_a, a), (label_b, b)):
        peak = "-" if values[0].peak_kib is None else f"{med(values, lambda m: m.peak_kib or 0) / 1024:.1f}"
        print(ROW.format(label, f"{med(values, lambda m: m.wall) * 1e3:.0f}", f"{med(values, lambda m: m.cpu) * 1e3:.0f}",
                         peak, ""))
    wall, cpu = ratio(a, b, lambda m: m.wall), ratio(a, b, lambda m: m.cpu)
    peak_ratio = ratio(a, b, lambda m: m.peak_kib or 1) if a[0].peak_kib else None
    judged = wall if on == "wall" else (peak_ratio or 0.0)
    note = f"target: {on} <= {target:g}x  {'ok' if judged <= target else 'MISSED'}"
    print(ROW.format("ratio (pair by pair)", f"{wall:.2f}x", f"{cpu:.2f}x",
                     "-" if peak_ratio is None else f"{peak_ratio:.2f}x", note))


def resume_fresh(store: Store, long: int, runs: int) -> None:
    def resume(steps: int) -> Callable[[], Measured]:
        arguments = ["resume", store.runs[steps], "--store", store.url, "--quiet"]
        return lambda: command_run(arguments, store.folder, ok=(WAITING,))

    a, b = paired(resume(long), resume(10), runs)
    print(f"Resume in a fresh process: `agentfsm resume RUN --quiet`, medians of {runs} pairs")
    print_pair(f"run of {long:,} steps", "run of 10 steps", a, b, RESUME_TARGET, "wall")
    print()


def history(store: Store, long: int, runs: int) -> None:
    for extra in ([], ["--json"]):
        def show(steps: int, extra: list[str] = extra) -> Callable[[], Measured]:
            return lambda: command_run(["history", store.runs[steps], "--store", store.url, *extra], store.folder)

        a, b = paired(show(long), show(100), runs)
        command = " ".join(["agentfsm history RUN", *extra])
        print(f"History: `{command}`, output through a pipe ({a[0].output_bytes / 1e6:.1f} MB and "
              f"{b[0].output_bytes / 1e3:.1f} kB), medians of {runs} pairs")
        print_pair(f"run of {long:,} steps", "run of 100 steps", a, b, HISTORY_TARGET, "peak")
        print()


# -- 2: resume in process ------------------------------------------------------------------------------

ROWS_READ = [0]


def count_rows() -> bool:
    try:
        from agentfsm.store import sqlite
    except ImportError:
        return False
    decode = getattr(sqlite, "step_from_row", None)
    if decode is None:
        return False

    def counted(row: Any) -> Any:
        ROWS_READ[0] += 1
        return decode(row)

    sqlite.step_from_row = counted  # counting, in this child process only
    return True


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def in_process_child(url: str, long_id: str, middle_id: str, short_id: str, repeats: int) -> dict[str, Any]:
    import agentfsm

    counting = count_rows()

    async def main() -> dict[str, Any]:
        found: dict[str, Any] = {"counting": counting}
        async with agentfsm.Runs(url) as runs:
            async def resume(run_id: str) -> float:
                started = time.perf_counter()
                result = await runs.resume(run_id)
                elapsed = time.perf_counter() - started
                if result.status != "waiting":
                    raise RuntimeError(f"resume of {run_id} ended {result.status}, expected waiting")
                return elapsed

            named = (("long", long_id), ("middle", middle_id), ("short", short_id))
            for _, run_id in named:  # warm-up: imports, compiling, the page cache
                await resume(run_id)
            times: dict[str, list[float]] = {run_id: [] for _, run_id in named}
            for _ in range(repeats):
                for _, run_id in named:
                    gc.collect()
                    times[run_id].append(await resume(run_id))
            for name, run_id in named:
                found[name] = {"ms": statistics.median(times[run_id]) * 1e3,
                               "ms_range": [min(times[run_id]) * 1e3, max(times[run_id]) * 1e3]}
            found["ratio"] = statistics.median(x / y for x, y in zip(times[long_id], times[short_id], strict=True))
            for name, run_id in named:
                gc.collect()
                try:
                    Path("/proc/self/clear_refs").write_text("5")
                    before = _status_kib("VmRSS")
                    ROWS_READ[0] = 0
                    await resume(run_id)
                    found[name]["rss_growth_kib"] = max(_status_kib("VmHWM") - before, 0)
                except OSError:
                    ROWS_READ[0] = 0
                    await resume(run_id)
                    found[name]["rss_growth_kib"] = None
                found[name]["rows"] = ROWS_READ[0]
                gc.collect()
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                await resume(run_id)
                found[name]["traced_kib"] = (tracemalloc.get_traced_memory()[1] - base) / 1024
                tracemalloc.stop()
        return found

    return asyncio.run(main())


def resume_in_process(store: Store, long: int, repeats: int) -> None:
    command = [sys.executable, __file__, "--child", store.url, store.runs[long], store.runs[130], store.runs[10],
               str(repeats)]
    done = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the in-process child failed: {done.stderr[-800:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"Resume in process: `await runs.resume(RUN)` on one open `agentfsm.Runs`, medians of {repeats} resumes "
          "of each, in turn")
    print(INPROC_ROW.format("", "ms", "(range)", "rows read", "traced MiB", "RSS growth MiB", ""))
    for label, name in ((f"run of {long:,} steps", "long"), ("run of 130 steps", "middle"), ("run of 10 steps", "short")):
        row = found[name]
        rows = str(row["rows"]) if found["counting"] else "-"
        growth = "-" if row["rss_growth_kib"] is None else f"{row['rss_growth_kib'] / 1024:.1f}"
        low, high = row["ms_range"]
        print(INPROC_ROW.format(label, f"{row['ms']:.1f}", f"({low:.1f}-{high:.1f})", rows,
                                f"{row['traced_kib'] / 1024:.2f}", growth, ""))
    ok = found["ratio"] <= RESUME_TARGET
    print(INPROC_ROW.format(f"ratio {long:,} / 10 (resume by resume)", f"{found['ratio']:.2f}x", "", "", "", "",
                            f"target: time <= {RESUME_TARGET:g}x, rows O(1)  {'ok' if ok else 'MISSED'}"))
    print("  rows read: step rows the store decoded during one resume; traced: tracemalloc's peak during one resume")
    print("  minus what was traced before it; RSS growth: the resident set's high-water mark during one resume")
    print("  minus the resident set before it\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the long run (default 100000)")
    parser.add_argument("--runs", type=int, default=7, help="pairs of fresh processes per comparison (default 7)")
    parser.add_argument("--repeats", type=int, default=9, help="resumes of each run in process (default 9)")
    parser.add_argument("--only", choices=("resume", "history"), help="one part only")
    parser.add_argument("--child", nargs=5, metavar=("URL", "LONG", "MIDDLE", "SHORT", "REPEATS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, long_id, middle_id, short_id, repeats = args.child
        print(json.dumps(in_process_child(url, long_id, middle_id, short_id, int(repeats))))
        return
    print(f"Python {platform.python_version()} on {platform.machine()}; {agentfsm_script()}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_resume-") as tmp:
        store = build(Path(tmp), [args.steps, 130, 100, 10])
        print(flush=True)
        if args.only in (None, "resume"):
            resume_fresh(store, args.steps, args.runs)
            resume_in_process(store, args.steps, args.repeats)
        if args.only in (None, "history"):
            history(store, args.steps, args.runs)


if __name__ == "__main__":
    main()
