"""`agentfsm stats RUN` and `stats --machine NAME`: figures added up from what runs stored, checked against the run's
own history and usage; a team's agents each and in total; memory sampled while the run advanced; bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentfsm import Runs
from agentfsm.service.stats import machine_stats, percentile, run_stats, summarize
from agentfsm.service.views import machine_stats_json, stats_json

ROOT = Path(__file__).resolve().parent.parent

BUSY = """\
agentfsm: 1
name: busy
llms:
  brain: {provider: scripted, model: gpt-4o-mini, replies: ["2 + 2", "3 * 3", "oops("]}
tools:
  calc: {builtin: calculator}
initial: ask
states:
  ask: {type: llm, llm: brain, prompt: "expr", save: expr, next: compute}
  compute:
    type: tool
    tool: calc
    args: {expression: "{{ expr }}"}
    save: value
    retry: {errors: [tool], max_attempts: 1, interval: 1ms}
    catch: [{errors: [tool], to: recover, as: err}]
    transitions: [{when: "run.step < 6", to: ask}, {to: done}]
  recover: {type: set, set: {value: 0}, next: done}
  done: {type: final, output: "{{ value }}"}
"""


def cli(*args: object, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args), "--store", str(store)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any], list[Any]]:
    """One stored run of BUSY: (store, run id, its stats JSON, its history)."""
    folder = tmp_path_factory.mktemp("busy")
    path = folder / "busy.yaml"
    path.write_text(BUSY, encoding="utf-8")
    store = folder / "runs.db"

    async def go() -> tuple[str, dict[str, Any], list[Any], Any]:
        async with Runs(str(store)) as runs:
            result = await runs.start(path)
            return (result.run_id, stats_json(await run_stats(runs.store, result.run_id)),
                    await runs.history(result.run_id), result.usage)
    run_id, shown, history, usage = asyncio.run(go())
    shown["usage"] = usage
    return store, run_id, shown, history


def test_states_and_transitions_agree_with_the_history(busy: tuple[Path, str, dict[str, Any], list[Any]]) -> None:
    _, _, shown, history = busy
    assert shown["steps"] == len(history) == 8
    for state in ("ask", "compute", "recover", "done"):
        durations = [row.duration for row in history if row.state == state]
        one = shown["states"][state]
        assert one["visits"] == len(durations)
        assert one["total"] == pytest.approx(sum(durations))
        assert one["max"] == pytest.approx(max(durations))
        assert one["p50"] == pytest.approx(percentile(sorted(durations), 50))
    taken = {(one["source"], one["target"], one["event"]): one["count"] for one in shown["transitions"]}
    assert taken == {("ask", "compute", "done"): 3, ("compute", "ask", "done"): 2,
                     ("compute", "recover", "tool.error"): 1, ("recover", "done", "done"): 1}
    assert shown["errors"] == {"tool.error": 1}
    assert shown["retries"] == {"total": 1, "by_state": {"compute": 1}}


def test_llm_and_tool_calls_with_their_tokens_cost_and_failures(
        busy: tuple[Path, str, dict[str, Any], list[Any]]) -> None:
    _, _, shown, _ = busy
    brain, usage = shown["llm"]["brain"], shown["usage"]["brain"]
    assert brain["models"] == {"gpt-4o-mini": 3} and brain["calls"] == usage["calls"] == 3
    assert (brain["prompt_tokens"], brain["completion_tokens"]) == (usage["prompt_tokens"],
                                                                    usage["completion_tokens"])
    expected = (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.6) / 1e6
    assert brain["cost"] == pytest.approx(expected) and shown["cost"] == pytest.approx(expected)
    assert brain["latency"]["count"] == 3 and brain["latency"]["max"] > 0
    # three calls, one of them retried, both attempts of that one failed
    assert shown["tools"]["calc"]["calls"] == 4 and shown["tools"]["calc"]["failures"] == 2


def test_memory_is_sampled_while_the_run_advances(busy: tuple[Path, str, dict[str, Any], list[Any]]) -> None:
    _, _, shown, _ = busy
    memory = shown["memory"]
    assert len(memory["samples"]) >= 2  # when the run started and when it ended
    assert all(sample["rss"] > 1_000_000 for sample in memory["samples"])
    assert memory["peak"] >= memory["last"] > 1_000_000


def test_stats_prints_tables_and_json(busy: tuple[Path, str, dict[str, Any], list[Any]]) -> None:
    store, run_id, shown, _ = busy
    completed = cli("stats", run_id[-8:], store=store)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith(f"run {run_id}  busy  succeeded, 8 steps in ")
    assert any(line.split()[:2] == ["compute", "3"] for line in lines)
    assert any(line.split()[:4] == ["brain", "gpt-4o-mini", "3", "0"] for line in lines)
    assert "errors: tool.error x1; retries: 1" in lines
    printed = cli("stats", run_id, "--json", store=store)
    assert json.loads(printed.stdout)["transitions"] == shown["transitions"]


TEAM = ROOT / "machines" / "teams" / "sequential.yaml"


def test_a_team_run_has_each_agent_and_a_total(tmp_path: Path) -> None:
    async def go() -> tuple[dict[str, Any], Any]:
        async with Runs(str(tmp_path / "runs.db")) as runs:
            result = await runs.start(TEAM)
            return stats_json(await run_stats(runs.store, result.run_id)), result.usage
    shown, usage = asyncio.run(go())
    assert [child["agent"] for child in shown["children"]] == ["researcher", "writer", "editor"]
    assert all(child["steps"] == 2 and child["llm"]["brain"]["calls"] == 1 for child in shown["children"])
    total = shown["total"]
    assert total["runs"] == 4 and total["steps"] == 2 + 3 * 2 and total["llm_calls"] == 3
    assert total["tokens"]["total"] == usage["brain"]["prompt_tokens"] + usage["brain"]["completion_tokens"]
    assert total["cost"] is None and total["unpriced"] == ["brain"]  # a scripted model has no price


def test_a_machine_s_runs_together(tmp_path: Path) -> None:
    path = tmp_path / "busy.yaml"
    path.write_text(BUSY, encoding="utf-8")
    failing = tmp_path / "failing.yaml"  # the same machine name; its calculator cannot be caught
    failing.write_text(BUSY.replace("catch: [{errors: [tool], to: recover, as: err}]", ""), encoding="utf-8")
    store = tmp_path / "runs.db"

    async def go() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        async with Runs(str(store)) as runs:
            results = [await runs.start(path), await runs.start(path), await runs.start(failing)]
            everything = machine_stats_json(await machine_stats(runs.store, "busy"))
            future = machine_stats_json(await machine_stats(runs.store, "busy", since=60, now=4e9))
            return everything, future, results
    shown, none_since, results = asyncio.run(go())
    assert shown["runs"] == 3 and shown["statuses"] == {"succeeded": 2, "failed": 1}
    assert shown["success_rate"] == pytest.approx(2 / 3)
    assert shown["mean_steps"] == pytest.approx(sum(result.steps for result in results) / 3)
    assert shown["llm_calls"] == sum(result.usage["brain"]["calls"] for result in results)
    tokens = sum(r.usage["brain"]["prompt_tokens"] + r.usage["brain"]["completion_tokens"] for r in results)
    assert shown["tokens"]["total"] == tokens and shown["cost"] > 0 and shown["duration"]["count"] == 3
    assert none_since["runs"] == 0 and none_since["success_rate"] is None
    completed = cli("stats", "--machine", "busy", "--since", "7d", store=store)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("machine busy: 3 runs in the last 7d (") and "success rate: 66.7%" in completed.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["stats", "nosuchrun"], "error: no run 'nosuchrun' in "),
    (["stats", "--machine", "nobody"], "error: no runs of machine 'nobody' in "),
    (["stats", "--machine", "busy", "--since", "soon"], "error: --since: 'soon' is not a duration"),
    (["stats"], "error: stats: give a RUN or --machine NAME (one of them)"),
    (["stats", "abcd", "--since", "7d"], "error: --since goes with --machine NAME"),
])
def test_bad_input_is_one_line_and_exit_2(busy: tuple[Path, str, dict[str, Any], list[Any]], args: list[str],
                                          message: str) -> None:
    store = busy[0]
    before = store.read_bytes()
    completed = cli(*args, store=store)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith(message) and len(completed.stderr.splitlines()) == 1, completed.stderr
    assert completed.stdout == "" and store.read_bytes() == before


def test_percentiles_interpolate_between_ranks() -> None:
    assert summarize([]) == {"count": 0, "total": 0.0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    shown = summarize([float(value) for value in range(1, 101)])
    assert (shown["p50"], shown["p95"], shown["max"], shown["mean"]) == (50.5, pytest.approx(95.05), 100.0, 50.5)
