"""Pure timers: a `wait` with only `timeout:` or `until:` is a delay; short ones sleep in the process, long ones
suspend the run durably and `agentfsm worker` resumes it when due."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path

import agentfsm
from tests.test_cli import agentfsm_cmd

DELAY = """\
    agentfsm: 1
    name: delay
    inline_wait: {inline}
    inputs:
      seconds: {{type: number, default: 0.3}}
      at: {{type: any, default: null}}
    initial: pause
    states:
      pause:
        type: wait
        {timer}
        next: done
      done:
        type: final
        output: {{waited: "{{{{ event.name }}}}"}}
"""


def write(folder: Path, timer: str, inline: str = "60s") -> Path:
    path = folder / "delay.yaml"
    path.write_text(textwrap.dedent(DELAY).format(inline=inline, timer=timer), encoding="utf-8")
    return path


def test_a_short_delay_sleeps_in_the_process(tmp_path: Path) -> None:
    machine = agentfsm.load_machine(write(tmp_path, 'timeout: "{{ seconds }}"'))
    started = time.perf_counter()
    result = asyncio.run(machine.run({"seconds": 0.3}))
    assert result.status == "succeeded" and result.output == {"waited": "timeout"}
    assert time.perf_counter() - started >= 0.3
    assert [record.event for record in result.context.history] == ["timeout"]


def test_until_a_moment_past_or_coming(tmp_path: Path) -> None:
    machine = agentfsm.load_machine(write(tmp_path, 'until: "{{ at }}"'))
    past = asyncio.run(machine.run({"at": "2020-01-01T00:00:00Z"}))
    assert past.status == "succeeded"
    started = time.perf_counter()
    soon = asyncio.run(machine.run({"at": time.time() + 0.3}))
    assert soon.status == "succeeded" and time.perf_counter() - started >= 0.25
    wrong = asyncio.run(machine.run({"at": "next tuesday"}))
    assert wrong.status == "failed" and wrong.error["type"] == "template.error"
    assert "'next tuesday' is not a timestamp" in wrong.error["message"]


def test_a_long_delay_suspends_and_the_worker_resumes_it_when_due(tmp_path: Path) -> None:
    path = write(tmp_path, 'timeout: "{{ seconds }}"', inline="0.1s")

    def statuses() -> dict[str, str]:
        return {run["run_id"]: run["status"] for run in json.loads(agentfsm_cmd("runs", "--json", cwd=tmp_path).stdout)}

    # One run far from due and one due soon: however slow the machine, the worker leaves the first waiting
    # and takes the second once its moment has passed.
    far = json.loads(agentfsm_cmd("run", path, "-i", "seconds=600", "--json", cwd=tmp_path).stdout)
    first = agentfsm_cmd("run", path, "-i", "seconds=0.5", "--json", cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    view = json.loads(first.stdout)
    assert view["status"] == "waiting" and view["waiting"]["events"] == []
    early = agentfsm_cmd("worker", "--once", cwd=tmp_path)
    assert early.returncode == 0, early.stderr
    assert statuses()[far["run_id"]] == "waiting"
    time.sleep(max(0.0, view["waiting"]["deadline"] - time.time()) + 0.05)
    later = agentfsm_cmd("worker", "--once", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    assert statuses() == {far["run_id"]: "waiting", view["run_id"]: "succeeded"}
    shown = agentfsm_cmd("run", path, "-i", "seconds=600", cwd=tmp_path)
    assert shown.returncode == 3
    assert "is waiting in state 'pause' until" in shown.stderr and "agentfsm worker" in shown.stderr
