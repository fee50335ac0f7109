"""agentfsm on PostgreSQL: a recorded step beside LangGraph's PostgresSaver, queue throughput, claim latency.

Run by hand from the repository root, with the peers installed (it starts its own PostgreSQL server,
fsync on, on 127.0.0.1):

    /root/bench-venv/bin/pip install langgraph-checkpoint-postgres 'psycopg[binary]'
    PYTHONPATH=. /root/bench-venv/bin/python benchmarks/bench_postgres.py [--steps 1000] [--runs 2000]

1. A recorded step (small context {n, limit}): the loop of bench_store.py (`inc` adds 1 to `n`, `check`
   goes back to `inc` while n < limit), `--steps` steps, each recorded before the next step runs:
   agentfsm `Runs(postgresql://...).start(machine)` and LangGraph's StateGraph compiled with
   `PostgresSaver` and invoked with durability="sync" (each checkpoint written before the next step; also its
   default "async"), on the same server, same run; each engine's loop also runs without a store, and the
   store's share of a step is (durable - bare) / steps. Median of --repeats runs after a warm-up; each run
   gets a fresh schema/thread.
2. Throughput: --runs queued runs of a 5-state machine (set, set, set, choice, final), submitted first;
   then 1, 2 and 4 `agentfsm worker --concurrency 16` processes are started and timed until every run
   has succeeded: runs per second, and the ratio from 1 to 4 workers.
3. Claim latency: an idle worker (started, registered, nothing to do); a run is submitted; the latency is
   the first step's start (recorded by the worker) minus the moment `submit` was called. With LISTEN/NOTIFY
   (the default on PostgreSQL) and with polling only (`--interval 1`, wake-ups off), --samples each.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postgres import Cluster, find_bin_dir  # noqa: E402

LOOP_YAML = """\
agentfsm: 1
name: pg_loop
inputs: {limit: {type: integer}}
context: {n: 0}
max_steps: 1000000
initial: inc
states:
  inc: {type: set, set: {n: "{{ n + 1 }}"}, next: check}
  check:
    type: choice
    transitions: [{when: "n < limit", to: inc}, {to: done}]
  done: {type: final, output: "{{ n }}"}
"""

FIVE_YAML = """\
agentfsm: 1
name: five
inputs: {n: {type: integer, default: 0}}
context: {a: 0}
initial: one
states:
  one: {type: set, set: {a: "{{ a + 1 }}"}, next: two}
  two: {type: set, set: {a: "{{ a + 1 }}"}, next: three}
  three: {type: set, set: {a: "{{ a + 1 }}"}, next: check}
  check:
    type: choice
    transitions: [{when: "a >= 3", to: done}, {to: one}]
  done: {type: final, output: "{{ a }}"}
"""


class LoopState(TypedDict):
    n: int
    limit: int


# -- 1. a recorded step ------------------------------------------------------------------------------------


def agentfsm_loop(url: str, steps: int, work: Path, repeats: int) -> tuple[float, float]:
    """(durable, bare) nanoseconds per step, medians."""
    from agentfsm import Runs
    from agentfsm.service.machines import load_machine

    path = work / "loop.yaml"
    path.write_text(LOOP_YAML)
    machine = load_machine(path)
    limit = steps // 2
    loop = asyncio.new_event_loop()
    durable, bare = [], []
    runs = Runs(url)
    try:
        for attempt in range(repeats + 1):
            began = time.perf_counter_ns()
            result = loop.run_until_complete(runs.start(machine, {"limit": limit}))
            elapsed = time.perf_counter_ns() - began
            assert result.status == "succeeded", result
            if attempt:
                durable.append(elapsed / result.steps)
            began = time.perf_counter_ns()
            plain = loop.run_until_complete(machine.run({"limit": limit}))
            elapsed = time.perf_counter_ns() - began
            if attempt:
                bare.append(elapsed / plain.steps)
    finally:
        loop.run_until_complete(runs.close())
        loop.close()
    return statistics.median(durable), statistics.median(bare)


def langgraph_loop(conninfo: str, steps: int, repeats: int, durability: str) -> tuple[float, float]:
    from langgraph.checkpoint.postgres import PostgresSaver
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
    limit = steps // 2
    config: dict[str, Any] = {"recursion_limit": 2 * limit + 10}
    bare_app = graph.compile()
    durable, bare = [], []
    with PostgresSaver.from_conn_string(conninfo) as saver:
        saver.setup()
        app = graph.compile(checkpointer=saver)
        for attempt in range(repeats + 1):
            thread = {**config, "configurable": {"thread_id": f"bench-{durability}-{attempt}"}}
            began = time.perf_counter_ns()
            out = app.invoke(LoopState(n=0, limit=limit), thread, durability=durability)
            elapsed = time.perf_counter_ns() - began
            assert out["n"] == limit
            if attempt:
                durable.append(elapsed / (2 * limit))
            began = time.perf_counter_ns()
            bare_app.invoke(LoopState(n=0, limit=limit), config)
            if attempt:
                bare.append((time.perf_counter_ns() - began) / (2 * limit))
    return statistics.median(durable), statistics.median(bare)


# -- 2. throughput ---------------------------------------------------------------------------------------------


async def submit_many(url: str, machine_path: Path, count: int) -> list[str]:
    from agentfsm import Runs
    from agentfsm.service.machines import load_machine

    machine = load_machine(machine_path)
    async with Runs(url) as runs:
        return [(await runs.submit(machine, {"n": n})).id for n in range(count)]


async def succeeded(url: str) -> int:
    from agentfsm.store import open_store

    store = open_store(url)
    try:
        async with store.backend.reading() as tx:
            cursor = await tx.db.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            return int((await cursor.fetchone())[0])
    finally:
        await store.close()


def throughput(cluster: Cluster, runs: int, workers: int, work: Path) -> float:
    url = cluster.fresh_url()
    machine = work / "five.yaml"
    machine.write_text(FIVE_YAML)
    asyncio.run(submit_many(url, machine, runs))
    env = {**os.environ, "AGENTFSM_STORE": url}
    began = time.monotonic()
    processes = [subprocess.Popen([sys.executable, "-m", "agentfsm", "worker", "--concurrency", "16", "-q"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers)]
    try:
        while asyncio.run(succeeded(url)) < runs:
            time.sleep(0.05)
        elapsed = time.monotonic() - began
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
    return runs / elapsed


# -- 3. claim latency -------------------------------------------------------------------------------------------

LATENCY_WORKER = """
import asyncio, sys
from agentfsm import Runs
from agentfsm.service.worker import work
if sys.argv[2] == "poll":
    from agentfsm.store.postgres import PostgresBackend
    PostgresBackend.listener = lambda self: None  # wake-ups off: the worker polls
async def main():
    async with Runs(sys.argv[1]) as runs:
        await work(runs, interval=1.0, concurrency=16)
asyncio.run(main())
"""


async def latencies(url: str, machine: Any, samples: int, pause: float) -> list[float]:
    """Submit `samples` runs one at a time on an open connection; each: its first step's start - submit's call."""
    from agentfsm import Runs
    from agentfsm.store.base import RunFilter

    found = []
    async with Runs(url) as runs:
        await runs.store.list_runs(RunFilter(limit=1))  # connected before the clock starts
        for _ in range(samples):
            asked = time.time()
            run = await runs.submit(machine, {"n": 0})
            while not (steps := await runs.store.steps(run.id, "main", 1, 1)):
                await asyncio.sleep(0.001)
            found.append(steps[0].started_at - asked)
            await asyncio.sleep(pause)  # idle again; not in step with the polling interval
    return found


def latency(cluster: Cluster, mode: str, samples: int, work: Path) -> list[float]:
    from agentfsm.service.machines import load_machine

    url = cluster.fresh_url()
    machine_path = work / "five.yaml"
    machine_path.write_text(FIVE_YAML)
    machine = load_machine(machine_path)
    asyncio.run(submit_many(url, machine_path, 1))  # the schema exists before the worker starts
    worker = subprocess.Popen([sys.executable, "-c", LATENCY_WORKER, url, mode], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)  # started, connected, listening, the first run done: idle
        return asyncio.run(latencies(url, machine, samples, 0.3 if mode == "listen" else 0.37))
    finally:
        worker.terminate()
        worker.wait()


# -- report -------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--skip", default="", help="comma-separated: step,throughput,latency")
    parser.add_argument("--fsync", choices=("on", "off"), default="on",
                        help="the server's fsync (off: what a step costs without the disk's flush)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = Cluster(bin_dir, fsync=args.fsync == "on").start()
    work = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    version = cluster.psql("SHOW server_version").strip()
    print(f"PostgreSQL {version} on 127.0.0.1 (fsync {args.fsync}, synchronous_commit on); "
          f"Python {platform.python_version()}; "
          f"{os.cpu_count()} cores")
    try:
        if "step" not in skip:
            print(f"\n1. a recorded step, small context, {args.steps} steps, median of {args.repeats}")
            ours, ours_bare = agentfsm_loop(cluster.fresh_url(), args.steps, work, args.repeats)
            rows = [("agentfsm (postgresql://, each step committed before the next)", ours, ours_bare)]
            try:
                peer = importlib.metadata.version("langgraph-checkpoint-postgres")
                conninfo = cluster.url()
                for durability in ("sync", "async"):
                    durable, bare = langgraph_loop(conninfo, args.steps, args.repeats, durability)
                    rows.append((f"LangGraph {peer} PostgresSaver, durability={durability}", durable, bare))
            except importlib.metadata.PackageNotFoundError:
                print("  LangGraph PostgresSaver: not installed (pip install langgraph-checkpoint-postgres)")
            print(f"  {'engine':70} {'us/step':>9} {'no store':>9} {'store':>9} {'vs ours':>8}")
            for name, durable, bare in rows:
                share = (durable - bare) / 1000
                print(f"  {name:70} {durable / 1000:9.1f} {bare / 1000:9.1f} {share:9.1f} "
                      f"{durable / ours:7.2f}x")
        if "throughput" not in skip:
            print(f"\n2. throughput: {args.runs} queued runs of 5 trivial states, worker --concurrency 16")
            rates = {}
            for workers in (1, 2, 4):
                rates[workers] = throughput(cluster, args.runs, workers, work)
                print(f"  {workers} worker process(es): {rates[workers]:7.1f} runs/s "
                      f"({rates[workers] * 5:7.1f} steps/s)")
            print(f"  scaling 1 -> 4 workers: {rates[4] / rates[1]:.2f}x (1 -> 2: {rates[2] / rates[1]:.2f}x)")
        if "latency" not in skip:
            print(f"\n3. claim latency, submit -> first step started on an idle worker ({args.samples} samples)")
            for mode, label in (("listen", "LISTEN/NOTIFY"), ("poll", "polling every 1s")):
                found = sorted(latency(cluster, mode, args.samples, work))
                print(f"  {label:18} median {statistics.median(found) * 1000:7.1f} ms, "
                      f"p90 {found[int(len(found) * 0.9) - 1] * 1000:7.1f} ms, max {found[-1] * 1000:7.1f} ms")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
