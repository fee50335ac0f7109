"""Reading a run from the command line: `trace` (timeline, --json, --jsonl, -o, --follow, -v), as a user sees it.

Runs are seeded in this process (setup); every command under test runs as a real `python -m agentfsm`
subprocess. Bad input must change nothing in the store: those cases compare its SQL dump before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.test_cli_runs import APPROVAL, MACHINES, TIMEOUT, _ENV, cli, dump, one_error_line, seed, show

GATED = """\
agentfsm: 1
name: gated
inputs:
  gate: {type: string}
tools:
  wait_for_gate:
    command: [PYTHON, "-c", "import os, sys, time\\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)",
              "{{ args.path }}"]
    timeout: 60s
initial: first
states:
  first: {type: set, set: {a: 1}, next: gate}
  gate: {type: tool, tool: wait_for_gate, args: {path: "{{ gate }}"}, next: last}
  last: {type: final, output: done}
"""


@pytest.fixture(scope="module")
def approved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with one approval run that waited, was approved and succeeded: (store, run id)."""
    store = tmp_path_factory.mktemp("observe") / "runs.db"
    return store, seed(store, APPROVAL, {"topic": "tracing"}, send="approved")


def entries(store: Path, run_id: str) -> list[dict]:
    result = cli("trace", run_id, "--json", store=store)
    assert result.returncode == 0, show(result)
    return json.loads(result.stdout)


def test_trace_prints_one_line_per_entry_and_the_same_entries_as_json_and_jsonl(
        approved: tuple[Path, str], tmp_path: Path) -> None:
    store, run_id = approved
    listed = entries(store, run_id)
    kinds = [entry["kind"] for entry in listed]
    assert kinds[:3] == ["run_started", "state_entered", "llm_call"] and kinds[-1] == "run_ended"
    assert {entry["run_id"] for entry in listed} == {run_id} and {entry["branch"] for entry in listed} == {"main"}

    timeline = cli("trace", run_id[-8:], store=store)
    assert timeline.returncode == 0, show(timeline)
    lines = timeline.stdout.splitlines()
    assert len(lines) == len(listed)
    for line, entry in zip(lines, listed, strict=True):
        assert line.split()[0] == str(entry["seq"]) and entry["kind"] in line.split()
    llm = next(line for line in lines if " llm_call " in line)
    assert "draft: writer (scripted) 6+6 tokens" in llm
    assert '"Write a one-line announcement about tracing." -> "Announcing tracing: faster, simpler, ready today."' in llm
    assert "review -> published on approved (rule 0: approved)" in timeline.stdout
    assert "succeeded" in lines[-1]

    as_lines = cli("trace", run_id, "--jsonl", "-o", tmp_path / "trace.jsonl", store=store)
    assert as_lines.returncode == 0 and as_lines.stdout == "", show(as_lines)
    written = (tmp_path / "trace.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in written] == listed


def test_trace_folds_a_long_prompt_onto_its_line_unless_verbose(tmp_path: Path) -> None:
    machine = tmp_path / "long.yaml"
    machine.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: long
        inputs:
          document: {type: string}
        llms:
          brain: {provider: scripted, replies: [{reply: "a short summary"}]}
        initial: read
        states:
          read: {type: llm, llm: brain, prompt: "Summarise:\\n{{ document }}", save: summary, next: done}
          done: {type: final, output: "{{ summary }}"}
        """), encoding="utf-8")
    store = tmp_path / "runs.db"
    document = "lorem ipsum\n" * 2000 + "THE END"
    run_id = seed(store, machine, {"document": document})
    folded = cli("trace", run_id, store=store)
    assert folded.returncode == 0, show(folded)
    llm = [line for line in folded.stdout.splitlines() if " llm_call " in line]
    assert len(llm) == 1 and len(llm[0]) < 300 and "…" in llm[0] and "THE END" not in folded.stdout
    verbose = cli("trace", run_id, "-v", store=store)
    assert verbose.returncode == 0, show(verbose)
    assert "THE END" in verbose.stdout and '"text": "a short summary"' in verbose.stdout
    assert len(verbose.stdout.splitlines()) > len(folded.stdout.splitlines())


def test_trace_follow_prints_entries_as_another_process_advances_the_run(tmp_path: Path) -> None:
    store, gate = tmp_path / "runs.db", tmp_path / "gate"
    machine = tmp_path / "gated.yaml"
    machine.write_text(GATED.replace("PYTHON", json.dumps(sys.executable)), encoding="utf-8")
    base = [sys.executable, "-m", "agentfsm"]
    runner = subprocess.Popen([*base, "run", str(machine), "-i", f"gate={gate}", "--store", str(store)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_ENV)
    follower = None
    watchdog = threading.Timer(TIMEOUT, lambda: [p.kill() for p in (runner, follower) if p is not None])
    watchdog.start()
    try:
        run_id = runner.stderr.readline().split()[1]  # `run ID  MACHINE`, once the run is recorded
        follower = subprocess.Popen([*base, "trace", run_id, "--follow", "--jsonl", "--store", str(store)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=_ENV)
        seen = []
        while not seen or seen[-1]["kind"] != "state_exited":  # the first step's entries, while the run is held
            seen.append(json.loads(follower.stdout.readline()))
        assert runner.poll() is None and not gate.exists()
        assert [entry["kind"] for entry in seen] == ["run_started", "state_entered", "transition", "state_exited"]
        gate.write_text("go", encoding="utf-8")
        rest, errors = follower.communicate(timeout=TIMEOUT)
        assert follower.returncode == 0, errors
        assert runner.wait(timeout=TIMEOUT) == 0
    finally:
        watchdog.cancel()
        for process in (runner, follower):
            if process is not None and process.poll() is None:
                process.kill()
    followed = seen + [json.loads(line) for line in rest.splitlines()]
    assert followed[-1]["kind"] == "run_ended" and followed[-1]["status"] == "succeeded"
    assert followed == entries(store, run_id)


def test_a_reader_closing_the_pipe_ends_trace_quietly(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    run_id = seed(store, ROOT_LOOP, {"limit": 400})
    reader = subprocess.Popen([sys.executable, "-m", "agentfsm", "trace", run_id, "--store", str(store)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ENV)
    assert reader.stdout is not None and reader.stdout.readline().split()[0] == b"1"
    reader.stdout.close()  # `| head -1`
    assert reader.wait(timeout=TIMEOUT) == 0
    assert reader.stderr is not None and reader.stderr.read() == b""


ROOT_LOOP = MACHINES.parent / "benchmarks" / "loop.yaml"


def test_bad_input_to_trace_is_one_line_exit_2_and_changes_nothing(approved: tuple[Path, str],
                                                                  tmp_path: Path) -> None:
    store, run_id = approved
    before = dump(store)
    unknown = one_error_line(cli("trace", "zzzzzzzz", "-o", tmp_path / "out.txt", store=store))
    assert "no run 'zzzzzzzz'" in unknown and not (tmp_path / "out.txt").exists()
    unwritable = one_error_line(cli("trace", run_id, "-o", tmp_path / "missing" / "out.txt", store=store))
    assert unwritable == f"error: cannot write {tmp_path / 'missing' / 'out.txt'}: No such file or directory"
    both = one_error_line(cli("trace", run_id, "--json", "--jsonl", store=store))
    assert "--json and --jsonl" in both
    nowhere = one_error_line(cli("trace", run_id, store=tmp_path / "none.db"))
    assert "none.db" in nowhere and not (tmp_path / "none.db").exists()
    assert dump(store) == before
