"""The seed's agent states: the nine-state ReAct loop, run end to end offline with a scripted agent."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentfsm.bindings.calculator import evaluate
from agentfsm.runtime.loop import RunResult
from agentfsm.seed import (
    ActingState,
    FinalizingState,
    ObservingState,
    PlanningState,
    StateContext,
    StateMachine,
    StateType,
    create_agent_state_machine,
)
from agentfsm.seed.agent_text import parse_action, tool_result_json

from tests.mermaid import parse_mermaid

NINE = ["initial", "planning", "thinking", "acting", "observing", "reflecting", "error", "error_recovery",
        "finalizing"]


class ScriptedLLM:
    """Answers each prompt with the next scripted reply, and remembers the prompts."""

    def __init__(self, replies: Iterable[str]) -> None:
        self.replies: Iterator[str] = iter(replies)
        self.prompts: list[str] = []

    async def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        reply = next(self.replies, None)
        assert reply is not None, f"the script has no reply left for prompt {len(self.prompts)}"
        return reply


class Calculator:
    """A calculator tool: evaluates arithmetic, or fails as told for its first calls."""

    def __init__(self, failures: Iterable[Any] = ()) -> None:
        self.failures = list(failures)
        self.inputs: list[str] = []

    async def execute(self, tool_input: str) -> Any:
        self.inputs.append(tool_input)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return evaluate(tool_input)


@dataclass
class FakeAgent:
    llm: ScriptedLLM
    tools: dict[str, Any] = field(default_factory=lambda: {"calculator": Calculator()})


@dataclass
class Run:
    result: RunResult
    entered: list[str]

    @property
    def context(self) -> StateContext:
        return self.result.context

    @property
    def moves(self) -> list[tuple[str, str | None]]:
        return [(t.from_state, t.to_state) for t in self.context.history]


def run_agent(machine: StateMachine, data: dict[str, Any]) -> Run:
    """Run the machine on `data`, recording every state entered through the states' own entry callbacks."""
    entered: list[str] = []
    for state in machine.states.values():
        state.add_entry_callback(lambda context, name=state.name: entered.append(name))
    return Run(asyncio.run(machine.run(data)), entered)


def pairs(path: list[str]) -> list[tuple[str, str]]:
    return list(itertools.pairwise(path))


# -- the loop, end to end -----------------------------------------------------------------------------


def test_a_planned_task_follows_its_plan_with_the_tool_to_a_final_answer() -> None:
    llm = ScriptedLLM([
        "1. Multiply 17 by 23\n2. Add 1 to the product",
        "I should calculate the product first: calculator(17 * 23)",
        "Now the second step: calculator(391 + 1)",
        "Both steps are done.\nFinal Answer: 392",
    ])
    agent = FakeAgent(llm)
    run = run_agent(create_agent_state_machine(agent), {"task": "Make a plan: what is 17 * 23, plus 1?"})

    path = ["initial", "planning", "thinking", "acting", "observing", "thinking", "acting", "observing",
            "reflecting", "finalizing"]
    assert run.entered == path
    assert run.moves == pairs(path)
    assert run.result.status == "succeeded"
    assert run.result.output == "392" == run.context.get("final_answer")
    assert run.result.steps == len(path)  # the final state ran once, as a step and not a transition
    assert agent.tools["calculator"].inputs == ["17 * 23", "391 + 1"]
    assert run.context.get("plan") == ["Multiply 17 by 23", "Add 1 to the product"]
    assert run.context.get("current_step") == 1
    assert [entry["result"]["output"] for entry in run.context.get("history")] == [391, 392]
    second_thought = llm.prompts[2]
    assert "Current goal: Add 1 to the product" in second_thought and "Result: 391" in second_thought


def test_a_simple_task_thinks_acts_observes_and_reflects() -> None:
    agent = FakeAgent(ScriptedLLM(["calculator(6 * 7)", "The tool said 42. Final Answer: 42"]))
    run = run_agent(create_agent_state_machine(agent), {"task": "What is 6 * 7?"})

    path = ["initial", "thinking", "acting", "observing", "reflecting", "finalizing"]
    assert run.moves == pairs(path)
    assert run.result.output == "42"
    assert run.context.get("last_action") == {"tool": "calculator", "input": "6 * 7"}
    assert run.context.get("last_result") == {"success": True, "output": 42}


def test_a_thought_with_the_final_answer_finalizes_at_once() -> None:
    run = run_agent(create_agent_state_machine(FakeAgent(ScriptedLLM(["Final Answer: Paris"]))),
                    {"task": "Name the capital of France"})
    assert run.entered == ["initial", "thinking", "finalizing"]
    assert run.result.output == "Paris"


def test_a_tool_that_raises_is_caught_and_the_agent_thinks_again_with_the_error_in_view() -> None:
    llm = ScriptedLLM(["calculator(1 / 0)", "Dividing by zero has no answer. Final Answer: undefined"])
    agent = FakeAgent(llm, {"calculator": Calculator([ZeroDivisionError("division by zero")])})
    run = run_agent(create_agent_state_machine(agent), {"task": "What is 1 / 0?"})

    path = ["initial", "thinking", "acting", "error", "error_recovery", "thinking", "finalizing"]
    assert run.moves == pairs(path)
    caught = run.context.history[2]
    assert (caught.from_state, caught.to_state, caught.event, caught.success) == (
        "acting", "error", "state.error", False)
    assert caught.error is not None and "division by zero" in caught.error["message"]
    assert run.context.get("error_count") == 1
    assert "Error: ZeroDivisionError: division by zero" in llm.prompts[1]
    assert run.result.output == "undefined"


def test_a_tool_that_reports_a_failure_goes_to_recovery() -> None:
    failure = {"success": False, "output": None, "error": "table not found"}
    llm = ScriptedLLM(["calculator(2 + 2)", "Final Answer: 4"])
    run = run_agent(create_agent_state_machine(FakeAgent(llm, {"calculator": Calculator([failure])})),
                    {"task": "Add 2 and 2"})

    assert run.moves == pairs(["initial", "thinking", "acting", "observing", "error_recovery", "thinking",
                               "finalizing"])
    assert run.context.get("error") == "table not found"
    assert "Error: table not found" in llm.prompts[1]


def test_a_rate_limited_tool_call_is_retried_after_the_wait() -> None:
    calculator = Calculator([{"success": False, "error": "rate limit exceeded"}])
    llm = ScriptedLLM(["calculator(3 * 3)", "Final Answer: 9"])
    machine = create_agent_state_machine(FakeAgent(llm, {"calculator": calculator}), retry_delay=0)
    run = run_agent(machine, {"task": "Square 3"})

    path = ["initial", "thinking", "acting", "observing", "error_recovery", "acting", "observing", "reflecting",
            "finalizing"]
    assert run.moves == pairs(path)
    assert calculator.inputs == ["3 * 3", "3 * 3"]
    assert run.result.output == "9"


def test_a_rate_limited_llm_is_asked_again() -> None:
    class Flaky(ScriptedLLM):
        async def complete(self, prompt: str) -> str:
            if not self.prompts:
                self.prompts.append(prompt)
                raise RuntimeError("rate limit reached, slow down")
            return await super().complete(prompt)

    machine = create_agent_state_machine(FakeAgent(Flaky(["Final Answer: 5"])), retry_delay=0)
    run = run_agent(machine, {"task": "Count to 5"})
    assert run.moves == pairs(["initial", "thinking", "error", "error_recovery", "thinking", "finalizing"])
    assert run.result.output == "5"


def test_no_task_takes_the_error_path_and_says_why() -> None:
    llm = ScriptedLLM([])
    run = run_agent(create_agent_state_machine(FakeAgent(llm)), {})

    assert run.entered == ["initial", "error", "finalizing"]
    assert run.result.status == "succeeded"
    assert run.result.output == "Could not start: No task provided"
    assert llm.prompts == []


def test_too_many_errors_end_in_finalizing() -> None:
    llm = ScriptedLLM(itertools.repeat("I will search(the weather)"))  # the agent has no search tool
    run = run_agent(create_agent_state_machine(FakeAgent(llm)), {"task": "Is it raining?"})

    path = ["initial", *["thinking", "acting", "error", "error_recovery"] * 3, "thinking", "acting", "error",
            "finalizing"]
    assert run.entered == path
    assert run.context.get("error_count") == 4
    assert run.result.output == "Gave up after 4 errors; the last one: Unknown tool: search"


def test_an_agent_that_never_answers_is_stopped_by_max_steps() -> None:
    llm = ScriptedLLM(itertools.repeat("Let me ponder this a little longer."))
    run = run_agent(create_agent_state_machine(FakeAgent(llm), max_steps=12), {"task": "Prove it"})

    assert run.result.status == "failed"
    assert run.result.error is not None and run.result.error["type"] == "limit.max_steps"
    assert run.entered[:5] == ["initial", "thinking", "reflecting", "thinking", "reflecting"]
    assert len(run.entered) == 12


def test_without_an_agent_the_loop_still_ends() -> None:
    run = run_agent(create_agent_state_machine(), {"task": "Plan a trip in steps"})

    assert run.entered[:3] == ["initial", "planning", "thinking"]
    assert run.entered[-2:] == ["reflecting", "finalizing"]
    assert run.entered.count("reflecting") == 6
    assert run.result.output == "I could not complete the task."
    assert run.context.get("plan") == ["Think about the problem", "Carry out the solution"]


# -- the machine as a graph -----------------------------------------------------------------------------


def reachable(machine: StateMachine, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        name = todo.pop()
        targets = {rule.target for rule in machine.transitions_from(name)}
        targets |= {catch.target for catch in machine.states[name].catch}
        for target in targets - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_machine_declares_a_sound_loop() -> None:
    machine = create_agent_state_machine()
    machine.check()
    assert list(machine.states) == NINE
    assert machine.initial == "initial"
    assert reachable(machine, "initial") == set(NINE)
    assert all("finalizing" in reachable(machine, name) for name in NINE)
    assert [name for name, state in machine.states.items() if state.is_terminal] == ["finalizing"]
    assert machine.states["error"].state_type is StateType.PROCESSING  # it routes on, so it cannot end the run
    assert {rule.target for rule in machine.get_possible_transitions("thinking")} == {
        "finalizing", "acting", "reflecting"}
    assert machine.can_transition_to("planning", "initial")
    assert not machine.can_transition_to("planning", "reflecting")


def test_a_move_nobody_declared_is_refused() -> None:
    machine = create_agent_state_machine(FakeAgent(ScriptedLLM([])))

    async def jump(context: StateContext) -> str:
        return "planning"

    machine.states["initial"].execute = jump  # type: ignore[method-assign]
    machine.states["planning"].execute = jump  # type: ignore[method-assign]
    result = asyncio.run(machine.run({"task": "x"}))
    assert result.status == "failed"
    assert result.error is not None and result.error["type"] == "transition.invalid"
    assert result.error["state"] == "planning"


def test_visualize_draws_every_state_and_move() -> None:
    machine = create_agent_state_machine()
    parsed = parse_mermaid(machine.visualize())

    assert parsed["ok"], parsed.get("error")
    assert sorted(parsed["states"].values()) == sorted(NINE)
    ids = {label: state_id for state_id, label in parsed["states"].items()}
    drawn = {(arrow["from"], arrow["to"], arrow["label"]) for arrow in parsed["transitions"]}
    for name in NINE:
        for rule in machine.transitions_from(name):
            assert (ids[name], ids[rule.target], rule.label) in drawn
    assert ("[*]", ids["initial"], "") in drawn and (ids["finalizing"], "[*]", "") in drawn


# -- single states ----------------------------------------------------------------------------------------


def test_planning_strips_numbering_and_bullets() -> None:
    agent = FakeAgent(ScriptedLLM(["Here is the plan:\n1. Read the data\n2) Sum it\n- Report\n\n3."]))
    context = StateContext({"task": "t"})
    assert asyncio.run(PlanningState(agent).execute(context)) == "thinking"
    assert context.get("plan") == ["Here is the plan:", "Read the data", "Sum it", "Report"]
    assert context.get("current_step") == 0


def test_acting_without_a_readable_action_is_an_error() -> None:
    context = StateContext({"last_thought": "hmm"})
    assert asyncio.run(ActingState(FakeAgent(ScriptedLLM([]))).execute(context)) == "error"
    assert context.get("error") == "The last thought names no action to take"


def test_observing_moves_through_the_plan() -> None:
    context = StateContext({"plan": ["a", "b"], "current_step": 0, "last_result": {"success": True, "output": 1}})
    state = ObservingState()
    assert asyncio.run(state.execute(context)) == "thinking"
    assert context.get("current_step") == 1
    assert asyncio.run(state.execute(context)) == "reflecting"


def test_finalizing_answers_from_the_last_result_and_returns_the_answer() -> None:
    context = StateContext({"history": [{"result": {"success": True, "output": 7}}, {"error": "later"}]})
    state = FinalizingState()
    assert state.state_type is StateType.FINAL
    assert asyncio.run(state.execute(context)) == "7" == context.get("final_answer")


@pytest.mark.parametrize(("thought", "action"), [
    ("calculator((2 + 3) * 4) and then I am done (really)", {"tool": "calculator", "input": "(2 + 3) * 4"}),
    ("Thought: use calculator: 12 / 4", {"tool": "calculator", "input": "12 / 4"}),
    ("Let me SEARCH(weather in Oslo)", {"tool": "search", "input": "weather in Oslo"}),
    ("Just thinking out loud", None),
])
def test_actions_are_read_from_thoughts(thought: str, action: dict[str, str] | None) -> None:
    assert parse_action(thought, ["calculator"]) == action


def test_tool_results_become_json_with_a_success_flag() -> None:
    @dataclass
    class ToolResult:
        success: bool
        output: Any = None
        error: str | None = None

    assert tool_result_json(ToolResult(False, error="boom")) == {"success": False, "output": None, "error": "boom"}
    assert tool_result_json(12) == {"success": True, "output": 12}
    assert tool_result_json({1, 2}) == {"success": True, "output": "{1, 2}"}
