"""Behaviour of YAML machines run through `agentfsm.load_machine` / `agentfsm.run`.

Every machine here is written to `tmp_path`; Python tools and states live in modules
written next to the machine file (its folder is searched first for `module:attribute`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import InputError, RunResult, StepEnded

MACHINES = Path(__file__).resolve().parent.parent / "machines"

_module_numbers = itertools.count()


def write_machine(tmp_path: Path, text: str, name: str = "machine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_module(tmp_path: Path, source: str) -> str:
    """A Python module next to the machine file, under a fresh name (imported modules are cached)."""
    name = f"user_module_{next(_module_numbers)}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


def run_file(path: Path | agentfsm.StateMachine, inputs: dict[str, Any] | None = None, **options: Any) -> RunResult:
    return asyncio.run(agentfsm.run(path, inputs, **options))


def visited(result: RunResult) -> list[str]:
    """The states the run entered, in order: each transition's source, then the state a finished run ended in
    (its last step takes no transition)."""
    path = [record.from_state for record in result.context.history]
    return path + [result.context.state] if result.status in ("succeeded", "failed") else path


class StepHooks:
    def __init__(self) -> None:
        self.records: list[StepEnded] = []

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.records.append(event)


def assert_one_line_failure(result: RunResult, error_type: str, state: str) -> dict[str, Any]:
    assert result.status == "failed"
    error = result.error
    assert error is not None
    assert error["type"] == error_type, error
    assert error["state"] == state, error
    assert error["message"] and "\n" not in error["message"]
    assert "Traceback" not in error["message"]
    assert result.context.metadata["status"] == "failed"
    return error


# -- templates -------------------------------------------------------------------------------


def test_single_expression_templates_keep_their_type(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: types
        context: {n: 1, items: [1, 2, 3], config: {depth: 2}}
        initial: compute
        states:
          compute:
            type: set
            set:
              n: "{{ n + 1 }}"
              same_items: "{{ items }}"
              label: "n={{ n }}"
              padded: " {{ n }}"
              total: "{{ items | sum }}"
              half: "{{ n / 2 }}"
              flag: "{{ n > 0 }}"
              nothing: "{{ none }}"
              mapping: "{{ config }}"
              nested: {deep: ["{{ n * 10 }}", "literal", 3]}
              joined: "{{ n }}{{ n }}"
            next: done
          done:
            type: final
            output: {n: "{{ n }}", items: "{{ same_items }}", text: "{{ label }}"}
        """)
    result = run_file(path)
    assert result.status == "succeeded", result.error
    data = result.context.data
    assert data["n"] == 2 and type(data["n"]) is int
    assert data["same_items"] == [1, 2, 3]
    assert data["label"] == "n=1"
    assert data["padded"] == " 1"
    assert data["total"] == 6
    assert data["half"] == 0.5
    assert data["flag"] is True
    assert data["nothing"] is None
    assert data["mapping"] == {"depth": 2}
    assert data["nested"] == {"deep": [10, "literal", 3]}
    assert data["joined"] == "11"
    assert result.output == {"n": 2, "items": [1, 2, 3], "text": "n=1"}


def test_set_assignments_are_simultaneous(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: swap
        context: {a: 1, b: 2, n: 5}
        initial: swap
        states:
          swap:
            type: set
            set:
              a: "{{ b }}"
              b: "{{ a }}"
              n: "{{ n + 1 }}"
              old_n: "{{ n }}"
            next: done
          done: {type: final, output: ["{{ a }}", "{{ b }}", "{{ n }}", "{{ old_n }}"]}
        """)
    result = run_file(path)
    assert result.output == [2, 1, 6, 5]


def test_a_templated_value_is_rendered_once_and_never_again(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: no-double-render
        inputs:
          text: {type: string, required: true}
        llms:
          model: {provider: scripted, replies: ["{{ 7*7 }}"]}
        initial: ask
        states:
          ask:
            type: llm
            llm: model
            prompt: "Say something"
            save: reply
            next: copy
          copy:
            type: set
            set:
              copied_reply: "{{ reply }}"
              copied_text: "{{ text }}"
              sentence: "reply was {{ reply }} and text was {{ text }}"
            next: done
          done:
            type: final
            output: {reply: "{{ reply }}", text: "{{ text }}", sentence: "{{ sentence }}"}
        """)
    result = run_file(path, {"text": "{{ run.id }} {% raw %}"})
    assert result.status == "succeeded", result.error
    assert result.output == {
        "reply": "{{ 7*7 }}",
        "text": "{{ run.id }} {% raw %}",
        "sentence": "reply was {{ 7*7 }} and text was {{ run.id }} {% raw %}",
    }
    assert result.context.get("copied_reply") == "{{ 7*7 }}"
    assert result.context.get("copied_text") == "{{ run.id }} {% raw %}"


def test_data_in_a_prompt_is_sent_literally(tmp_path: Path) -> None:
    path = write_machine(tmp_path, r"""
        agentfsm: 1
        name: echo
        inputs:
          text: {type: string, required: true}
        llms:
          parrot:
            provider: scripted
            replies:
              - {match: 'Repeat: (.*)', reply: 'You said \1'}
        initial: ask
        states:
          ask:
            type: llm
            llm: parrot
            prompt: "Repeat: {{ text }}"
            save: reply
            next: done
          done: {type: final, output: "{{ reply }}"}
        """)
    result = run_file(path, {"text": "{{ 6*7 }}"})
    assert result.output == "You said {{ 6*7 }}"


def test_templates_see_run_event_and_result(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: names
        initial: first
        states:
          first:
            type: set
            set: {where: "{{ run.state }}@{{ run.step }}", run_id: "{{ run.id }}", first_event: "{{ event.name }}"}
            next: second
          second:
            type: set
            set: {second_event: "{{ event.name }}"}
            next: done
          done: {type: final, output: "{{ where }}"}
        """)
    result = run_file(path)
    assert result.output == "first@1"
    assert result.context.get("run_id") == result.run_id
    assert result.context.get("first_event") is None  # no event led into the initial state
    assert result.context.get("second_event") == "done"


# -- transitions -----------------------------------------------------------------------------


def test_first_matching_rule_wins(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: first-wins
        inputs:
          n: {type: integer, required: true}
        initial: route
        states:
          route:
            type: choice
            transitions:
              - {when: "n > 10", to: big}
              - {when: "n > 5", to: medium}
              - {when: "n > 0", to: small}
              - {to: other}
          big: {type: final, output: big}
          medium: {type: final, output: medium}
          small: {type: final, output: small}
          other: {type: final, output: other}
        """)
    assert [run_file(path, {"n": n}).output for n in (50, 7, 1, -3)] == ["big", "medium", "small", "other"]


def test_event_filtering_with_emit_guards_on_result_and_event_and_rule_set(tmp_path: Path) -> None:
    module = write_module(tmp_path, """\
        def classify(text):
            kind = "question" if text.endswith("?") else "statement"
            return {"kind": kind, "score": len(text)}
        """)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: emit
        inputs:
          text: {{type: string, required: true}}
        tools:
          classify: {{python: "{module}:classify"}}
        initial: classify
        states:
          classify:
            type: tool
            tool: classify
            args: {{text: "{{{{ text }}}}"}}
            emit: "{{{{ result.kind }}}}"
            transitions:
              - {{event: statement, to: route, set: {{how: "statement of {{{{ result.score }}}}"}}}}
              - event: question
                when: "result.score > 10"
                to: route
                set: {{how: "long {{{{ event.name }}}}"}}
              - {{event: [question, other], to: route, set: {{how: short question}}}}
          route:
            type: choice
            transitions:
              - {{when: "event.name == 'question'", to: answer}}
              - {{to: note}}
          answer: {{type: final, output: "answer: {{{{ how }}}}"}}
          note: {{type: final, output: "note: {{{{ how }}}}"}}
        """)
    statement = run_file(path, {"text": "It rains."})
    assert statement.output == "note: statement of 9"
    assert statement.context.history[0].trigger == "statement"
    assert run_file(path, {"text": "Is it raining today?"}).output == "answer: long question"
    assert run_file(path, {"text": "Why?"}).output == "answer: short question"


def test_llm_emit_routes_on_a_parsed_reply(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: llm-emit
        llms:
          judge:
            provider: scripted
            replies: ['{"verdict": "reject", "why": "too short"}']
        initial: judge
        states:
          judge:
            type: llm
            llm: judge
            prompt: Judge this.
            parse: json
            save: judgement
            emit: "{{ result.verdict }}"
            transitions:
              - {event: accept, to: accepted}
              - {event: reject, to: rejected}
          accepted: {type: final, output: accepted}
          rejected: {type: final, output: "rejected: {{ judgement.why }}"}
        """)
    result = run_file(path)
    assert result.output == "rejected: too short"
    assert result.context.history[0].trigger == "reject"


def test_an_unmatched_event_is_transition_none(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: unmatched
        llms:
          judge: {provider: scripted, replies: [maybe]}
        initial: judge
        states:
          judge:
            type: llm
            llm: judge
            prompt: Judge this.
            emit: "{{ result }}"
            transitions:
              - {event: "yes", to: done}
              - {event: "no", to: done}
          done: {type: final}
        """)
    error = assert_one_line_failure(run_file(path), "transition.none", "judge")
    assert "'maybe'" in error["message"]


def test_next_is_unconditional(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: next
        initial: a
        states:
          a: {type: set, set: {trail: "{{ ['a'] }}"}, next: b}
          b: {type: set, set: {trail: "{{ trail + ['b'] }}"}, next: c}
          c: {type: final, output: "{{ trail + ['c'] }}"}
        """)
    result = run_file(path)
    assert result.output == ["a", "b", "c"]
    assert visited(result) == ["a", "b", "c"]


def test_on_enter_and_on_exit_actions(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: actions
        context: {visits: 0, log: []}
        initial: work
        states:
          work:
            type: set
            on_enter:
              - set: {visits: "{{ visits + 1 }}", log: "{{ log + ['enter ' ~ visits] }}"}
            set: {log: "{{ log + ['work ' ~ visits] }}"}
            on_exit:
              - set: {log: "{{ log + ['exit ' ~ visits] }}"}
              - set: {left: true}
            transitions:
              - {when: "visits < 2", to: work}
              - {to: done}
          done:
            type: final
            on_enter:
              - set: {log: "{{ log + ['final'] }}"}
            output: "{{ log }}"
        """)
    result = run_file(path)
    assert result.status == "succeeded", result.error
    assert result.output == ["enter 0", "work 1", "exit 1", "enter 1", "work 2", "exit 2", "final"]
    assert result.context.get("left") is True


# -- retry, catch, timeout with Python tools -------------------------------------------------

TOOLS = """\
    import asyncio
    import pathlib

    CALLS = {"flaky": 0}

    def flaky(failures):
        CALLS["flaky"] += 1
        if CALLS["flaky"] <= failures:
            raise RuntimeError(f"flaky failure {CALLS['flaky']}")
        return {"attempts": CALLS["flaky"]}

    async def async_double(n):
        await asyncio.sleep(0)
        return n * 2

    def sync_double(n):
        return n * 2

    def boom(reason):
        raise ValueError(reason)

    async def slow(seconds, marker):
        pathlib.Path(marker + ".started").write_text("started")
        try:
            await asyncio.sleep(seconds)
            pathlib.Path(marker + ".finished").write_text("finished")
        except asyncio.CancelledError:
            pathlib.Path(marker + ".cancelled").write_text("cancelled")
            raise
        finally:
            pathlib.Path(marker + ".finally").write_text("finally")
        return "slept"

    def mark(path):
        pathlib.Path(path).write_text("ran")
        return "marked"
    """


def test_sync_and_async_python_tools(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: tools
        tools:
          sync_double: {{python: "{module}:sync_double"}}
          async_double: {{python: "{module}:async_double"}}
        initial: first
        states:
          first:
            type: tool
            tool: sync_double
            args: {{n: 5}}
            save: x
            next: second
          second:
            type: tool
            tool: async_double
            args: {{n: "{{{{ x }}}}"}}
            save: y
            next: done
          done: {{type: final, output: "{{{{ y }}}}"}}
        """)
    hooks = StepHooks()
    result = run_file(path, observers=[hooks])
    assert str(tmp_path) not in sys.path  # the folder is searched while importing, not left on the path
    assert result.status == "succeeded", result.error
    assert result.output == 20
    assert result.context.get("x") == 10
    first_call = hooks.records[0].calls[0]
    assert first_call.kind == "tool" and first_call.binding == "sync_double" and first_call.args == {"n": 5}


def test_retry_in_yaml_until_the_tool_succeeds(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: retry
        tools:
          flaky: {{python: "{module}:flaky"}}
        initial: call
        states:
          call:
            type: tool
            tool: flaky
            args: {{failures: 2}}
            save: outcome
            retry: {{errors: [tool.error], interval: 10ms, max_attempts: 3, backoff_rate: 1.5, max_delay: 20ms}}
            next: done
          done: {{type: final, output: "{{{{ outcome }}}}"}}
        """)
    machine = agentfsm.load_machine(path)
    rule = machine.states["call"].retry[0]
    assert (rule.errors, rule.interval, rule.max_attempts, rule.backoff_rate, rule.max_delay, rule.jitter) == (
        ("tool.error",), 0.01, 3, 1.5, 0.02, "none",
    )
    hooks = StepHooks()
    result = run_file(machine, observers=[hooks])
    assert result.status == "succeeded", result.error
    assert result.output == {"attempts": 3}
    assert hooks.records[0].retries == 2


def test_retry_exhausted_then_catch_saves_the_error_object(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: catch
        tools:
          flaky: {{python: "{module}:flaky"}}
        initial: call
        states:
          call:
            type: tool
            tool: flaky
            args: {{failures: 100}}
            retry: {{errors: [tool], interval: 10ms, max_attempts: 2}}
            catch:
              - {{errors: [timeout], to: wrong}}
              - {{errors: ["*"], to: recover, as: problem}}
            next: wrong
          wrong: {{type: fail, error: wrong route}}
          recover: {{type: final, output: "{{{{ problem.message }}}}"}}
        """)
    result = run_file(path)
    assert result.status == "succeeded", result.error
    assert result.output == "RuntimeError: flaky failure 3"
    assert result.context.get("problem") == {
        "type": "tool.error",
        "message": "RuntimeError: flaky failure 3",
        "state": "call",
        "detail": {"tool": "flaky", "retries": 2},
    }
    assert visited(result) == ["call", "recover"]


def test_catch_as_saves_type_message_state_detail(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: catch-as
        tools:
          boom: {{python: "{module}:boom"}}
        initial: call
        states:
          call:
            type: tool
            tool: boom
            args: {{reason: disk full}}
            catch: [{{errors: [tool.error], to: recover, as: err}}]
            next: done
          recover:
            type: set
            set: {{summary: "{{{{ err.state }}}} failed with {{{{ err.type }}}}"}}
            next: done
          done: {{type: final, output: "{{{{ summary }}}}"}}
        """)
    result = run_file(path)
    assert result.output == "call failed with tool.error"
    assert result.context.get("err") == {
        "type": "tool.error", "message": "ValueError: disk full", "state": "call", "detail": {"tool": "boom"},
    }


def test_timeout_in_yaml_cancels_an_async_tool(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    marker = tmp_path / "slow"
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: timeout
        tools:
          slow: {{python: "{module}:slow"}}
        initial: call
        states:
          call:
            type: tool
            tool: slow
            args: {{seconds: 5, marker: "{marker}"}}
            timeout: 50ms
            catch: [{{errors: [timeout], to: late, as: err}}]
            next: done
          late: {{type: final, output: "{{{{ err.type }}}} in {{{{ err.state }}}}"}}
          done: {{type: final, output: on time}}
        """)
    result = run_file(path)
    assert result.status == "succeeded", result.error
    assert result.output == "timeout in call"
    assert Path(f"{marker}.started").exists()
    assert Path(f"{marker}.cancelled").exists()
    assert Path(f"{marker}.finally").exists()
    assert not Path(f"{marker}.finished").exists()


def test_an_uncaught_timeout_fails_the_run(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    marker = tmp_path / "slow"
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: timeout-uncaught
        tools:
          slow: {{python: "{module}:slow"}}
        initial: call
        states:
          call:
            type: tool
            tool: slow
            args: {{seconds: 5, marker: "{marker}"}}
            timeout: 20ms
            retry: {{errors: [timeout], interval: 10ms, max_attempts: 1}}
            next: done
          done: {{type: final}}
        """)
    error = assert_one_line_failure(run_file(path), "timeout", "call")
    assert error["detail"] == {"retries": 1}
    assert Path(f"{marker}.cancelled").exists()


def test_python_state_subclass(tmp_path: Path) -> None:
    module = write_module(tmp_path, """\
        from agentfsm import Event, State

        class Counter(State):
            async def execute(self, context):
                context.set("count", context.get("count", 0) + 1)
                if context.get("count") < 3:
                    return None
                return Event("enough", result=context.get("count") * 100)

        class Jump(State):
            async def execute(self, context):
                return "landed"
        """)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: python-state
        initial: count
        states:
          count:
            type: python
            call: "{module}:Counter"
            max_visits: 5
            transitions:
              - {{event: enough, to: jump, set: {{score: "{{{{ result }}}}"}}}}
              - {{event: done, to: count}}
          jump:
            type: python
            call: "{module}:Jump"
          landed: {{type: final, output: "{{{{ score }}}}"}}
        """)
    machine = agentfsm.load_machine(path)
    assert isinstance(machine.states["count"], agentfsm.State)
    assert machine.states["count"].max_visits == 5
    result = run_file(machine)
    assert result.status == "succeeded", result.error
    assert result.output == 300
    assert result.context.get("count") == 3
    assert visited(result) == ["count", "count", "count", "jump", "landed"]


def test_python_state_gets_timeout_and_catch_from_yaml(tmp_path: Path) -> None:
    module = write_module(tmp_path, """\
        import asyncio
        from agentfsm import State

        class Sleepy(State):
            async def execute(self, context):
                await asyncio.sleep(5)
        """)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: python-timeout
        initial: nap
        states:
          nap:
            type: python
            call: "{module}:Sleepy"
            timeout: 20ms
            catch: [{{errors: [timeout], to: woke}}]
            next: woke
          woke: {{type: final, output: woke}}
        """)
    result = run_file(path)
    assert result.output == "woke"
    assert result.context.history[0].trigger == "timeout"


# -- run-time failures -----------------------------------------------------------------------


def test_an_undefined_variable_at_run_time_fails_the_run(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: undefined
        initial: early
        states:
          early:
            type: set
            set: {copy: "{{ later }}"}
            next: late
          late:
            type: set
            set: {later: 1}
            next: done
          done: {type: final}
        """)
    error = assert_one_line_failure(run_file(path), "template.error", "early")
    assert "later" in error["message"]


def test_a_missing_attribute_at_run_time_fails_the_run(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: missing-attribute
        context: {profile: {}}
        initial: greet
        states:
          greet:
            type: set
            set: {greeting: "Hello {{ profile.name }}"}
            next: done
          done: {type: final}
        """)
    error = assert_one_line_failure(run_file(path), "template.error", "greet")
    assert "name" in error["message"]


def test_a_guard_that_raises_is_a_template_error(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: bad-guard
        initial: route
        states:
          route:
            type: choice
            transitions:
              - {when: "1/0", to: done}
              - {to: done}
          done: {type: final}
        """)
    error = assert_one_line_failure(run_file(path), "template.error", "route")
    assert "ZeroDivisionError" in error["message"]
    assert "when" in error["message"]


def test_a_tool_that_raises_fails_the_run_with_tool_error(tmp_path: Path) -> None:
    module = write_module(tmp_path, TOOLS)
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: tool-raises
        tools:
          boom: {{python: "{module}:boom"}}
        initial: call
        states:
          call: {{type: tool, tool: boom, args: {{reason: "multi\\nline reason"}}, next: done}}
          done: {{type: final}}
        """)
    result = run_file(path)
    assert result.status == "failed"
    assert result.error["type"] == "tool.error"
    assert result.error["state"] == "call"
    assert result.error["message"].startswith("ValueError: multi")


def test_a_sandbox_escape_attempt_fails_the_run(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: escape
        initial: escape
        states:
          escape:
            type: set
            set: {classes: "{{ ''.__class__.__mro__ }}"}
            next: done
          done: {type: final, output: "{{ classes }}"}
        """)
    error = assert_one_line_failure(run_file(path), "template.error", "escape")
    assert "unsafe" in error["message"] or "sandbox" in error["message"]


def test_a_huge_power_in_a_template_fails_the_run(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: huge
        context: {n: 10}
        initial: huge
        states:
          huge:
            type: set
            set: {big: "{{ 2 ** (n ** n) }}", long: "{{ 'x' * 10 ** n }}"}
            next: done
          done: {type: final}
        """)
    assert_one_line_failure(run_file(path), "template.error", "huge")


CALCULATOR = """\
    agentfsm: 1
    name: calc
    inputs:
      expression: {type: string, required: true}
    tools:
      calc: {builtin: calculator}
    initial: compute
    states:
      compute:
        type: tool
        tool: calc
        args: {expression: "{{ expression }}"}
        save: value
        next: done
      done: {type: final, output: "{{ value }}"}
    """


@pytest.mark.parametrize("expression", ["__import__('os')", "2**10**10", "().__class__", "open('/etc/passwd')"])
def test_the_calculator_refuses_unsafe_expressions(tmp_path: Path, expression: str) -> None:
    path = write_machine(tmp_path, CALCULATOR)
    error = assert_one_line_failure(run_file(path, {"expression": expression}), "tool.error", "compute")
    assert error["message"].startswith("calculator: ")


def test_the_calculator_computes(tmp_path: Path) -> None:
    path = write_machine(tmp_path, CALCULATOR)
    assert run_file(path, {"expression": "17 * 23"}).output == 391
    assert run_file(path, {"expression": "(1 + 2) / 4"}).output == 0.75


def test_max_steps_in_yaml(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: forever
        context: {n: 0}
        max_steps: 7
        initial: tick
        states:
          tick:
            type: set
            set: {n: "{{ n + 1 }}"}
            transitions:
              - {when: "n < 1000", to: tick}
              - {to: done}
          done: {type: final}
        """)
    result = run_file(path)
    error = assert_one_line_failure(result, "limit.max_steps", "tick")
    assert "max_steps (7)" in error["message"]
    assert result.context.get("n") == 7


def test_max_visits_in_yaml(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: visits
        context: {n: 0}
        initial: tick
        states:
          tick:
            type: set
            max_visits: 4
            set: {n: "{{ n + 1 }}"}
            next: tock
          tock:
            type: choice
            transitions:
              - {when: "n < 1000", to: tick}
              - {to: done}
          done: {type: final}
        """)
    result = run_file(path)
    error = assert_one_line_failure(result, "limit.max_visits", "tick")
    assert "max_visits (4)" in error["message"]
    assert result.context.get("n") == 4


def test_a_fail_state_ends_the_run_with_its_rendered_error(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: fail
        inputs:
          who: {type: string, default: nobody}
        initial: check
        states:
          check:
            type: choice
            transitions:
              - {when: "who == 'admin'", to: done}
              - {to: denied}
          denied: {type: fail, error: "access denied for {{ who }}"}
          done: {type: final, output: ok}
        """)
    error = assert_one_line_failure(run_file(path, {"who": "eve"}), "fail", "denied")
    assert error["message"] == "access denied for eve"
    assert run_file(path, {"who": "admin"}).output == "ok"


# -- inputs ----------------------------------------------------------------------------------


def inputs_machine(tmp_path: Path) -> tuple[Path, Path]:
    module = write_module(tmp_path, TOOLS)
    marker = tmp_path / "ran.txt"
    path = write_machine(tmp_path, f"""\
        agentfsm: 1
        name: inputs
        inputs:
          task: {{type: string, required: true}}
          count: {{type: integer, default: 3}}
          ratio: {{type: number, default: 0.5}}
          tags: {{type: array, default: [a, b]}}
          mode: {{type: string, enum: [fast, slow], default: fast}}
          verbose: {{type: boolean}}
        context: {{marker: "{marker}"}}
        tools:
          mark: {{python: "{module}:mark"}}
        initial: mark
        states:
          mark:
            type: tool
            tool: mark
            args: {{path: "{{{{ marker }}}}"}}
            next: done
          done:
            type: final
            output: {{task: "{{{{ task }}}}", count: "{{{{ count }}}}", ratio: "{{{{ ratio }}}}", tags: "{{{{ tags }}}}",
                     mode: "{{{{ mode }}}}", verbose: "{{{{ verbose }}}}"}}
        """)
    return path, marker


def test_inputs_defaults_are_filled(tmp_path: Path) -> None:
    path, marker = inputs_machine(tmp_path)
    result = run_file(path, {"task": "t"})
    assert result.status == "succeeded", result.error
    assert marker.read_text() == "ran"
    assert result.output == {"task": "t", "count": 3, "ratio": 0.5, "tags": ["a", "b"], "mode": "fast", "verbose": None}
    given = run_file(path, {"task": "u", "count": 9, "ratio": 2, "tags": [], "mode": "slow", "verbose": True})
    assert given.output == {"task": "u", "count": 9, "ratio": 2, "tags": [], "mode": "slow", "verbose": True}


def test_input_defaults_are_not_shared_between_runs(tmp_path: Path) -> None:
    path, _ = inputs_machine(tmp_path)
    machine = agentfsm.load_machine(path)
    first = run_file(machine, {"task": "t"})
    first.context.data["tags"].append("mutated")
    second = run_file(machine, {"task": "t"})
    assert second.output["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "missing required input 'task'"),
        ({"count": 1}, "missing required input 'task'"),
        ({"task": 42}, "input 'task' must be a string"),
        ({"task": "t", "count": "3"}, "input 'count' must be an integer"),
        ({"task": "t", "count": True}, "input 'count' must be an integer"),
        ({"task": "t", "count": 1.5}, "input 'count' must be an integer"),
        ({"task": "t", "tags": "a,b"}, "input 'tags' must be an array"),
        ({"task": "t", "verbose": "yes"}, "input 'verbose' must be a boolean"),
        ({"task": "t", "mode": "medium"}, "input 'mode' must be one of"),
        ({"task": "t", "colour": "red"}, "unknown input 'colour'"),
    ],
)
def test_bad_inputs_raise_before_any_state_runs(tmp_path: Path, inputs: dict[str, Any], message: str) -> None:
    path, marker = inputs_machine(tmp_path)
    with pytest.raises(InputError) as info:
        run_file(path, inputs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


# -- the scripted provider -------------------------------------------------------------------


def collector_machine(tmp_path: Path, llm: dict[str, Any], calls: int = 3) -> Path:
    """An llm state called `calls` times; every reply is appended to `got`."""
    return write_machine(tmp_path, f"""\
        agentfsm: 1
        name: collector
        context: {{got: []}}
        llms:
          model: {json.dumps(llm)}
        initial: ask
        states:
          ask:
            type: llm
            llm: model
            prompt: "Question {{{{ got | length }}}}"
            save: reply
            catch: [{{errors: [llm], to: out_of_replies, as: err}}]
            next: collect
          collect:
            type: set
            set: {{got: "{{{{ got + [reply] }}}}"}}
            next: route
          route:
            type: choice
            transitions:
              - {{when: "got | length < {calls}", to: ask}}
              - {{to: done}}
          out_of_replies: {{type: final, output: "{{{{ err }}}}"}}
          done: {{type: final, output: "{{{{ got }}}}"}}
        """)


def test_scripted_plain_replies_are_used_in_order(tmp_path: Path) -> None:
    path = collector_machine(tmp_path, {"provider": "scripted", "replies": ["one", "two", "three"]})
    machine = agentfsm.load_machine(path)
    assert run_file(machine).output == ["one", "two", "three"]
    # every run starts at the beginning of the script
    assert run_file(machine).output == ["one", "two", "three"]


def test_scripted_replies_exhausted_is_llm_error(tmp_path: Path) -> None:
    path = collector_machine(tmp_path, {"provider": "scripted", "replies": ["one", "two"]})
    result = run_file(path)
    assert result.output["type"] == "llm.error"
    assert result.output["state"] == "ask"
    assert result.context.get("got") == ["one", "two"]


def test_scripted_replies_exhausted_uncaught_fails_the_run(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: mute
        llms:
          model: {provider: scripted}
        initial: ask
        states:
          ask: {type: llm, llm: model, prompt: hi, next: done}
          done: {type: final}
        """)
    error = assert_one_line_failure(run_file(path), "llm.error", "ask")
    assert "model" in error["message"]


def test_scripted_rules_by_state_match_and_times(tmp_path: Path) -> None:
    path = write_machine(tmp_path, r"""
        agentfsm: 1
        name: rules
        inputs:
          name: {type: string, required: true}
        llms:
          model:
            provider: scripted
            replies:
              - {state: second, reply: from the second-state rule}
              - {match: 'my name is (\w+) and I am (?P<age>\d+)', reply: 'Hi \1, you are \g<age>', times: 1}
              - plain reply
              - {match: 'unused (.*)', reply: 'never'}
        initial: first
        states:
          first:
            type: llm
            llm: model
            prompt: "Hello, my name is {{ name }} and I am 42."
            save: a
            next: second
          second:
            type: llm
            llm: model
            prompt: "Hello, my name is {{ name }} and I am 42."
            save: b
            next: third
          third:
            type: llm
            llm: model
            prompt: "Hello, my name is {{ name }} and I am 42."
            save: c
            next: done
          done: {type: final, output: ["{{ a }}", "{{ b }}", "{{ c }}"]}
        """)
    result = run_file(path, {"name": "Ada"})
    assert result.status == "succeeded", result.error
    assert result.output == ["Hi Ada, you are 42", "from the second-state rule", "plain reply"]


def test_scripted_rule_reply_mapping_becomes_json_text(tmp_path: Path) -> None:
    path = write_machine(tmp_path, r"""
        agentfsm: 1
        name: mapping-reply
        llms:
          model:
            provider: scripted
            replies:
              - {match: 'compute (\d+)', reply: {action: calc, input: '\1 + 1'}}
        initial: ask
        states:
          ask: {type: llm, llm: model, prompt: "please compute 41", save: raw, next: parsed}
          parsed: {type: llm, llm: model, prompt: "please compute 41", parse: json, save: obj, next: done}
          done: {type: final, output: ["{{ raw }}", "{{ obj }}"]}
        """)
    raw, obj = run_file(path).output
    assert json.loads(raw) == {"action": "calc", "input": "41 + 1"}
    assert obj == {"action": "calc", "input": "41 + 1"}


REPLIES: list[Any] = [{"state": "ask", "match": "Question 1", "reply": "rule for question 1"}, "first", "second"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("replies.yaml", "replies:\n  - {state: ask, match: 'Question 1', reply: rule for question 1}\n"
                         "  - first\n  - second\n"),
        ("replies.yml", "- {state: ask, match: 'Question 1', reply: rule for question 1}\n- first\n- second\n"),
        ("replies.json", json.dumps({"replies": REPLIES})),
        ("replies.json", json.dumps(REPLIES)),
    ],
    ids=["yaml-mapping", "yaml-list", "json-mapping", "json-list"],
)
def test_scripted_replies_file(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    path = collector_machine(tmp_path, {"provider": "scripted", "replies": ["inline"], "replies_file": name})
    # rules first; plain replies in order, the inline ones before the file's
    assert run_file(path).output == ["inline", "rule for question 1", "first"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- !!python/object/apply:os.system ['echo pwned']\n", "yaml-tag"),
        ("replies:\n  - {reply: x, unknown_key: 1}\n", "replies.yaml: 0"),
        ("replies: [a, b\n", "yaml-syntax"),
    ],
)
def test_a_bad_replies_file_is_a_binding_error_at_load(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "replies.yaml").write_text(text, encoding="utf-8")
    path = collector_machine(tmp_path, {"provider": "scripted", "replies_file": "replies.yaml"})
    with pytest.raises(agentfsm.BindingError, match=message) as info:
        agentfsm.load_machine(path)
    assert "llms.model.replies_file" in str(info.value)


def test_a_missing_replies_file_is_a_binding_error(tmp_path: Path) -> None:
    path = collector_machine(tmp_path, {"provider": "scripted", "replies_file": "nowhere.yaml"})
    with pytest.raises(agentfsm.BindingError, match="replies_file"):
        agentfsm.load_machine(path)


def test_scripted_usage_counts_tokens_per_binding(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: usage
        llms:
          small: {provider: scripted, model: tiny-1, replies: [alpha beta, gamma]}
          other: {provider: scripted, replies: [one two three four]}
        initial: a
        states:
          a: {type: llm, llm: small, system: be brief, prompt: one two three, next: b}
          b: {type: llm, llm: small, prompt: four five, next: c}
          c: {type: llm, llm: other, prompt: six, next: done}
          done: {type: final}
        """)
    hooks = StepHooks()
    result = run_file(path, observers=[hooks])
    assert result.status == "succeeded", result.error
    assert result.usage == {
        "small": {"calls": 2, "prompt_tokens": 5 + 2, "completion_tokens": 2 + 1},
        "other": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 4},
    }
    first_call = hooks.records[0].calls[0]
    assert first_call.kind == "llm" and first_call.model == "tiny-1"
    assert (first_call.prompt_tokens, first_call.completion_tokens) == (5, 2)


def test_parse_json_accepts_code_fences_and_parse_lines_strips_markers(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: parsing
        llms:
          model:
            provider: scripted
            replies:
              - |
                Sure! Here it is:
                ```json
                {"answer": 42, "items": [1, 2]}
                ```
              - |
                1. Find the numbers
                2) Add them
                - Check the sum

                * Report it
                  • Celebrate
                plain line
        initial: as_json
        states:
          as_json: {type: llm, llm: model, prompt: json please, parse: json, save: data, next: as_lines}
          as_lines: {type: llm, llm: model, prompt: lines please, parse: lines, save: steps, next: done}
          done: {type: final, output: {answer: "{{ data.answer }}", steps: "{{ steps }}"}}
        """)
    result = run_file(path)
    assert result.status == "succeeded", result.error
    assert result.context.get("data") == {"answer": 42, "items": [1, 2]}
    assert result.output == {
        "answer": 42,
        "steps": ["Find the numbers", "Add them", "Check the sum", "Report it", "Celebrate", "plain line"],
    }


def test_invalid_json_is_llm_parse_caught_by_a_catch_rule(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: bad-json
        llms:
          model: {provider: scripted, replies: ["{not json at all"]}
        initial: ask
        states:
          ask:
            type: llm
            llm: model
            prompt: json please
            parse: json
            save: data
            catch: [{errors: [llm.parse], to: recover, as: err}]
            next: done
          recover: {type: final, output: "{{ err.type }}: {{ err.detail.reply }}"}
          done: {type: final, output: parsed}
        """)
    result = run_file(path)
    assert result.status == "succeeded", result.error
    assert result.output == "llm.parse: {not json at all"
    assert result.context.get("err")["state"] == "ask"
    assert "data" not in result.context.data


def test_a_json_scalar_is_not_accepted_by_parse_json(tmp_path: Path) -> None:
    path = write_machine(tmp_path, """\
        agentfsm: 1
        name: scalar-json
        llms:
          model: {provider: scripted, replies: ["42"]}
        initial: ask
        states:
          ask: {type: llm, llm: model, prompt: json please, parse: json, next: done}
          done: {type: final}
        """)
    assert_one_line_failure(run_file(path), "llm.parse", "ask")


# -- the shipped examples --------------------------------------------------------------------

EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    "hello.yaml": {"name": "Ada"},
    "react_agent.yaml": {"task": "What is 17 * 23?"},
    "react_native_tools.yaml": {"task": "What is 17 * 23?"},
}

_SAMPLE_VALUES = {"string": "What is 2 + 3?", "integer": 2, "number": 2.5, "boolean": True, "array": [],
                  "object": {}, "any": "sample"}


def example_files() -> list[Path]:
    return sorted(p for p in MACHINES.glob("*.yaml") if not p.name.endswith((".replies.yaml", ".test.yaml")))


def test_the_known_examples_are_shipped() -> None:
    names = {p.name for p in example_files()}
    assert {"hello.yaml", "react_agent.yaml", "react_native_tools.yaml"} <= names


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_every_example_loads_and_runs_offline(path: Path) -> None:
    machine = agentfsm.load_machine(path)
    inputs = EXAMPLE_INPUTS.get(path.name)
    if inputs is None:  # an example added later: fill its required inputs with sample values
        spec = machine.source.spec  # type: ignore[attr-defined]
        inputs = {}
        for name, declared in spec.inputs.items():
            if declared.required:
                inputs[name] = declared.enum[0] if declared.enum else _SAMPLE_VALUES[declared.type]
    result = run_file(machine, inputs)
    if result.status == "waiting":  # an example waiting for a person stops at its wait (run on in test_wait_state)
        assert result.waiting is not None
        assert machine.source.spec.states[result.waiting["state"]].type == "wait"  # type: ignore[attr-defined]
        return
    assert result.status == "succeeded", result.error
    assert result.output is not None


def test_hello_example() -> None:
    path = MACHINES / "hello.yaml"
    assert run_file(path).output == "Hello, world!"
    assert run_file(path, {"name": "Ada"}).output == "Hello, Ada!"


def test_react_agent_answers_arithmetic_without_planning() -> None:
    result = run_file(MACHINES / "react_agent.yaml", {"task": "What is 17 * 23?"})
    assert result.status == "succeeded", result.error
    assert str(result.output) == "391"
    path = visited(result)
    assert "planning" not in path
    assert "acting" in path
    assert result.context.get("observations") == [391]
    assert result.usage["brain"]["calls"] == 2


def test_react_native_tools_answers_through_a_native_tool_call() -> None:
    result = run_file(MACHINES / "react_native_tools.yaml", {"task": "What is 17 * 23?"})
    assert result.status == "succeeded", result.error
    assert str(result.output) == "391"
    assert result.usage["brain"]["calls"] == 2


@pytest.mark.parametrize(
    "task", ["Make a plan, then tell me what 17 * 23 is", "In three steps: what is 17 * 23?", "PLAN: 17 * 23"]
)
def test_react_agent_plans_when_asked_for_a_plan_or_steps(task: str) -> None:
    result = run_file(MACHINES / "react_agent.yaml", {"task": task})
    assert result.status == "succeeded", result.error
    assert str(result.output) == "391"
    path = visited(result)
    assert path[:2] == ["initial", "planning"]
    assert path.count("planning") == 1
    plan = result.context.get("plan")
    assert isinstance(plan, list) and len(plan) == 3
    assert all(not step[0].isdigit() for step in plan)  # list markers stripped


def test_react_agent_without_arithmetic_still_finishes() -> None:
    result = run_file(MACHINES / "react_agent.yaml", {"task": "Who wrote Hamlet?"})
    assert result.status == "succeeded", result.error
    assert "planning" not in visited(result)
    assert "acting" not in visited(result)


def test_react_agent_requires_a_task() -> None:
    with pytest.raises(InputError, match="task"):
        run_file(MACHINES / "react_agent.yaml", {})
