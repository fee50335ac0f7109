"""A team's message bus and shared memory: messages, versions, locks, contention, events, bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Runs
from agentfsm.runtime.ids import new_run_id
from agentfsm.spec.loader import validate_file

ROOT = Path(__file__).resolve().parent.parent
COUNTER = ROOT / "tests" / "machines" / "composition" / "counter_team.yaml"
GROUP_CHAT = ROOT / "machines" / "teams" / "group_chat.yaml"


def team(folder: Path, agents: str, *, options: str = "") -> Path:
    path = folder / "team.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: t
        initial: go
        states:
          go:
            type: team
            strategy: collaborative
        """) + textwrap.indent(textwrap.dedent(options), "    ") + "    agents:\n"
        + textwrap.indent(textwrap.dedent(agents), "      ")
        + "    save: out\n    next: done\n  done: {type: final, output: \"{{ out }}\"}\n", encoding="utf-8")
    return path


def test_twenty_agents_incrementing_one_counter_with_cas_end_at_twenty(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            done = await runs.start(COUNTER)
            assert done.output == 20
            children = await runs.list(parent=done.run_id)
            assert len(children) == 20 and {child.status for child in children} == {"succeeded"}
            reads = [sum(row.state == "read" for row in await runs.history(child.id)) for child in children]
            assert max(reads) > 1  # steps committed together: most cas attempts met a conflict and read again
            assert sorted(child.output for child in children) == list(range(1, 21))

    asyncio.run(scenario())
    assert asyncio.run(agentfsm.run(COUNTER)).output == 20  # in memory too


def test_the_group_chat_ends_when_the_critic_approves_and_cancels_the_writer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            done = await runs.start(GROUP_CHAT)
            assert done.output["approved"] is True
            assert [line["from"] for line in done.output["conversation"]] == ["writer", "critic", "writer", "critic"]
            children = {child.child_name: child.status for child in await runs.list(parent=done.run_id)}
            # `until:` held after the critic's approval: the team ended there, the agents still going were cancelled
            assert children == {"critic": "cancelled", "writer": "cancelled"}

    asyncio.run(scenario())


def test_a_lock_held_by_a_stuck_agent_expires_and_the_holder_is_cancelled(tmp_path: Path) -> None:
    agents = """\
        holder:
          initial: take
          states:
            take: {type: memory, op: lock, key: k, ttl: 0.4s, next: sit}
            sit: {type: receive, timeout: 30s, next: end}
            end: {type: final}
        other:
          initial: write
          states:
            write:
              type: memory
              op: set
              key: k
              value: mine
              retry: {errors: [memory.locked], interval: 0.1, backoff_rate: 1, max_attempts: 20}
              next: finish
            finish: {type: memory, op: set, key: finished, value: true, next: end}
            end: {type: final}
        """
    path = team(tmp_path, agents, options='memory: {k: theirs, finished: false}\nuntil: "memory.finished"\n')

    async def scenario() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            started = time.monotonic()
            done = await runs.start(path)
            assert done.output["memory"] == {"k": "mine", "finished": True}
            assert time.monotonic() - started >= 0.35  # the write waited for the lock to expire
            children = {child.child_name: child.status for child in await runs.list(parent=done.run_id)}
            assert children == {"holder": "cancelled", "other": "cancelled"}  # until: held after other's write
            other = next(child for child in await runs.list(parent=done.run_id) if child.child_name == "other")
            assert (await runs.history(other.id))[0].retries >= 1

    asyncio.run(scenario())


def test_receive_filters_by_sender_and_topic_and_times_out(tmp_path: Path) -> None:
    agents = """\
        a:
          initial: one
          states:
            one: {type: send, to: b, topic: noise, content: ignore me, next: two}
            two: {type: send, to: all, topic: news, content: "hello {{ 40 + 2 }}", next: end}
            end: {type: final}
        b:
          initial: get
          states:
            get: {type: receive, from: a, topic: news, save: got, timeout: 5s, next: again}
            again:
              type: receive
              topic: news
              timeout: 0.2s
              transitions: [{event: timeout, to: end}, {to: end}]
            end: {type: final, output: "{{ got.content }} / {{ event.name }}"}
        """
    out = asyncio.run(agentfsm.run(team(tmp_path, agents))).output
    assert out["results"] == {"a": None, "b": "hello 42 / timeout"}


def test_bus_and_memory_events_reach_the_parents_observers(tmp_path: Path) -> None:
    agents = """\
        a:
          initial: one
          states:
            one: {type: send, to: b, content: hi, next: two}
            two: {type: memory, op: set, key: said, value: hi, next: end}
            end: {type: final}
        b:
          initial: get
          states:
            get: {type: receive, timeout: 5s, next: end}
            end: {type: final}
        """
    seen: list[Any] = []

    class Watch:
        def on_message_sent(self, *, event: Any) -> None:
            seen.append(("sent", event.sender, event.recipient, event.content))

        def on_message_received(self, *, event: Any) -> None:
            seen.append(("received", event.agent))

        def on_memory_written(self, *, event: Any) -> None:
            seen.append(("memory", event.agent, event.op, event.key, event.value, event.version))

    asyncio.run(agentfsm.run(team(tmp_path, agents), observers=[Watch()]))
    assert sorted(seen, key=str) == sorted([("sent", "a", "b", "hi"), ("received", "b"),
                                            ("memory", "a", "set", "said", "hi", 1)], key=str)


def test_sending_to_an_unknown_agent_is_a_validate_error_and_a_runtime_error(tmp_path: Path) -> None:
    agents = """\
        a:
          initial: one
          states:
            one: {type: send, to: zed, content: hi, next: end}
            end: {type: final}
        """
    path = team(tmp_path, agents)
    report = validate_file(path)
    assert [(p.code, p.line) for p in report.errors] == [("unknown-agent", 12)]
    path.write_text(path.read_text().replace("to: zed", 'to: "{{ \'zed\' }}"'))
    result = asyncio.run(agentfsm.run(path))
    assert result.status == "failed" and result.error["type"] == "bus.unknown_agent"


def test_memory_outside_a_team_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "lonely.yaml"
    path.write_text("agentfsm: 1\nname: lonely\ninitial: a\nstates:\n"
                    "  a: {type: memory, op: get, key: x, next: b}\n  b: {type: final}\n")
    result = asyncio.run(agentfsm.run(path))
    assert result.status == "failed" and result.error["type"] == "team.none"


def test_two_processes_resuming_one_team_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team paused mid-way, resumed by two processes at once: one runs it, the other is refused."""
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    for name in ("crash_team.yaml", "worker.yaml", "steps.py"):
        (tmp_path / name).write_text((ROOT / "tests" / "machines" / "composition" / name).read_text())
    log = tmp_path / "calls.jsonl"
    env = {"COMPOSITION_LOG": str(log), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}

    async def pause_midway() -> str:
        async with Runs(store) as runs:
            run_id = new_run_id()
            task = asyncio.ensure_future(runs.start(tmp_path / "crash_team.yaml", run_id=run_id))
            while not log.exists() or len(log.read_text().splitlines()) < 6:
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return run_id

    monkeypatch.setenv("COMPOSITION_LOG", str(log))
    run_id = asyncio.run(pause_midway())
    before = log.read_text().splitlines()
    argv = [sys.executable, "-m", "agentfsm", "resume", run_id, "--store", store, "--json"]
    processes = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outcomes = sorted((process.wait(60), process.stderr.read() if process.stderr else "") for process in processes)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    refused = outcomes[1][1].strip().splitlines()
    assert len(refused) == 1 and refused[0].startswith("error: run ") and run_id in refused[0], outcomes
    after = log.read_text().splitlines()[len(before):]
    calls = [(entry["agent"], entry["step"]) for entry in map(json.loads, after)]
    done_before = [(e["agent"], e["step"]) for e in map(json.loads, before)]
    assert len(calls) == len(set(calls))  # no agent step ran twice after the pause
    assert set(calls) | set(done_before) == {(agent, step) for agent in "abcde" for step in (1, 2, 3)}
