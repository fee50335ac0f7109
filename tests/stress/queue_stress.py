"""The run queue under load and under fire: N queued runs over 4 worker processes on one PostgreSQL store.

Run by hand from the repository root (it starts its own throwaway PostgreSQL server):

    python tests/stress/queue_stress.py                 # 500 runs, 4 workers: exactly once, spread over workers
    python tests/stress/queue_stress.py --chaos         # + SIGKILL a random worker ~every second (20 kills,
                                                        #   each restarted) and `pg_ctl restart -m fast` mid-way

Each run is tests/machines/queue_job.yaml: three steps, each a Python tool appending "RUN STEP PID" to a log.
Checks, printed with figures at the end:
- every run finished (succeeded) exactly once, and each run's history is exactly its 4 steps (first, second,
  third, done): no step recorded twice or lost;
- without kills: no step appears twice in the log (a tool call runs once), and the runs are spread over the
  workers; with kills, a step whose worker was killed inside the tool call is run again by the next worker
  (at least once for side effects, exactly once in the store): those repeats are counted and bounded;
- after the server restart every worker is still alive and said `lost the connection ...; reconnecting`
  and `reconnected ...`, once per loss, not a crash loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.postgres import Cluster, find_bin_dir  # noqa: E402

JOB = ROOT / "tests" / "machines" / "queue_job.yaml"


def start_worker(env: dict[str, str], concurrency: int, log_dir: Path, index: int) -> subprocess.Popen[bytes]:
    out = open(log_dir / f"worker-{index}.err", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([sys.executable, "-m", "agentfsm", "worker", "--concurrency", str(concurrency)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


async def counts(url: str) -> Counter[str]:
    from agentfsm.store import open_store
    from agentfsm.store.base import RunFilter

    store = open_store(url)
    try:
        return Counter(run.status for run in await store.list_runs(RunFilter()))
    finally:
        await store.close()


async def histories(url: str) -> dict[str, list[tuple[int, str | None]]]:
    from agentfsm import Runs

    async with Runs(url) as runs:
        return {run.id: [(row.step, row.state) for row in await runs.history(run.id)]
                for run in await runs.list()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chaos", action="store_true")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--delay", type=float, default=None, help="seconds each tool call sleeps")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = Cluster(bin_dir, fsync=True).start()
    work = Path(tempfile.mkdtemp(prefix="queue-stress-"))
    log = work / "steps.log"
    url = cluster.url()
    env = {**os.environ, "AGENTFSM_STORE": url, "QUEUE_JOB_LOG": str(log),
           "QUEUE_JOB_DELAY": str(args.delay if args.delay is not None else (0.05 if args.chaos else 0.0))}
    try:
        batch = work / "batch.jsonl"
        batch.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(args.runs)))
        submitted = subprocess.run([sys.executable, "-m", "agentfsm", "submit", str(JOB), "--batch", str(batch),
                                    "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        ids = json.loads(submitted.stdout)
        began = time.monotonic()
        workers = [start_worker(env, args.concurrency, work, index) for index in range(args.workers)]
        kills = restarts = 0
        restart_at = args.kills // 2
        while True:
            status = asyncio.run(counts(url))
            if status.get("succeeded", 0) + status.get("failed", 0) == args.runs:
                break
            if time.monotonic() - began > 900:
                raise SystemExit(f"not finished after 15 minutes: {dict(status)}")
            if args.chaos and kills < args.kills:
                time.sleep(rng.uniform(0.6, 1.4))
                victim = rng.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                kills += 1
                workers[victim] = start_worker(env, args.concurrency, work, victim)
                if kills == restart_at and not restarts:
                    cluster.restart()
                    restarts += 1
                    print(f"  [{time.monotonic() - began:5.1f}s] pg_ctl restart -m fast", flush=True)
            else:
                time.sleep(0.5)
        elapsed = time.monotonic() - began
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=60)
        report(args, ids, url, log, work, elapsed, kills, restarts, workers)
    finally:
        cluster.stop()


def report(args: argparse.Namespace, ids: list[str], url: str, log: Path, work: Path, elapsed: float, kills: int,
           restarts: int, workers: list[subprocess.Popen[bytes]]) -> None:
    status = asyncio.run(counts(url))
    found = asyncio.run(histories(url))
    expected = [(1, "first"), (2, "second"), (3, "third"), (4, "done")]
    bad_history = [run_id for run_id in ids if found.get(run_id) != expected]
    lines = [line.split() for line in log.read_text().splitlines()]
    per_step = Counter((run, step) for run, step, _pid in lines)
    missing = [(run_id, step) for run_id in ids for step in ("1", "2", "3") if per_step[(run_id, step)] == 0]
    repeated = sum(count - 1 for count in per_step.values() if count > 1)
    by_pid = Counter(pid for _run, _step, pid in lines)
    errs = "".join(path.read_text(errors="replace") for path in sorted(work.glob("worker-*.err")))
    lost, back = errs.count("lost the connection to"), errs.count("reconnected to")
    tracebacks = errs.count("Traceback")
    print(f"runs: {args.runs} over {args.workers} workers (--concurrency {args.concurrency}), "
          f"kills: {kills}, server restarts: {restarts}")
    print(f"finished in {elapsed:.1f}s ({args.runs / elapsed:.1f} runs/s); statuses: {dict(status)}")
    print(f"histories exactly [first, second, third, done]: {len(ids) - len(bad_history)}/{len(ids)}")
    print(f"tool calls logged: {len(lines)} for {3 * len(ids)} steps; missing: {len(missing)}; "
          f"run again after a kill: {repeated}")
    print(f"steps per worker process: {sorted(by_pid.values(), reverse=True)} ({len(by_pid)} processes)")
    print(f"worker stderr: 'lost the connection' x{lost}, 'reconnected' x{back}, tracebacks: {tracebacks}")
    failures = []
    if status.get("succeeded") != args.runs:
        failures.append(f"not all succeeded: {dict(status)}")
    if bad_history:
        failures.append(f"{len(bad_history)} histories differ, e.g. {bad_history[0]}: {found.get(bad_history[0])}")
    if missing:
        failures.append(f"{len(missing)} steps never ran")
    if not args.chaos and repeated:
        failures.append(f"{repeated} steps ran twice without any kill")
    if args.chaos and repeated > kills * args.concurrency:
        failures.append(f"{repeated} repeated steps for {kills} kills")
    if not args.chaos and len(by_pid) < min(2, args.workers):
        failures.append("the runs were not spread over the workers")
    if restarts and not back:
        failures.append("no worker said it reconnected after the server restart")
    if tracebacks:
        failures.append("a worker printed a traceback")
    print("OK" if not failures else "FAILED: " + "; ".join(failures))
    if failures:
        print(f"(worker logs kept in {work})")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
