"""The run queue through the CLI: `submit` records runs as queued, `worker` processes claim and finish them.

Workers are processes of their own; the commands around them (submit, runs, workers, send, history) run in
this process (tests/cli_inprocess.py). The big versions (500 runs over 4 workers, SIGKILLs and a server restart) are in tests/stress/queue_stress.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.cli_inprocess import Cli, cli_fixture
from tests.helpers import environment_without_proxies
from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "tests" / "machines" / "queue_job.yaml"
APPROVAL = ROOT / "machines" / "approval.yaml"


cli = cli_fixture


def env_for(store: str, log: Path | None = None) -> dict[str, str]:
    """The variables a test's commands (and workers) run with: the store, and the file the job's tool appends to."""
    return {"AGENTFSM_STORE": store, **({"QUEUE_JOB_LOG": str(log)} if log is not None else {})}


def worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agentfsm", "worker", *args], cwd=ROOT,
                            env={**environment_without_proxies(), **env}, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def statuses(cli: Cli, env: dict[str, str]) -> Counter[str]:
    listed = cli("runs", "--json", "--limit", "1000", env=env)
    assert listed.code == 0, listed
    return Counter(run["status"] for run in json.loads(listed.out))


def test_submit_queues_runs_a_worker_finishes(tmp_path: Path, cli: Cli) -> None:
    env = env_for(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "log")
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"n": 1}\n\n{"n": 2}\n{"n": "three"}\n')
    refused = cli("submit", JOB, "--batch", batch, env=env)
    assert refused.code == 2 and refused.err == (
        f"error: {batch}:4: input 'n' must be an integer, got \"three\"\n"), refused
    assert not (tmp_path / "runs.db").exists()  # a bad line records no run
    batch.write_text('{"n": 1}\n\n{"n": 2}\n')
    submitted = cli("submit", JOB, "--batch", batch, "--json", env=env)
    assert submitted.code == 0, submitted
    ids = json.loads(submitted.out)
    one = cli("submit", JOB, "-i", "n=3", env=env)
    assert one.code == 0 and one.err == "queued 1 run(s) of queue-job: a worker runs them (agentfsm worker)\n"
    ids.append(one.out.strip())
    assert statuses(cli, env) == {"queued": 3} and not (tmp_path / "log").exists()  # queued: nothing ran
    done = worker(env, "--once")
    _, said = done.communicate(timeout=120)
    assert done.returncode == 0, said
    assert sorted(said.splitlines()) == sorted(f"run {run_id}: succeeded after 4 steps" for run_id in ids)
    lines = (tmp_path / "log").read_text().splitlines()
    assert Counter(line.rsplit(" ", 1)[0] for line in lines) == {f"{run_id} {step}": 1 for run_id in ids
                                                                 for step in (1, 2, 3)}
    outputs = [json.loads(cli("runs", "--json", env=env).out)]
    assert sorted(run["output"] for run in outputs[0]) == [1, 2, 3]


def test_queued_runs_over_four_worker_processes_finish_exactly_once(postgres_server: Cluster, tmp_path: Path,
                                                                   cli: Cli) -> None:
    """40 queued runs, 4 worker processes started before them and polling only every 10 minutes: the runs are
    claimed on LISTEN/NOTIFY wake-ups, each finishes once, no step runs twice, and more than one worker works."""
    log = tmp_path / "log"
    env = env_for(postgres_server.fresh_url(), log)
    workers = [worker(env, "--concurrency", "4", "--interval", "600") for _ in range(4)]
    try:
        deadline = time.monotonic() + 60
        while len(json.loads(cli("workers", "--json", env=env).out or "[]")) < 4:
            assert time.monotonic() < deadline, "the workers did not register"
            time.sleep(0.2)
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(f'{{"n": {n}}}\n' for n in range(40)))
        submitted = cli("submit", JOB, "--batch", batch, "--json", env=env)
        assert submitted.code == 0, submitted
        ids = json.loads(submitted.out)
        while statuses(cli, env) != {"succeeded": 40}:
            assert time.monotonic() < deadline + 60, statuses(cli, env)
            time.sleep(0.3)
        listed = json.loads(cli("workers", "--json", env=env).out)
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
    assert json.loads(cli("workers", "--json", env=env).out) == []  # stopped workers leave the list


def test_two_workers_racing_for_one_run_with_an_event(postgres_server: Cluster, cli: Cli) -> None:
    env = env_for(postgres_server.fresh_url())
    started = cli("run", APPROVAL, "--json", "-q", env=env)
    run_id = json.loads(started.out)["run_id"]
    sent = cli("send", run_id, "approved", "--no-resume", env=env)
    assert sent.code == 0, sent
    racers = [worker(env, "--once") for _ in range(2)]
    outputs = [racer.communicate(timeout=120)[1] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert sum(output.count(f"run {run_id}: succeeded") for output in outputs) == 1, outputs
    history = json.loads(cli("history", run_id, "--json", env=env).out)
    assert [row["state"] for row in history] == ["draft", "review", "published"]


def test_a_worker_that_cannot_import_a_machines_module_leaves_the_run_queued_for_another(
        postgres_server: Cluster, tmp_path: Path, cli: Cli) -> None:
    """The machine's Python tool is on the disk where the run was submitted and not where the first worker runs
    (the module is taken away meanwhile): that worker says why in one line and leaves the run queued; a worker
    that has the module runs it."""
    (tmp_path / "job.yaml").write_text(JOB.read_text())
    tools = tmp_path / "queue_tools.py"
    tools.write_text((JOB.parent / "queue_tools.py").read_text())
    env = env_for(postgres_server.fresh_url(), tmp_path / "log")
    submitted = cli("submit", tmp_path / "job.yaml", "--json", env=env)
    assert submitted.code == 0, submitted
    [run_id] = json.loads(submitted.out)
    tools.rename(tmp_path / "elsewhere.py")
    lacking = worker(env, "--once")
    _, said = lacking.communicate(timeout=120)
    assert lacking.returncode == 1, said  # --once: a run could not be resumed
    assert said.splitlines() == [f"WARNING agentfsm: worker: run {run_id} could not be resumed: tools.mark.python: "
                                 "cannot import module 'queue_tools' (No module named 'queue_tools')"], said
    assert statuses(cli, env) == {"queued": 1} and not (tmp_path / "log").exists()
    (tmp_path / "elsewhere.py").rename(tools)
    able = worker(env, "--once")
    _, said = able.communicate(timeout=120)
    assert said.strip() == f"run {run_id}: succeeded after 4 steps", said
