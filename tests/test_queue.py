"""The run queue through the CLI: `submit` records runs as queued, `worker` processes claim and finish them.

The big versions (500 runs over 4 workers, SIGKILLs and a server restart) are in tests/stress/queue_stress.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.helpers import environment_without_proxies
from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "tests" / "machines" / "queue_job.yaml"
APPROVAL = ROOT / "machines" / "approval.yaml"


def env_for(store: str, log: Path | None = None) -> dict[str, str]:
    env = {**environment_without_proxies(), "AGENTFSM_STORE": store}
    if log is not None:
        env["QUEUE_JOB_LOG"] = str(log)
    return env


def cli(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agentfsm", "worker", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def statuses(env: dict[str, str]) -> Counter[str]:
    listed = cli("runs", "--json", "--limit", "1000", env=env)
    assert listed.returncode == 0, show(listed)
    return Counter(run["status"] for run in json.loads(listed.stdout))


def test_submit_queues_runs_a_worker_finishes(tmp_path: Path) -> None:
    env = env_for(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "log")
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"n": 1}\n\n{"n": 2}\n{"n": "three"}\n')
    refused = cli("submit", JOB, "--batch", batch, env=env)
    assert refused.returncode == 2 and refused.stderr == (
        f"error: {batch}:4: input 'n' must be an integer, got \"three\"\n"), show(refused)
    assert not (tmp_path / "runs.db").exists()  # a bad line records no run
    batch.write_text('{"n": 1}\n\n{"n": 2}\n')
    submitted = cli("submit", JOB, "--batch", batch, "--json", env=env)
    assert submitted.returncode == 0, show(submitted)
    ids = json.loads(submitted.stdout)
    one = cli("submit", JOB, "-i", "n=3", env=env)
    assert one.returncode == 0 and one.stderr == "queued 1 run(s) of queue-job: a worker runs them (agentfsm worker)\n"
    ids.append(one.stdout.strip())
    assert statuses(env) == {"queued": 3} and not (tmp_path / "log").exists()  # queued: nothing ran
    done = cli("worker", "--once", env=env)
    assert done.returncode == 0, show(done)
    assert sorted(done.stderr.splitlines()) == sorted(f"run {run_id}: succeeded after 4 steps" for run_id in ids)
    lines = (tmp_path / "log").read_text().splitlines()
    assert Counter(line.rsplit(" ", 1)[0] for line in lines) == {f"{run_id} {step}": 1 for run_id in ids
                                                                 for step in (1, 2, 3)}
    outputs = [json.loads(cli("runs", "--json", env=env).stdout)]
    assert sorted(run["output"] for run in outputs[0]) == [1, 2, 3]


def test_queued_runs_over_four_worker_processes_finish_exactly_once(postgres_server: Cluster, tmp_path: Path) -> None:
    """40 queued runs, 4 worker processes started before them and polling only every 10 minutes: the runs are
    claimed on LISTEN/NOTIFY wake-ups, each finishes once, no step runs twice, and more than one worker works."""
    log = tmp_path / "log"
    env = env_for(postgres_server.fresh_url(), log)
    workers = [worker(env, "--concurrency", "4", "--interval", "600") for _ in range(4)]
    try:
        deadline = time.monotonic() + 60
        while len(json.loads(cli("workers", "--json", env=env).stdout or "[]")) < 4:
            assert time.monotonic() < deadline, "the workers did not register"
            time.sleep(0.2)
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(f'{{"n": {n}}}\n' for n in range(40)))
        submitted = cli("submit", JOB, "--batch", batch, "--json", env=env)
        assert submitted.returncode == 0, show(submitted)
        ids = json.loads(submitted.stdout)
        while statuses(env) != {"succeeded": 40}:
            assert time.monotonic() < deadline + 60, statuses(env)
            time.sleep(0.3)
        listed = json.loads(cli("workers", "--json", env=env).stdout)
        assert sorted(view["pid"] for view in listed) == sorted(process.pid for process in workers)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[1] for process in workers]
    assert [process.returncode for process in workers] == [0, 0, 0, 0], outputs
    lines = [line.split() for line in log.read_text().splitlines()]
    assert Counter((run, step) for run, step, _pid in lines) == {(run_id, str(step)): 1 for run_id in ids
                                                                 for step in (1, 2, 3)}
    by_worker = Counter(pid for _run, _step, pid in lines)
    assert len(by_worker) >= 2, f"one worker did everything: {by_worker}"
    assert sum(output.count(": succeeded after 4 steps") for output in outputs) == 40
    assert json.loads(cli("workers", "--json", env=env).stdout) == []  # stopped workers leave the list


def test_two_workers_racing_for_one_run_with_an_event(postgres_server: Cluster) -> None:
    env = env_for(postgres_server.fresh_url())
    started = cli("run", APPROVAL, "--json", "-q", env=env)
    run_id = json.loads(started.stdout)["run_id"]
    sent = cli("send", run_id, "approved", "--no-resume", env=env)
    assert sent.returncode == 0, show(sent)
    racers = [subprocess.Popen([sys.executable, "-m", "agentfsm", "worker", "--once"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [racer.communicate(timeout=120)[1] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert sum(output.count(f"run {run_id}: succeeded") for output in outputs) == 1, outputs
    history = json.loads(cli("history", run_id, "--json", env=env).stdout)
    assert [row["state"] for row in history] == ["draft", "review", "published"]
