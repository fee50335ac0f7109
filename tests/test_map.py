"""`type: map`: one child run per item, at most `max_concurrency` at once, outputs in item order; tolerated
failures stand in the results, more fail the map (`map.failed`, catchable); a crash mid-map resumes only the
unfinished items; a rollback before the map starts fresh children; validate and diagram see the inner machine."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path

import pytest

import agentfsm
from tests import crash_harness as harness
from tests.mermaid import parse_mermaid_many
from tests.test_cli import agentfsm_cmd

MACHINES = Path(__file__).resolve().parent / "machines" / "map"
INLINE = """\
    agentfsm: 1
    name: inline
    inputs:
      words: {type: array, required: true}
      suffix: {type: string, default: "!"}
    initial: each
    states:
      each:
        type: map
        items: "{{ words }}"
        max_concurrency: 0
        inputs: {mark: "{{ suffix }}{{ index }}"}
        initial: shout
        states:
          shout: {type: set, set: {loud: "{{ item | upper }}{{ mark }}"}, next: done}
          done: {type: final, output: "{{ loud }}"}
        save: loud
        next: end
      end: {type: final, output: "{{ loud }}"}
"""


def copy_machines(folder: Path) -> Path:
    for name in ("fanout.yaml", "summarize.yaml", "items.py"):
        shutil.copy(MACHINES / name, folder / name)
    return folder / "fanout.yaml"


def logged(log: Path, key: str) -> list[int]:
    return [json.loads(line)[key] for line in log.read_text().splitlines()] if log.exists() else []


def test_outputs_come_in_item_order_with_bounded_concurrency(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAP_LOG", str(tmp_path / "calls.jsonl"))
    machine = agentfsm.load_machine(copy_machines(tmp_path))
    docs = [" a ", "b", " c", "d ", "e"]
    result = asyncio.run(machine.run({"docs": docs, "delay": 0.03}))
    assert result.status == "succeeded", result.error
    assert result.output == ["A#0", "B#1", "C#2", "D#3", "E#4"]
    assert max(logged(tmp_path / "calls.jsonl", "running")) == 2  # max_concurrency: 2


def test_an_inline_machine_sees_its_item_index_and_inputs_all_at_once(tmp_path: Path) -> None:
    path = tmp_path / "inline.yaml"
    path.write_text(textwrap.dedent(INLINE), encoding="utf-8")
    result = asyncio.run(agentfsm.load_machine(path).run({"words": ["x", "y", "z"]}))
    assert result.output == ["X!0", "Y!1", "Z!2"]
    empty = asyncio.run(agentfsm.load_machine(path).run({"words": []}))
    assert empty.output == []


def test_tolerated_failures_stand_in_the_results_and_more_fail_the_map(tmp_path: Path) -> None:
    machine = agentfsm.load_machine(copy_machines(tmp_path))
    tolerated = asyncio.run(machine.run({"docs": ["a", "bad", "c", "d"]}))  # 25% of 4: one may fail
    assert tolerated.status == "succeeded"
    assert tolerated.output[0] == "A#0" and tolerated.output[2:] == ["C#2", "D#3"]
    assert tolerated.output[1]["error"]["type"] == "tool.error"
    assert "item 1 is bad" in tolerated.output[1]["error"]["message"]
    failed = asyncio.run(machine.run({"docs": ["bad", "b", "bad", "d"]}))
    assert failed.status == "failed" and failed.context.state == "too_many"  # map.failed was caught
    assert failed.error["message"].startswith("2 of 4 items failed (tolerated: 1)")


def test_a_crash_mid_map_resumes_only_the_unfinished_items(tmp_path: Path) -> None:
    fanout = copy_machines(tmp_path)
    store, log = tmp_path / "runs.db", tmp_path / "calls.jsonl"
    env = harness.environment({"MAP_LOG": str(log), "PYTHONPATH": str(tmp_path)})
    docs = json.dumps([f"d{i}" for i in range(6)])
    killed = harness.spawn_and_kill(["run", fanout, "--store", harness.store_url(store), "-i", f"docs={docs}",
                                     "-i", "delay=0.25"], delay=0.45, anchor="first line", env=env)
    assert killed.killed, killed.show()
    run_id = harness.RUN_LINE.match(killed.stderr.splitlines()[0]).group("id")
    before = logged(log, "index")
    finished = children_status(store, run_id)
    done_before = {name for name, status in finished.items() if status == "succeeded"}
    assert done_before and len(done_before) < 6, killed.show()
    resumed = harness.agentfsm("resume", run_id, "--store", harness.store_url(store), "--json", env=env)
    assert resumed.returncode == 0, resumed.show()
    assert json.loads(resumed.stdout)["output"] == [f"D{i}#{i}" for i in range(6)]
    after = logged(log, "index")
    for name in done_before:  # a finished item's tool is never called again
        index = int(name.split("[")[1].rstrip("]"))
        assert after.count(index) == before.count(index) == 1, (name, before, after)
    assert sorted(set(after)) == list(range(6))


def children_status(store: Path, run_id: str) -> dict[str, str]:
    from agentfsm import Runs

    async def read() -> dict[str, str]:
        async with Runs(harness.store_url(store)) as runs:
            return {row.child_name or "": row.status for row in await runs.list(parent=run_id)}

    return asyncio.run(read())


def child_runs(store: Path, run_id: str) -> list[str]:
    from agentfsm import Runs

    async def read() -> list[str]:
        async with Runs(harness.store_url(store)) as runs:
            return [row.id for row in await runs.list(parent=run_id)]

    return asyncio.run(read())


def test_a_rollback_before_the_map_starts_fresh_children(tmp_path: Path) -> None:
    fanout = copy_machines(tmp_path)
    store = harness.store_url(tmp_path / "runs.db")
    first = agentfsm_cmd("run", fanout, "--store", store, "-i", 'docs=["a","b"]', "--json", cwd=tmp_path)
    run_id = json.loads(first.stdout)["run_id"]
    children = child_runs(tmp_path / "runs.db", run_id)
    again = agentfsm_cmd("rollback", run_id, "--to", "prepare", "--resume", "--store", store, "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    after = child_runs(tmp_path / "runs.db", run_id)
    assert len(children) == 2 and len(after) == 4 and set(children) < set(after)  # two fresh child runs
    assert json.loads(again.stdout)["output"] == ["A#0", "B#1"]


def test_validate_checks_the_inner_machine_in_its_own_file_and_the_diagram_shows_the_map(tmp_path: Path) -> None:
    fanout = copy_machines(tmp_path)
    (tmp_path / "summarize.yaml").write_text(
        (tmp_path / "summarize.yaml").read_text().replace("next: trim", "next: trimm"), encoding="utf-8")
    problems = agentfsm.validate_file(fanout).problems
    found = [(Path(p.file).name, p.line, p.code) for p in problems if p.severity == "error"]
    assert ("summarize.yaml", 11, "unknown-target") in found  # located in the inner file itself
    assert ("fanout.yaml", 17, "nested-machine") in found  # and at the map that runs it
    inline = tmp_path / "inline.yaml"
    inline.write_text(textwrap.dedent(INLINE), encoding="utf-8")
    drawn = agentfsm_cmd("diagram", inline, cwd=tmp_path)
    [parsed] = parse_mermaid_many([drawn.stdout])
    assert parsed["ok"], parsed
    assert parsed["states"]["s_each"] == "each (map, all at once)"
    inside = {parsed["states"][child] for child, parent in parsed["parents"].items() if parent == "s_each"}
    assert inside == {"shout", "done"}  # the inline machine drawn inside the map


READER = """\
    agentfsm: 1
    name: reader
    inputs:
      words: {type: array, required: true}
    tools:
      read: {builtin: json_query}
    initial: each
    states:
      each:
        type: map
        tool: read
        args: {data: {list: "{{ words }}"}, path: list}
        select: "{{ item ~ index }}"
        batch_size: 3
        batch_bytes: 12
        initial: join
        states:
          join: {type: final, output: "{{ item | join('+') }}"}
        save: joined
        next: end
      end: {type: final, output: "{{ joined }}"}
"""


@pytest.mark.parametrize(("words", "expected"), [
    (["a", "b", "c", "d"], ["a0+b1+c2", "d3"]),  # each selected, then three at most
    (["abcd", "efgh", "i", "jklmnopqrstu"], ["abcd0", "efgh1+i2", "jklmnopqrstu3"]),  # 12 bytes at most, or alone
])
def test_a_tool_gives_the_items_select_shapes_them_and_batches_group_them(tmp_path: Path, words: list[str],
                                                        expected: list[str]) -> None:
    path = tmp_path / "reader.yaml"
    path.write_text(textwrap.dedent(READER), encoding="utf-8")
    result = asyncio.run(agentfsm.load_machine(path).run({"words": words}))
    assert result.status == "succeeded", result.error
    assert result.output == expected
