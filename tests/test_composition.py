"""Nested machines and parallel branches run as child runs: in memory, in a store, resumed, rolled back, checked."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Runs
from agentfsm.runtime.ids import new_run_id
from agentfsm.spec.loader import validate_file

def run(path: Path, inputs: dict[str, Any] | None = None) -> Any:
    return asyncio.run(agentfsm.run(path, inputs))


HERE = Path(__file__).resolve().parent / "machines" / "composition"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def parent(folder: Path, states: str, *, tools: str = "") -> Path:
    """A machine next to the composition fixtures (its python tools and worker.yaml resolve from there)."""
    text = "agentfsm: 1\nname: parent\n" + tools + "initial: start\nstates:\n" + textwrap.indent(
        textwrap.dedent(states), "  ")
    path = folder / "parent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the fixtures' worker machine and tools, and the log the tools append to."""
    for name in ("worker.yaml", "steps.py"):
        (tmp_path / name).write_text((HERE / name).read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("COMPOSITION_LOG", str(tmp_path / "calls.jsonl"))
    return tmp_path


def calls(folder: Path) -> list[tuple[str, int]]:
    log = folder / "calls.jsonl"
    if not log.exists():
        return []
    return [(entry["agent"], entry["step"]) for entry in map(json.loads, log.read_text().splitlines())]


NESTED = """\
    start:
      type: machine
      machine: worker.yaml
      inputs: {agent: "{{ who }}"}
      save: report
      next: inline
    inline:
      type: machine
      inputs: {text: "{{ report }}"}
      initial: shout
      states:
        shout: {type: set, set: {loud: "{{ text | upper }}"}, next: end}
        end: {type: final, output: "{{ loud }}"}
      save: loud
      next: done
    done: {type: final, output: {report: "{{ report }}", loud: "{{ loud }}"}}
"""


def test_a_nested_machine_runs_in_memory_and_in_a_store_as_a_child_run(folder: Path) -> None:
    path = parent(folder, NESTED)
    path.write_text(path.read_text().replace("initial: start", "inputs: {who: {type: string}}\ninitial: start"))
    result = run(path, {"who": "ada"})
    assert result.output == {"report": "ada did ada-3", "loud": "ADA DID ADA-3"}

    async def stored() -> None:
        async with Runs(f"sqlite:///{folder / 'runs.db'}") as runs:
            done = await runs.start(path, {"who": "bo"})
            assert done.output == {"report": "bo did bo-3", "loud": "BO DID BO-3"}
            children = await runs.list(parent=done.run_id)
            assert sorted((child.child_name, child.parent_step, child.status) for child in children) == [
                ("inline", 2, "succeeded"), ("start", 1, "succeeded")]
            worker = next(child for child in children if child.child_name == "start")
            assert [row.state for row in await runs.history(worker.id)] == ["one", "two", "three", "done"]
            steps = await runs.history(done.run_id)
            assert steps[0].calls[0]["kind"] == "child" and steps[0].calls[0]["run_id"] == worker.id
            # the inline child keeps its own source: it can be read and resumed alone
            inline = next(child for child in children if child.child_name == "inline")
            assert (await runs.machine(inline.id)).name == "inline"

    asyncio.run(stored())


def test_a_failing_child_raises_in_the_parent_where_retry_and_catch_apply(folder: Path) -> None:
    path = parent(folder, """\
        start:
          type: machine
          initial: go
          states:
            go: {type: tool, tool: flaky, args: {agent: a, failures: 2}, save: said, next: end}
            end: {type: final, output: "{{ said }}"}
          retry: {errors: [tool], interval: 0, max_attempts: 1}
          catch: [{errors: [tool], to: caught, as: problem}]
          save: said
          next: done
        done: {type: final, output: "{{ said }}"}
        caught: {type: final, output: "caught {{ problem.type }} from {{ problem.detail.child }}"}
        """, tools="tools:\n  flaky: {python: 'steps:flaky'}\n")
    assert run(path).output == "caught tool.error from start"  # one retry: still failing
    assert len(calls(folder)) == 2
    # a third attempt succeeds: each attempt was a fresh child run, counted in the store
    (folder / "calls.jsonl").unlink()
    path.write_text(path.read_text().replace("max_attempts: 1", "max_attempts: 2"))

    async def stored() -> None:
        async with Runs(f"sqlite:///{folder / 'runs.db'}") as runs:
            done = await runs.start(path)
            assert done.output == "a ok after 2 failures"
            children = await runs.list(parent=done.run_id)
            assert sorted(child.status for child in children) == ["failed", "failed", "succeeded"]

    asyncio.run(stored())


def test_a_fail_state_in_a_child_is_catchable_in_the_parent(folder: Path) -> None:
    path = parent(folder, """\
        start:
          type: machine
          initial: no
          states:
            no: {type: fail, error: "nothing to do"}
          catch: [{errors: [child.fail], to: caught, as: problem}]
          next: done
        done: {type: final}
        caught: {type: final, output: "{{ problem.message }}"}
        """)
    assert run(path).output == "'start' failed: nothing to do"


TOOLS = "tools:\n  flaky: {python: 'steps:flaky'}\n  work: {python: 'steps:work'}\n"
PARALLEL = """\
    start:
      type: parallel
      join: {join}
      branches:
        fast: {{machine: worker.yaml, inputs: {{agent: fast}}}}
        slow: {{machine: worker.yaml, inputs: {{agent: slow, delay: 5}}}}
        broken:
          inputs: {{pause: 0.3}}
          initial: first
          states:
            first: {{type: tool, tool: work, args: {{agent: pause, step: 0, delay: "{{{{ pause }}}}"}}, next: go}}
            go: {{type: tool, tool: flaky, args: {{agent: broken, failures: {failures}}}, next: end}}
            end: {{type: final, output: mended}}
      save: results
      catch: [{{errors: ["*"], to: caught, as: problem}}]
      next: done
    done: {{type: final, output: "{{{{ results }}}}"}}
    caught: {{type: final, output: "{{{{ problem.type }}}} in {{{{ problem.detail.child }}}}"}}
"""


def test_parallel_join_all_fails_at_the_first_failure_and_cancels_the_other_branches(folder: Path) -> None:
    path = parent(folder, PARALLEL.format(join="all", failures=1), tools=TOOLS)

    async def stored() -> None:
        async with Runs(f"sqlite:///{folder / 'runs.db'}") as runs:
            done = await runs.start(path)
            assert done.output == "tool.error in broken"
            children = {child.child_name: child.status for child in await runs.list(parent=done.run_id)}
            assert children == {"fast": "succeeded", "slow": "cancelled", "broken": "failed"}

    asyncio.run(stored())
    assert ("slow", 3) not in calls(folder)


def test_parallel_join_any_keeps_the_first_success_and_join_n_waits_for_n(folder: Path) -> None:
    tools = TOOLS
    path = parent(folder, PARALLEL.format(join="any", failures=5), tools=tools)
    result = run(path)
    assert result.output == {"fast": "fast did fast-3"}
    path = parent(folder, PARALLEL.format(join=2, failures=0), tools=tools)
    assert run(path).output == {"fast": "fast did fast-3", "broken": "mended"}
    path = parent(folder, PARALLEL.format(join=3, failures=5), tools=tools)
    assert run(path).output == "tool.error in broken"  # 3 of 3 can no longer succeed: the slow one is cancelled


def test_resuming_a_parent_reuses_finished_children_and_resumes_unfinished_ones(folder: Path) -> None:
    """An interrupted parent (its task cancelled mid-state) resumes: the finished branch is not run again."""
    path = parent(folder, """\
        start:
          type: parallel
          branches:
            quick: {machine: worker.yaml, inputs: {agent: quick}}
            long: {machine: worker.yaml, inputs: {agent: long, delay: 0.3}}
          save: results
          next: done
        done: {type: final, output: "{{ results }}"}
        """)

    async def scenario() -> None:
        async with Runs(f"sqlite:///{folder / 'runs.db'}") as runs:
            run_id = new_run_id()
            task = asyncio.ensure_future(runs.start(path, run_id=run_id))
            while ("long", 2) not in calls(folder):
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            children = {child.child_name: child.status for child in await runs.list(parent=run_id)}
            assert children == {"quick": "succeeded", "long": "paused"}
            result = await runs.resume(run_id)
            assert result.output == {"quick": "quick did quick-3", "long": "long did long-3"}
            first = await runs.history(run_id)
            assert [call["reused"] for call in first[0].calls] == [True, False]
            # rolled back before the state, the parent starts fresh children on the new branch
            made = await runs.rollback(run_id, 1)
            again = await runs.resume(made.run_id)
            assert again.output == result.output
            statuses = sorted(child.status for child in await runs.list(parent=run_id))
            assert statuses == ["succeeded"] * 4

    asyncio.run(scenario())
    seen = calls(folder)
    assert seen.count(("quick", 1)) == 2  # once per branch of the parent, never again on the resume
    assert seen.count(("long", 1)) == 2 and seen.count(("long", 3)) == 2


def test_usage_of_children_rolls_up_to_the_parent(folder: Path) -> None:
    path = parent(folder, """\
        start:
          type: machine
          initial: ask
          states:
            ask: {type: llm, llm: brain, prompt: "Say hi", save: said, next: end}
            end: {type: final, output: "{{ said }}"}
          save: said
          next: done
        done: {type: final, output: "{{ said }}"}
        """, tools="llms:\n  brain: {provider: scripted, replies: [hello there]}\n")
    result = run(path)
    assert result.output == "hello there"
    assert result.usage["brain"]["calls"] == 1 and result.usage["brain"]["completion_tokens"] > 0


def test_validate_checks_nested_machines_in_their_own_files(folder: Path) -> None:
    write(folder, "broken.yaml", """\
        agentfsm: 1
        name: broken
        initial: a
        states:
          a: {type: set, set: {x: 1}, next: nowhere}
        """)
    write(folder, "loop_a.yaml", """\
        agentfsm: 1
        name: loop-a
        initial: a
        states:
          a: {type: machine, machine: loop_b.yaml, next: end}
          end: {type: final}
        """)
    write(folder, "loop_b.yaml", """\
        agentfsm: 1
        name: loop-b
        initial: b
        states:
          b: {type: machine, machine: loop_a.yaml, next: end}
          end: {type: final}
        """)
    path = parent(folder, """\
        start: {type: machine, machine: broken.yaml, next: two}
        two: {type: machine, machine: missing.yaml, next: three}
        three:
          type: parallel
          join: 3
          branches:
            a: {machine: loop_a.yaml}
            b:
              initial: x
              states:
                x: {type: set, set: {y: "{{ undefined_name }}"}, next: nope}
          next: four
        four: {type: machine, next: done}
        done: {type: final}
        """)
    report = validate_file(path)
    found = {(Path(p.file).name, p.line, p.code) for p in report.problems}
    assert len(report.problems) == len(set(map(str, report.problems)))  # each problem once
    assert ("broken.yaml", 5, "unknown-target") in found
    assert ("parent.yaml", 5, "nested-machine") in found  # broken.yaml has errors, said where it is named
    assert ("missing.yaml", 1, "file-not-found") in found
    assert ("parent.yaml", 6, "nested-machine") in found
    assert ("parent.yaml", 9, "join-too-many") in found
    assert ("loop_b.yaml", 5, "nested-cycle") in found
    cycle = next(p for p in report.errors if p.code == "nested-cycle")
    assert "loop_a.yaml -> loop_b.yaml -> loop_a.yaml" in cycle.message
    assert ("parent.yaml", 15, "undefined-variable") in found  # inline states are checked in place
    assert ("parent.yaml", 15, "unknown-target") in found
    assert ("parent.yaml", 17, "nested-machine") in found  # neither a file nor inline states


def test_a_machine_including_itself_is_refused_when_run(folder: Path) -> None:
    path = write(folder, "self.yaml", """\
        agentfsm: 1
        name: self
        initial: a
        states:
          a: {type: machine, machine: self.yaml, next: end}
          end: {type: final}
        """)
    with pytest.raises(agentfsm.MachineFileError) as caught:
        agentfsm.load_machine(path)
    assert any("self.yaml -> self.yaml" in problem.message for problem in caught.value.problems)


def test_children_steps_reach_the_parents_observers(folder: Path) -> None:
    path = parent(folder, """\
        start:
          type: parallel
          branches:
            one: {machine: worker.yaml, inputs: {agent: one}}
            two: {machine: worker.yaml, inputs: {agent: two}}
          next: done
        done: {type: final}
        """)
    seen: list[Any] = []

    class Watch:
        def on_child_step(self, *, event: Any) -> None:
            seen.append((event.child, event.state))

        def on_child_ended(self, *, event: Any) -> None:
            seen.append((event.child, event.status))

    machine = agentfsm.load_machine(path)
    asyncio.run(machine.run(observers=[Watch()]))
    for name in ("one", "two"):
        assert [s for c, s in seen if c == name] == ["one", "two", "three", "done", "succeeded"]


def test_a_child_waiting_for_an_event_makes_its_parent_wait_and_gets_the_event_sent_to_the_parent(
        folder: Path) -> None:
    path = parent(folder, """\
        start:
          type: machine
          initial: ask
          states:
            ask: {type: wait, event: approve, save: said, next: end}
            end: {type: final, output: "approved by {{ said.who }}"}
          save: verdict
          next: done
        done: {type: final, output: "{{ verdict }}"}
        """)

    async def scenario() -> None:
        async with Runs(f"sqlite:///{folder / 'runs.db'}") as runs:
            first = await runs.start(path)
            assert first.status == "waiting" and first.waiting is not None
            assert first.waiting["events"] == ["approve"]
            [child] = await runs.list(parent=first.run_id)
            assert child.status == "waiting"
            done = await runs.send(first.run_id, "approve", {"who": "ada"})
            assert done is not None and done.output == "approved by ada"
            assert (await runs.get(child.id)).status == "succeeded"

    asyncio.run(scenario())
