"""Reading a run from the command line: `trace` (timeline, --json, --jsonl, -o, --follow, -v), `show`, `branches`,
`switch` and `inspect`, as a user sees them.

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
    kinds = [entry["kind"] for entry in listed if entry["kind"] != "memory"]  # the process's memory, sampled
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
    assert "succeeded" in [line for line in lines if " run_ended " in line][-1]

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
        assert [entry["kind"] for entry in seen if entry["kind"] != "memory"] == [
            "run_started", "state_entered", "transition", "state_exited"]
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
    ended = [entry for entry in followed if entry["kind"] == "run_ended"]
    assert len(ended) == 1 and ended[0]["status"] == "succeeded"
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


@pytest.fixture(scope="module")
def revised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An approval run rejected once, then approved (review visited twice): (store, run id)."""
    store = tmp_path_factory.mktemp("revised") / "runs.db"
    run_id = seed(store, APPROVAL, {"topic": "points"}, send="rejected")
    return store, seed_send(store, run_id, "approved")


def seed_send(store: Path, run_id: str, event: str) -> str:
    import asyncio

    from agentfsm import Runs

    async def go() -> None:
        async with Runs(f"sqlite:///{store}") as runs:
            await runs.send(run_id, event)

    asyncio.run(go())
    return run_id


def shown(store: Path, run_id: str, point: str) -> dict:
    result = cli("show", run_id, point, "--json", store=store)
    assert result.returncode == 0, show(result)
    return json.loads(result.stdout)


def test_show_prints_the_whole_context_at_a_step_a_checkpoint_or_a_state(revised: tuple[Path, str]) -> None:
    store, run_id = revised
    at_step = shown(store, run_id, "2")
    assert (at_step["step"], at_step["state"], at_step["branch"]) == (2, "review", "main")
    assert at_step["context"]["text"] == "Announcing points: faster, simpler, ready today."
    assert at_step["context"]["revisions"] == 0 and at_step["visits"] == {"draft": 1}
    assert shown(store, run_id, "review")["context"] == at_step["context"]  # the checkpoint names that point
    latest = shown(store, run_id, "state:review")
    assert (latest["step"], latest["context"]["revisions"]) == (4, 1)
    assert latest["context"]["text"] == "Announcing it, revised: make it better."
    end = shown(store, run_id, "head")
    assert end["state"] is None and end["context"]["review"] is None
    text = cli("show", run_id, "state:review", store=store)
    assert text.returncode == 0 and json.loads(text.stdout) == latest["context"], show(text)
    assert "just before step 4 (state review about to run)" in text.stderr


def test_branches_lists_each_branch_and_switch_makes_one_the_head(revised: tuple[Path, str], tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    store.write_bytes(revised[0].read_bytes())
    run_id = revised[1]
    rolled = cli("rollback", run_id, "--to", "review", store=store)
    assert rolled.returncode == 0, show(rolled)

    def listed() -> dict[str, dict]:
        result = cli("branches", run_id, "--json", store=store)
        assert result.returncode == 0, show(result)
        return {branch["name"]: branch for branch in json.loads(result.stdout)}

    before = listed()
    assert before["main"] | {"created_at": 0} == {"name": "main", "parent": None, "fork": None, "last_step": 5,
                                                  "state": "published", "status": "succeeded", "head": False,
                                                  "created_at": 0}
    assert (before["rollback-1"]["parent"], before["rollback-1"]["fork"], before["rollback-1"]["state"],
            before["rollback-1"]["status"], before["rollback-1"]["head"]) == ("main", 2, "review", "paused", True)
    table = cli("branches", run_id, store=store)
    assert table.returncode == 0 and "* rollback-1  main@2" in table.stdout, show(table)

    switched = cli("switch", run_id, "main", store=store)
    assert switched.returncode == 0, show(switched)
    assert f"run {run_id}: branch 'main' is now the head (succeeded after step 5)" in switched.stderr
    after = listed()
    assert (after["main"]["head"], after["main"]["status"]) == (True, "succeeded")
    assert (after["rollback-1"]["head"], after["rollback-1"]["status"]) == (False, "open")

    unchanged = dump(store)
    assert "no branch 'nowhere' (branches: main, rollback-1)" in one_error_line(
        cli("switch", run_id, "nowhere", store=store))
    assert "already the head" in one_error_line(cli("switch", run_id, "main", store=store))
    assert "no checkpoint 'nowhere'" in one_error_line(cli("show", run_id, "nowhere", store=store))
    assert "has no step 9" in one_error_line(cli("show", run_id, "9", store=store))
    assert "never entered state 'nowhere'" in one_error_line(cli("show", run_id, "state:nowhere", store=store))
    for command in ("branches", "inspect", "show"):
        extra = ["2"] if command == "show" else []
        assert "no run 'zzzzzzzz'" in one_error_line(cli(command, "zzzzzzzz", *extra, store=store))
    assert dump(store) == unchanged


FAILING = """\
agentfsm: 1
name: failing
inputs:
  api_key: {type: string}
  notes: {type: string}
llms:
  brain: {provider: scripted, replies: [{reply: "1 / 0"}]}
tools:
  calc: {builtin: calculator}
initial: plan
states:
  plan: {type: llm, llm: brain, prompt: "Give an expression for {{ notes | length }} notes.", save: expression,
         next: compute}
  compute: {type: tool, tool: calc, args: {expression: "{{ expression }}"}, save: answer, next: done}
  done: {type: final}
"""


def test_inspect_tells_a_failed_runs_story_without_its_secrets(tmp_path: Path) -> None:
    machine, store = tmp_path / "failing.yaml", tmp_path / "runs.db"
    machine.write_text(FAILING, encoding="utf-8")
    secret = "sk-proj-" + "a1B2" * 10
    run_id = seed(store, machine, {"api_key": secret, "notes": "n" * 5000})
    result = cli("inspect", run_id, store=store)
    assert result.returncode == 0, show(result)
    text = result.stdout
    assert f"run {run_id}  machine failing  status failed  branch main  steps 2" in text
    assert "plan -> compute" in text
    assert "step 2, state compute: tool.error: calculator: division by zero" in text
    assert "step 1, state plan: brain (scripted), " in text and "asked: Give an expression for 5000 notes." in text
    assert "reply: 1 / 0" in text
    assert "api_key: [redacted]" in text and secret not in text
    assert "(5000 characters)" in text and "n" * 300 not in text

    as_json = cli("inspect", run_id, "--json", store=store)
    assert as_json.returncode == 0, show(as_json)
    view = json.loads(as_json.stdout)
    assert view["run"]["status"] == "failed" and view["current"] == "compute"
    assert view["last_error"]["state"] == "compute" and view["last_error"]["caught"] is False
    assert view["last_llm"]["reply"]["text"] == "1 / 0"
    assert view["context"]["api_key"] == "[redacted]" and secret not in as_json.stdout
    assert view["cost"]["bindings"]["brain"]["calls"] == 1
    assert view["path"] == [{"states": ["plan", "compute"], "times": 1, "step": 1}]


def test_inspect_folds_a_loop_shows_where_a_run_waits_and_lists_a_teams_agents(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    loop = seed(store, ROOT_LOOP, {"limit": 50})
    waiting = seed(store, APPROVAL, {"topic": "waits"})
    team = seed(store, MACHINES / "teams" / "sequential.yaml")
    folded = cli("inspect", loop, store=store)
    assert folded.returncode == 0 and "(inc -> check) x50 -> done" in folded.stdout, show(folded)
    paused = cli("inspect", waiting, store=store)
    assert paused.returncode == 0 and "waiting in review for: approved, rejected, timer due" in paused.stdout
    assert "[checkpoint review]" in paused.stdout
    agents = json.loads(cli("inspect", team, "--json", store=store).stdout)["children"]
    assert [(child["child_name"], child["status"]) for child in agents] == [
        ("editor", "succeeded"), ("writer", "succeeded"), ("researcher", "succeeded")]


def test_a_breakpoint_shows_in_the_trace_and_in_inspect(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    paused = cli("run", ROOT_LOOP, "-i", "limit=3", "--break", "check:n > 1", "-q", store=store)
    assert paused.returncode == 3, show(paused)
    run_id = json.loads(cli("runs", "--json", store=store).stdout)[0]["run_id"]
    timeline = cli("trace", run_id, store=store).stdout.splitlines()
    assert any(line.endswith("breakpoint       before check: check:n > 1 (guard n > 1 held)") for line in timeline)
    assert any(line.endswith("paused           check: breakpoint") for line in timeline)
    story = cli("inspect", run_id, store=store)
    assert f"paused before check (breakpoint); continue with: agentfsm resume {run_id}" in story.stdout, show(story)
