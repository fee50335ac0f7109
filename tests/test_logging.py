"""`-v`/`--log-format`: step and call events on stderr, as text or JSON lines, and no secret in any of it.

The secrets audit runs the `agentfsm` command as a subprocess against the loopback server
(tests/llm_server.py): an OpenAI-format LLM binding whose key comes from `api_key_env`,
and an `http` tool whose header comes from `{env: NAME}`, both holding recognisable fake
secrets, with servers that echo them back; neither may appear on stdout, stderr, in the
`--json` result or in any file the run wrote.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from agentfsm.bindings.known_secrets import forget_secrets, register_secret
from agentfsm.observability.logging import configure_logging
from tests.helpers import environment_without_proxies
from tests.llm_server import LLMServer, Reply

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ROOT / "machines"
KEY = "sk-test-SECRET-logging-5a4b3c2d1e"
TOKEN = "tok-SECRET-logging-header-9z8y7x"
KEY_ENV = "AGENTFSM_TEST_LOG_KEY"
TOKEN_ENV = "AGENTFSM_TEST_LOG_TOKEN"
EXAMPLE_INPUTS = {
    "hello.yaml": [],
    "react_agent.yaml": ["-i", "task=What is 17 * 23?"],
    "react_native_tools.yaml": ["-i", "task=What is 17 * 23?"],
    "ticket_triage.yaml": ["-i", "ticket=My invoice is wrong, I was charged twice."],
    "approval.yaml": [],
    "summarize_each.yaml": [],
}
WAITING_EXAMPLES = {"approval.yaml"}
"""Examples that stop at a `wait` state: `run` exits 3 (paused) with the steps before the wait."""


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = environment_without_proxies()
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "agentfsm", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=environment)


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line as a JSON object; fails on a line that is not one."""
    events = []
    for line in stderr.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert {"timestamp", "level", "logger", "event"} <= event.keys(), line
        events.append(event)
    return events


# -- the shipped examples --------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    shutil.copytree(MACHINES, folder / "machines")
    return folder


def test_every_example_has_its_inputs_listed_here() -> None:
    assert sorted(p.name for p in MACHINES.glob("*.yaml") if not p.name.endswith(".test.yaml")) == sorted(EXAMPLE_INPUTS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_INPUTS))
def test_examples_log_one_json_step_event_per_step(work: Path, name: str) -> None:
    completed = cli("-vv", "--log-format", "json", "run", f"machines/{name}", *EXAMPLE_INPUTS[name], "--json",
                    cwd=work)
    assert completed.returncode == (3 if name in WAITING_EXAMPLES else 0), completed.stderr
    result = json.loads(completed.stdout)
    events = json_lines(completed.stderr)  # progress is off: stderr is pure JSON lines
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, result["steps"] + 1))
    assert all(e["run_id"] == result["run_id"] and e["level"] == "info" for e in steps)
    assert {"state", "state_event", "next_state", "duration_ms", "retries"} <= steps[0].keys()
    assert [e["event"] for e in events if e["event"].startswith("run.")] == ["run.start", "run.end"]


def test_v_logs_a_text_line_per_step_and_no_debug(work: Path) -> None:
    completed = cli("-v", "run", "machines/react_agent.yaml", *EXAMPLE_INPUTS["react_agent.yaml"], "--quiet",
                    cwd=work)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "391\n"
    lines = completed.stderr.splitlines()
    steps = [line for line in lines if "[info     ] step " in line]
    assert len(steps) == 7, completed.stderr
    assert "state=initial" in steps[0] and "next_state=thinking" in steps[0]
    assert not any("llm.call" in line for line in lines)  # DEBUG needs -vv


def test_progress_and_logs_together_without_json(work: Path) -> None:
    completed = cli("-v", "run", "machines/hello.yaml", cwd=work)
    assert completed.returncode == 0, completed.stderr
    assert "succeeded in 2 steps" in completed.stderr  # progress still there
    assert sum(" step " in line and "run_id=" in line for line in completed.stderr.splitlines()) == 2


def test_default_is_quiet_logs(work: Path) -> None:
    completed = cli("run", "machines/hello.yaml", "--quiet", cwd=work)
    assert (completed.returncode, completed.stderr) == (0, "")


def test_an_unknown_log_format_is_a_usage_error(work: Path) -> None:
    completed = cli("--log-format", "xml", "run", "machines/hello.yaml", cwd=work)
    assert completed.returncode == 2


# -- the secrets audit -----------------------------------------------------------------------


def write_machine(folder: Path, server: LLMServer) -> Path:
    """An http tool call (errors caught), then one LLM question."""
    document = {
        "agentfsm": 1, "name": "secrets-audit",
        "llms": {"brain": {"provider": "openai", "model": "gpt-test", "base_url": server.url + "/v1",
                           "api_key_env": KEY_ENV, "max_retries": 0}},
        "tools": {"fetch": {"http": server.url + "/items/1", "headers": {"Authorization": {"env": TOKEN_ENV}}}},
        "initial": "fetch",
        "states": {
            "fetch": {"type": "tool", "tool": "fetch", "save": "item", "next": "ask",
                      "catch": [{"errors": ["*"], "to": "ask", "as": "fetch_error"}]},
            "ask": {"type": "llm", "llm": "brain", "prompt": "Say hello.", "save": "answer", "next": "done"},
            "done": {"type": "final", "output": "{{ answer }}"},
        },
    }
    path = folder / "machine.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def openai_reply(text: str) -> Reply:
    return Reply(json={
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    })


OUTCOMES = {
    "success": ([Reply(200, {"id": 1}), openai_reply("hello")], 0),
    "llm-401": ([Reply(200, {"id": 1}),
                 Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "error"}})], 1),
    "llm-500": ([Reply(200, {"id": 1}),
                 Reply(500, {"error": {"message": f"crashed while handling {KEY} and {TOKEN}"}})], 1),
    "tool-404": ([Reply(404, body=f"no item for Authorization: {TOKEN} (key {KEY})".encode()),
                  openai_reply("hello")], 0),
}


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_no_secret_reaches_stdout_stderr_or_a_file(server: LLMServer, tmp_path: Path, outcome: str,
                                                   log_format: str) -> None:
    replies, code = OUTCOMES[outcome]
    server.script(*replies)
    path = write_machine(tmp_path, server)

    completed = cli("-vv", "--log-format", log_format, "run", path.name, "--json", cwd=tmp_path,
                    env={KEY_ENV: KEY, TOKEN_ENV: TOKEN})

    assert completed.returncode == code, completed.stderr
    # the secrets were really sent (so they were there to leak)
    assert server.requests[0].headers["authorization"] == TOKEN
    assert server.requests[1].headers["authorization"] == f"Bearer {KEY}"
    for secret in (KEY, TOKEN):
        assert secret not in completed.stdout
        assert secret not in completed.stderr
        for file in tmp_path.rglob("*"):
            if file.is_file():
                assert secret.encode() not in file.read_bytes(), file
    assert "Traceback" not in completed.stderr
    result = json.loads(completed.stdout)
    # the logs are not silent: a step event per step, and the calls at DEBUG
    if log_format == "json":
        events = json_lines(completed.stderr)
        names = [e["event"] for e in events]
        assert names.count("step") == result["steps"]
        assert "tool.call" in names and "llm.call" in names
        for event in events:
            assert not {"headers", "authorization", "api_key", "body", "args"} & event.keys(), event
    else:
        assert completed.stderr.count(" step ") == result["steps"]
        assert "tool.call" in completed.stderr and "llm.call" in completed.stderr
    if outcome != "success":
        assert "[redacted]" in completed.stdout  # the echoed secret was there, and removed


# -- the safety net itself -------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging configured as `-vv --log-format json` into a buffer; everything put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("agentfsm").level)
    stream = io.StringIO()
    configure_logging(2, "json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("agentfsm").setLevel(saved[2])
        structlog.reset_defaults()
        forget_secrets()


def test_known_secrets_are_redacted_from_every_kind_of_log_event(captured: io.StringIO) -> None:
    secret = "sk-unit-SECRET-0000111122223333"
    register_secret(secret)
    stdlib = logging.getLogger("agentfsm")
    stdlib.info("key is %s", secret)
    stdlib.debug(f"inline {secret}")
    logging.getLogger("httpx").debug("request with %r", {"authorization": f"Bearer {secret}"})
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        stdlib.warning("boom", exc_info=True)
    log = structlog.stdlib.get_logger("agentfsm")
    log.info("event", key=secret, nested={"a": [secret, 1]}, **{secret: "as a key"})
    log.info(f"named {secret}")

    output = captured.getvalue()
    assert secret not in output
    events = json_lines(output)
    assert len(events) == 6
    assert output.count("[redacted]") >= 8
    assert "RuntimeError" in events[3]["exception"]
    assert events[4]["nested"] == {"a": ["[redacted]", 1]}


def test_short_values_are_not_registered(captured: io.StringIO) -> None:
    register_secret("ab")
    logging.getLogger("agentfsm").warning("abc")
    assert json_lines(captured.getvalue())[0]["event"] == "abc"
