"""The trace of a recorded run: every event in order, the full LLM and tool exchanges, large values once."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

from agentfsm.service.runs import Runs

MACHINES = Path(__file__).resolve().parent.parent / "machines"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def kinds(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["kind"] for entry in entries]


def events(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries without memory samples (how many a run takes depends on time: tests/test_stats.py)."""
    return [entry for entry in entries if entry["kind"] != "memory"]


def test_a_run_that_waits_and_resumes_has_one_ordered_trace(runs: Runs) -> None:
    started = run(runs.start(MACHINES / "approval.yaml", {"topic": "tracing"}))
    assert started.status == "waiting"
    everything = run(runs.trace(started.run_id))
    first = events(everything)
    assert kinds(first) == ["run_started", "state_entered", "llm_call", "transition", "state_exited", "checkpoint",
                            "wait", "run_ended"]
    llm = first[2]
    assert llm["request"]["messages"] == [{"role": "user",
                                           "content": "Write a one-line announcement about tracing."}]
    assert llm["reply"]["text"] == "Announcing tracing: faster, simpler, ready today."
    assert (llm["binding"], llm["model"], llm["finish_reason"]) == ("writer", "scripted", "stop")
    assert llm["prompt_tokens"] == 6 and llm["completion_tokens"] == 6 and llm["duration"] >= 0
    assert first[5]["name"] == "review" and first[6]["events"] == ["approved", "rejected"]
    assert {entry["run_id"] for entry in first} == {started.run_id}
    assert [entry["seq"] for entry in everything] == list(range(1, len(everything) + 1))

    run(runs.send(started.run_id, "approved", {"by": "ada"}))
    resumed = run(runs.trace(started.run_id, after=len(everything)))
    later = events(resumed)
    assert kinds(later) == ["run_started", "state_entered", "event_delivered", "transition", "state_exited",
                            "state_entered", "state_exited", "run_ended"]
    assert later[0]["resumed"] is True and later[0]["seq"] > len(everything)
    assert later[2]["event"] == "approved" and later[2]["data"] == {"by": "ada"}
    assert later[-1]["status"] == "succeeded"

    made = run(runs.rollback(started.run_id, "review"))
    rollback = run(runs.trace(started.run_id, after=resumed[-1]["seq"]))
    assert rollback == [{**rollback[0], "kind": "rollback", "branch": made.branch, "parent": "main",
                         "point": made.point, "state": "review"}]


def test_an_error_caught_and_a_failing_tool_call_are_traced(runs: Runs, tmp_path: Path) -> None:
    machine = write(tmp_path / "caught.yaml", """\
        agentfsm: 1
        name: caught
        tools:
          calc: {builtin: calculator}
        initial: compute
        states:
          compute:
            type: tool
            tool: calc
            args: {expression: "1 / 0"}
            catch: [{errors: ["*"], to: recover, as: problem}]
            next: done
          recover:
            type: final
            output: "recovered"
          done:
            type: final
        """)
    result = run(runs.start(machine))
    entries = run(runs.trace(result.run_id))
    tool = next(entry for entry in entries if entry["kind"] == "tool_call")
    assert tool["tool"] == "calc" and tool["arguments"] == {"expression": "1 / 0"}
    assert tool["error"]["type"] == "tool.error" and tool["result"] is None
    error = next(entry for entry in entries if entry["kind"] == "error")
    assert error["caught_by"] == "recover" and error["state"] == "compute"
    transition = next(entry for entry in entries if entry["kind"] == "transition")
    assert (transition["target"], transition["caught"], transition["rule"]) == ("recover", True, None)


def test_a_long_prompt_is_stored_once_however_many_calls_repeat_it(runs: Runs, db: Path, tmp_path: Path) -> None:
    machine = write(tmp_path / "rounds.yaml", """\
        agentfsm: 1
        name: rounds
        inputs:
          document: {type: string}
        llms:
          brain:
            provider: scripted
            replies:
              - {match: 'Result of calc: 3', reply: 'done'}
              - {match: 'Result of calc: 2', tool_calls: [{name: calc, arguments: {expression: '1 + 2'}}]}
              - {tool_calls: [{name: calc, arguments: {expression: '1 + 1'}}]}
        tools:
          calc: {builtin: calculator}
        initial: read
        states:
          read:
            type: llm
            llm: brain
            tools: [calc]
            prompt: "Summarise: {{ document }}"
            save: summary
            next: done
          done:
            type: final
        """)
    document = "lorem ipsum " * 5000  # 60 KB
    result = run(runs.start(machine, {"document": document}))
    assert result.status == "succeeded", result.error
    calls = [entry for entry in run(runs.trace(result.run_id)) if entry["kind"] == "llm_call"]
    assert len(calls) == 3
    assert [len(call["request"]["messages"]) for call in calls] == [1, 3, 5]
    assert all(call["request"]["messages"][0]["content"] == f"Summarise: {document}" for call in calls)
    assert calls[1]["request"]["messages"][1]["tool_calls"][0]["arguments"] == {"expression": "1 + 1"}
    assert calls[1]["request"]["messages"][2]["tool_results"][0]["content"] == "2"
    raw = [entry for entry in run(runs.trace(result.run_id, resolved=False)) if entry["kind"] == "llm_call"]
    refs = {call["request"]["messages"][0]["content"]["$ref"] for call in raw}
    assert len(refs) == 1
    with closing(sqlite3.connect(db)) as kept:
        sizes = kept.execute("SELECT LENGTH(data) FROM payloads WHERE run_id = ?", (result.run_id,)).fetchall()
        trace_bytes = kept.execute("SELECT SUM(LENGTH(entries)) FROM trace WHERE run_id = ?",
                                   (result.run_id,)).fetchone()[0]
    assert len(sizes) == 1 and sizes[0][0] > len(document)
    assert trace_bytes < 20_000  # three calls of a 60 KB prompt: the text is kept once, in the payload
