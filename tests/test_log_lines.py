"""Every log line says which run, step and state it is about; on a terminal, log lines never tear the progress line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agentfsm.observability.logging import LogContext, LoggingObserver, configure_logging, configure_plain_logging
from agentfsm.service.runs import Runs
from tests.helpers import environment_without_proxies
from tests.llm_server import LLMServer, Reply

ASKING = """\
agentfsm: 1
name: asking
llms:
  brain: {provider: openai, model: gpt-test, base_url: "URL/v1", api_key_env: AGENTFSM_LOG_LINES_KEY}
initial: ask
states:
  ask:
    type: llm
    llm: brain
    prompt: "Say ok"
    save: answer
    next: done
  done:
    type: final
    output: "{{ answer }}"
"""

SLOW = """\
agentfsm: 1
name: slow
context: {n: 0}
tools:
  nap: {command: ["sleep", "0.12"]}
initial: nap
states:
  nap:
    type: tool
    tool: nap
    next: count
  count:
    type: set
    set: {n: "{{ n + 1 }}"}
    transitions:
      - {when: "n < 4", to: nap}
      - {to: done}
  done:
    type: final
    output: "{{ n }}"
"""


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("agentfsm").level)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("agentfsm").setLevel(saved[2])
        structlog.reset_defaults()


class Failing:
    """An observer that fails at every step end: the run goes on, and the warning says where it happened."""

    def on_step_ended(self, *, event: Any) -> None:
        raise RuntimeError("watching failed")


def test_every_json_line_of_a_run_carries_its_run_id_step_and_state(
        server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_logging: None) -> None:
    monkeypatch.setenv("AGENTFSM_LOG_LINES_KEY", "sk-log-lines-key-0001")
    server.script(Reply(json={"choices": [{"message": {"role": "assistant", "content": "ok"},
                                           "finish_reason": "stop"}],
                              "model": "gpt-test", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
    machine = tmp_path / "asking.yaml"
    machine.write_text(ASKING.replace("URL", server.url), encoding="utf-8")
    stream = io.StringIO()
    configure_logging(2, "json", stream=stream)

    async def main() -> str:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            result = await runs.start(machine, {}, observers=[LogContext(), LoggingObserver(), Failing()])
            assert result.status == "succeeded", result.error
            return result.run_id

    run_id = asyncio.run(main())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_event = {line["event"].split(":")[0]: line for line in lines}
    assert {"run.start", "step", "llm.call", "run.end"} <= by_event.keys()
    assert any(line["logger"] == "httpx" for line in lines)  # the HTTP library's own line...
    assert any(line["event"].startswith("observer Failing failed") for line in lines)  # ...and an observer's failure
    for line in lines:
        assert (line["run_id"], type(line["step"]), type(line["state"])) == (run_id, int, str), line
    httpx = next(line for line in lines if line["logger"] == "httpx")
    assert (httpx["step"], httpx["state"]) == (1, "ask")  # where the request was made
    assert "sk-log-lines-key-0001" not in stream.getvalue()


def test_a_plain_warning_names_its_run_step_and_state(tmp_path: Path, restored_logging: None) -> None:
    stream = io.StringIO()
    configure_plain_logging(stream)
    machine = tmp_path / "slow.yaml"
    machine.write_text(SLOW.replace("0.12", "0"), encoding="utf-8")

    async def main() -> str:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            result = await runs.start(machine, {}, observers=[LogContext(), Failing()])
            return result.run_id

    run_id = asyncio.run(main())
    [first, *_] = stream.getvalue().splitlines()
    assert first.startswith("WARNING agentfsm: observer Failing failed on StepEnded: watching failed")
    assert first.endswith(f" (run {run_id}, step 1, state nap)")


# -- a real terminal ------------------------------------------------------------------------------------------

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def screen(output: str) -> list[str]:
    """The rows a terminal shows for `output`: carriage returns, line clears and overwrites applied."""
    rows: list[str] = []
    row: list[str] = []
    cursor = 0
    at = 0
    while at < len(output):
        escape = _ESCAPE.match(output, at)
        if escape:
            code = escape.group()
            assert not code.endswith(("A", "J")), "a live area of one line only here"
            if code == "\x1b[2K":
                row = []
            at = escape.end()
            continue
        char = output[at]
        at += 1
        if char == "\n":
            rows.append("".join(row))
            row, cursor = [], 0
        elif char == "\r":
            cursor = 0
        else:
            row[cursor:cursor + 1] = [char]
            cursor += 1
    rows.append("".join(row))
    return rows


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run `agentfsm ARGS` with stdout and stderr on a new pseudo-terminal; its exit code and everything it wrote."""
    main, child = pty.openpty()
    env = environment_without_proxies()
    env.update(COLUMNS="200", TERM="xterm-256color", AGENTFSM_STORE=f"sqlite:///{cwd / 'runs.db'}")
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "agentfsm", *args], stdin=child, stdout=child, stderr=child,
                               cwd=cwd, env=env, close_fds=True)
    os.close(child)
    output = b""
    try:
        while select.select([main], [], [], 60)[0]:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(main)
    return process.wait(timeout=60), output.decode()


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_log_lines_and_the_live_progress_line_never_share_a_row(tmp_path: Path, verbosity: str) -> None:
    (tmp_path / "slow.yaml").write_text(SLOW, encoding="utf-8")
    code, output = on_a_terminal(["run", "slow.yaml", verbosity], tmp_path)
    assert code == 0, output
    assert "⠋" in output or "⠙" in output  # there was a live line, spinning, while the logs were written
    rows = [row for row in screen(output) if row.strip()]
    logged = [row for row in rows if _TIMESTAMP.search(row)]
    progress = [row for row in rows if "-->" in row and not _TIMESTAMP.search(row)]
    assert len([row for row in logged if "] step " in row]) == 9 and len(progress) == 8
    for row in logged:  # each log line whole on its row: from its timestamp to its end, no spinner, no progress
        assert _TIMESTAMP.match(row), row
        assert not any(char in row for char in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏") and " ms  " not in row, row
        assert "run_id=" in row and "step=" in row and "state=" in row, row
    for row in progress:
        assert re.fullmatch(r" +\d+ +[\d.]+ m?s  \w+ --done--> \w+  [\d.]+ ms", row), row
    assert rows[-2:] == [rows[-2], "4"] and rows[-2].startswith("succeeded in 9 steps")  # then the output
    if verbosity == "-vv":
        assert sum("tool.call" in row for row in logged) == 4
