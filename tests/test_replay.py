"""Record a run of the shipped ReAct agent against a real OpenAI-compatible server on loopback, then: replay it
offline with the server gone (identical, exit 0), replay it against an edited prompt (diverges there, exit 1, the
request diff shown), fork it at step 3 with a server back (which sees no request for the steps before), turn it
into a test case; and the bad inputs (an old run without recordings, a machine that does not fit, a point outside
the run) are one line, exit 2, nothing stored changed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentfsm.service.errors import USER_ERRORS
from agentfsm.service.replays import replay
from agentfsm.service.tests import run_tests

from tests.helpers import environment_without_proxies
from tests.llm_server import serve
from tests.test_llm_providers import openai_reply

ROOT = Path(__file__).resolve().parent.parent
ACTION = json.dumps({"thought": "compute", "action": {"tool": "calculator", "input": "17 * 23"}})
ANSWER = json.dumps({"thought": "done", "final_answer": "391"})


def agentfsm(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env=environment_without_proxies())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(a folder holding the machines and the store, the id of a run recorded against a real server)."""
    folder = tmp_path_factory.mktemp("replay")
    shutil.copytree(ROOT / "machines", folder / "machines", ignore=shutil.ignore_patterns("*.test.yaml"))
    with serve() as server:
        server.script(openai_reply(ACTION), openai_reply(ANSWER))
        run = agentfsm("run", "machines/react_agent.yaml", "-i", "task=What is 17 * 23?", "--json", "-q",
                       "--llm", f"brain=openai:test-model@{server.url}/v1", "--store", "sqlite:///runs.db",
                       cwd=folder)
        assert len(server.requests) == 2
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["output"] == "391"
    return folder, result["run_id"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replay_offline_is_identical(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded  # the server is stopped: a call that was not served would fail
    before = digest(folder / "runs.db")
    replayed = agentfsm("replay", run_id, "--store", "sqlite:///runs.db", cwd=folder)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == (f"run {run_id}: identical (7 steps; 2 LLM and 1 tool call(s) served from "
                                       "the recording)")
    as_json = asyncio.run(replay(f"sqlite:///{folder / 'runs.db'}", run_id)).as_dict()
    assert (as_json["identical"], as_json["output"], as_json["served"]) == (True, "391", {"llm": 2, "tool": 1})
    assert digest(folder / "runs.db") == before


def test_a_live_binding_calls_its_server_while_the_tools_replay(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded
    with serve() as server:
        server.script(openai_reply(ACTION), openai_reply(ANSWER))
        replayed = asyncio.run(replay(f"sqlite:///{folder / 'runs.db'}", run_id, live=["brain"],
                                      llms={"brain": f"openai:test-model@{server.url}/v1"}))
        requests = list(server.requests)
    result = replayed.as_dict()
    assert (result["identical"], result["served"], result["live"]) == (True, {"llm": 0, "tool": 1}, 1)
    assert len(requests) == 2


def test_an_edited_prompt_diverges_at_its_state_with_the_request_diff(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded
    edited = folder / "machines" / "edited.yaml"
    edited.write_text((folder / "machines" / "react_agent.yaml").read_text().replace(
        "      Task: {{ task }}\n", "      The task: {{ task }}\n"))
    replayed = agentfsm("replay", run_id, "--machine", edited, "--store", "sqlite:///runs.db", cwd=folder)
    assert replayed.returncode == 1, replayed.stderr
    lines = replayed.stdout.splitlines()
    assert lines[0] == (f"run {run_id}: diverged at step 2, state 'thinking': the request to 'brain' from state "
                        "'thinking' has no recording")
    assert lines[1:3] == ["--- recorded", "+++ replay"]
    assert '-      "content": "Task: What is 17 * 23?\\nNo observations yet.\\n\\n",' in lines
    assert '+      "content": "The task: What is 17 * 23?\\nNo observations yet.\\n\\n",' in lines
    # a later start replays only what follows: the edit in `thinking` first shows at its second visit
    later = asyncio.run(replay(f"sqlite:///{folder / 'runs.db'}", run_id, machine_file=edited, from_point="3"))
    assert later.divergence is not None and (later.divergence.step, later.divergence.state) == (6, "thinking")


def test_fork_at_step_3_calls_the_server_only_for_the_steps_after(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded
    shutil.copy(folder / "runs.db", folder / "fork.db")
    with serve() as server:
        server.script(openai_reply(ANSWER))
        forked = agentfsm("fork", run_id, "--at", "3", "--llm", f"brain=openai:test-model@{server.url}/v1",
                          "--json", "-q", "--store", "sqlite:///fork.db", cwd=folder)
        requests = list(server.requests)
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout)["output"] == "391"
    # steps 1 (a choice) and 2 (the first LLM call) were not run again: the one request is step 6's
    assert len(requests) == 1
    assert "Observation: 391" in requests[0].json["messages"][-1]["content"]


def test_record_turns_the_run_into_a_passing_test_case(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded
    made = agentfsm("record", run_id, "-o", "machines/recorded.test.yaml", "--store", "sqlite:///runs.db",
                    cwd=folder)
    assert made.returncode == 0, made.stderr
    tested = asyncio.run(run_tests([folder / "machines" / "recorded.test.yaml"]))
    assert tested.ok and [case.name for case in tested.results[0].cases] == [f"run {run_id}"], tested.text()


def test_bad_input_is_one_line_exit_2_and_changes_nothing(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded
    shutil.copy(ROOT / "tests" / "fixtures" / "runs-v1.db", folder / "old.db")
    store = f"sqlite:///{folder / 'runs.db'}"
    cases = [
        (f"sqlite:///{folder / 'old.db'}", "v1react0000000001", {},
         "run v1react0000000001 was recorded before runs kept their LLM and tool calls: it has no recording of "
         "its 3 call(s) to replay"),
        (store, run_id, {"from_point": "99"},
         f"run {run_id} has no step 99 on branch 'main' (its steps are 1 to 7; 8 is its current point)"),
        (store, run_id, {"machine_file": folder / "machines" / "hello.yaml"},
         f"the recording of run {run_id} does not match {folder / 'machines' / 'hello.yaml'}: it has states acting, "
         "finalizing, initial, observing, reflecting, thinking and bindings brain, calculator that the machine "
         "does not"),
        (store, run_id, {"live": ["mind"]}, f"--live mind: the machine of run {run_id} has no binding of that name"),
    ]
    before = digest(folder / "runs.db")
    for url, run, options, expected in cases:
        with pytest.raises(USER_ERRORS) as raised:
            asyncio.run(replay(url, run, **options))
        assert str(raised.value) == expected
    cli = agentfsm("replay", run_id, "--from", "99", "--store", "sqlite:///runs.db", cwd=folder)
    assert (cli.returncode, cli.stdout, cli.stderr) == (2, "", f"error: {cases[1][3]}\n")
    assert digest(folder / "runs.db") == before
