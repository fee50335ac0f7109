"""Edge cases found in review: each test pins a behaviour a user relies on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import Event, InputError, State, StateMachine


def write(tmp_path: Path, text: str, name: str = "machine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(path: Path, inputs: dict[str, Any] | None = None) -> agentfsm.RunResult:
    return asyncio.run(agentfsm.run(path, inputs or {}))


MUTATOR = """
from agentfsm import State

class Mutator(State):
    async def execute(self, context):
        context.set("partial", context.get("partial", 0) + 1)
        raise RuntimeError("half done")

def half_done(**args):
    raise RuntimeError("no")
"""


def test_a_failed_attempt_leaves_no_trace_in_the_context(tmp_path: Path) -> None:
    (tmp_path / "mutator.py").write_text(MUTATOR)
    path = write(tmp_path, """\
        agentfsm: 1
        name: rollback
        context: {partial: 0}
        initial: work
        states:
          work:
            type: python
            call: "mutator:Mutator"
            retry: {errors: [state.error], interval: 1ms, max_attempts: 2}
            catch: [{errors: ["*"], to: done, as: problem}]
          done: {type: final, output: "{{ partial }}"}
        """)
    result = run(path)
    assert result.status == "succeeded"
    assert result.output == 0
    assert result.context.get("problem")["detail"] == {"retries": 2}


def test_a_failing_emit_does_not_save_the_result(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: emit
        llms:
          m: {provider: scripted, replies: ["hello"]}
        initial: ask
        states:
          ask:
            type: llm
            llm: m
            prompt: hi
            save: answer
            emit: "{{ result.missing }}"
            catch: [{errors: [template], to: done}]
            next: done
          done: {type: final, output: "{{ answer is defined }}"}
        """)
    assert run(path).output is False


SLOW_STATE = """
import asyncio
from agentfsm import State

class Slow(State):
    def __init__(self, name):
        super().__init__(name, timeout=0.05)

    async def execute(self, context):
        await asyncio.sleep(5)

class NotAsync(State):
    def execute(self, context):
        return None
"""


def test_a_python_state_keeps_its_own_settings_when_the_yaml_leaves_them_out(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW_STATE)
    path = write(tmp_path, """\
        agentfsm: 1
        name: slow
        initial: wait
        states:
          wait: {type: python, call: "slow:Slow", next: done}
          done: {type: final}
        """)
    result = run(path)
    assert result.error["type"] == "timeout"


def test_a_python_state_whose_execute_is_not_async_is_refused_at_run_start(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW_STATE)
    path = write(tmp_path, """\
        agentfsm: 1
        name: sync
        initial: work
        states:
          work: {type: python, call: "slow:NotAsync", next: done}
          done: {type: final}
        """)
    with pytest.raises(agentfsm.BindingError, match="must be 'async def'"):
        agentfsm.load_machine(path)


def test_inputs_are_checked_even_when_a_context_is_given() -> None:
    machine = agentfsm.load_machine(Path(__file__).parent.parent / "machines" / "hello.yaml")
    context = machine.new_context({})
    with pytest.raises(InputError, match="unknown input 'bogus'"):
        asyncio.run(machine.run({"bogus": 1}, context=context))


TOOLS = """
import asyncio, sys

async def cancels(**args):
    raise asyncio.CancelledError()

def exits(**args):
    sys.exit(0)

async def exits_async(**args):
    raise SystemExit(3)
"""


@pytest.mark.parametrize("tool", ["cancels", "exits", "exits_async"])
def test_a_tool_raising_cancelled_or_system_exit_is_a_tool_error(tmp_path: Path, tool: str) -> None:
    (tmp_path / "rude.py").write_text(TOOLS)
    path = write(tmp_path, f"""\
        agentfsm: 1
        name: rude
        tools:
          t: {{python: "rude:{tool}"}}
        initial: call
        states:
          call: {{type: tool, tool: t, next: done}}
          done: {{type: final}}
        """)
    completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "-q"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 1, completed.stderr
    assert "state 'call': tool.error" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_python_final_state_returning_a_value_makes_it_the_output() -> None:
    class Answer(State):
        async def execute(self, context):  # type: ignore[no-untyped-def]
            return "forty-two"

    class Start(State):
        async def execute(self, context):  # type: ignore[no-untyped-def]
            return Event("go")

    machine = StateMachine("answer")
    machine.add_state(Start("start"), initial=True)
    machine.add_state(Answer("answer"), final=True)
    machine.add_transition("start", "answer", "go")
    result = asyncio.run(machine.run())
    assert (result.status, result.output) == ("succeeded", "forty-two")


@pytest.mark.parametrize(
    ("fragment", "code"),
    [
        ("timeout: 0", "invalid-value"),
        ("timeout: .inf", "invalid-value"),
        ("retry: {interval: .nan}", "invalid-value"),
        ("transitions: [{event: [], to: done}]", "invalid-value"),
        ("catch: [{errors: [], to: done}]", "invalid-value"),
    ],
)
def test_values_that_would_hang_or_never_match_are_refused(tmp_path: Path, fragment: str, code: str) -> None:
    way_out = "" if fragment.startswith("transitions") else "\n    next: done"
    path = write(tmp_path, f"agentfsm: 1\nname: bad\ninitial: a\nstates:\n  a:\n    type: set\n    set: {{x: 1}}\n"
                           f"    {fragment}{way_out}\n  done: {{type: final}}\n")
    codes = {p.code for p in agentfsm.validate_file(path).errors}
    assert code in codes


@pytest.mark.parametrize("version", ["true", "1.0", "'1'"])
def test_only_the_integer_1_is_the_language_version(tmp_path: Path, version: str) -> None:
    path = write(tmp_path, f"agentfsm: {version}\nname: v\ninitial: a\nstates:\n  a: {{type: final}}\n")
    assert [p.code for p in agentfsm.validate_file(path).errors] == ["version"]


def test_a_scripted_reply_with_a_bad_group_reference_is_a_validation_error(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: s
        llms:
          m:
            provider: scripted
            replies: [{match: 'path (\\w+)', reply: 'C:\\dir \\2'}]
        initial: a
        states:
          a: {type: final}
        """)
    [problem] = agentfsm.validate_file(path).errors
    assert problem.code == "invalid-value"
    assert problem.message.startswith("llms.m.replies[0]: reply: bad escape")


def test_a_scripted_binding_forgets_a_run_when_it_ends(tmp_path: Path) -> None:
    machine = agentfsm.load_machine(Path(__file__).parent.parent / "machines" / "react_agent.yaml")
    for _ in range(3):
        asyncio.run(machine.run({"task": "What is 2 + 2?"}))
    client = machine.states["thinking"].client  # type: ignore[attr-defined]
    assert client._cursors == {}


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_not_numbers(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: n
        inputs: {x: {type: number, required: true}}
        initial: done
        states:
          done: {type: final, output: "{{ x }}"}
        """)
    completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "-i", f"x={raw}", "--json"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "input 'x' must be a number" in completed.stderr


def test_json_output_stays_valid_json_when_a_tool_returns_nan(tmp_path: Path) -> None:
    (tmp_path / "nan_tool.py").write_text("def nan(**args):\n    return float('nan')\n")
    path = write(tmp_path, """\
        agentfsm: 1
        name: nan
        tools: {t: {python: "nan_tool:nan"}}
        initial: call
        states:
          call: {type: tool, tool: t, save: value, next: done}
          done: {type: final, output: "{{ value }}"}
        """)
    completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "--json", "-q"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["output"] == "nan"


def test_a_nested_problem_names_the_rule_it_is_in(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: nested
        initial: a
        states:
          a:
            type: set
            set: {x: 1}
            transitions: [{when: "x > 0"}]
          done: {type: final}
        """)
    [problem] = agentfsm.validate_file(path).errors
    assert problem.message == "states.a.transitions[0] is missing the required field 'to'"


def test_an_input_default_must_fit_its_own_type_and_enum(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: defaults
        inputs:
          limit: {type: integer, default: three}
          mode: {type: string, enum: [fast, slow], default: medium}
          fine: {type: number, default: 2}
        initial: done
        states:
          done: {type: final}
        """)
    problems = [(p.code, p.line, p.message) for p in agentfsm.validate_file(path).errors]
    assert problems == [
        ("invalid-value", 4, 'inputs.limit.default: input \'limit\' must be an integer, got "three"'),
        ("invalid-value", 5, 'inputs.mode.default: input \'mode\' must be one of ["fast", "slow"], got "medium"'),
    ]


def test_a_problem_inside_a_single_mapping_retry_points_at_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: r
        initial: a
        states:
          a:
            type: set
            set: {x: 1}
            retry: {errors: [timeout], interval: 3x}
            next: done
          done: {type: final}
        """)
    [problem] = agentfsm.validate_file(path).errors
    assert (problem.code, problem.line, problem.column) == ("invalid-value", 8, 42)


def test_a_set_of_the_whole_context_saves_a_snapshot_and_the_context_object_stays_apart(tmp_path: Path) -> None:
    """`set: {snap: "{{ run.data }}"}` saves the context as it was (not the context inside itself); the key `$$`
    is kept by an `output:` and never shown by `run.data`."""
    path = write(tmp_path, """\
        agentfsm: 1
        name: snap
        extra_inputs: true
        initial: keep
        states:
          keep:
            type: set
            set: {snap: "{{ run.data }}", $$: {started_with: "{{ run.data }}"}}
            next: narrow
          narrow: {type: set, set: {}, output: "{{ [snap.a, run.data.snap.a] }}", next: done}
          done: {type: final, output: {data: "{{ run.data }}", kept: '{{ run["$$"].started_with }}'}}
        """)
    result = run(path, {"a": 5})
    assert result.status == "succeeded", result.error
    assert result.output == {"data": [5, 5], "kept": {"a": 5}}
    assert result.context.data == {"$": [5, 5], "$$": {"started_with": {"a": 5}}}


@pytest.mark.parametrize(("limit", "expected"), [("2s", "succeeded"), (0.05, "timeout"), ("soon", "template.error")])
def test_a_timeout_template_is_rendered_when_the_state_starts(tmp_path: Path, limit: Any, expected: str) -> None:
    path = write(tmp_path, """\
        agentfsm: 1
        name: bounded
        inputs: {limit: {type: any}}
        tools:
          slow: {python: "tests.asl.stubs:slow"}
        initial: work
        states:
          work: {type: tool, tool: slow, args: {input: {sleep: 0.2}}, timeout: "{{ limit }}", save: done, next: end}
          end: {type: final, output: "{{ done }}"}
        """)
    result = run(path, {"limit": limit})
    assert (result.status if expected == "succeeded" else result.error["type"]) == expected
