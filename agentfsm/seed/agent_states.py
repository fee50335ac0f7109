"""The mission's agent states: a ReAct loop (plan, think, act, observe, reflect) as runtime `State`s.

It is the nine-state loop `machines/react_agent.yaml` declares, written in Python around
an `agent`: `await agent.llm.complete(prompt)` returns text, and `agent.tools` maps a
tool's name to a tool with `await tool.execute(input)`. Without an agent each state
falls back to a fixed, offline behaviour. The states know nothing of YAML.

Each state returns the name of the state to go to, as the mission's do.
`create_agent_state_machine` declares every one of those moves as a transition, so the
runtime refuses a move nobody declared, `visualize()` draws the loop, graph checks can
read it and `max_steps` bounds it.

The agent's scratchpad (thought, action, result of each step) is the context key
`"history"`, as in the mission; `context.history` is something else: the transitions taken.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import CatchRule, State, StateContext, StateType
from agentfsm.seed.agent_text import (
    analyze_task,
    current_goal,
    error_text,
    failure_text,
    final_answer_in,
    mentions_tool,
    parse_action,
    parse_plan,
    planning_prompt,
    reflection_prompt,
    result_text,
    succeeded,
    thinking_prompt,
    tool_result_json,
)

logger = logging.getLogger("agentfsm.seed")

INITIAL = "initial"
PLANNING = "planning"
THINKING = "thinking"
ACTING = "acting"
OBSERVING = "observing"
REFLECTING = "reflecting"
ERROR = "error"
ERROR_RECOVERY = "error_recovery"
FINALIZING = "finalizing"


class LLM(Protocol):
    async def complete(self, prompt: str, /) -> str: ...


class Tool(Protocol):
    async def execute(self, tool_input: Any, /) -> Any: ...


class Agent(Protocol):
    """What the agent states need of an agent: an LLM to ask and tools to call by name."""

    @property
    def llm(self) -> LLM: ...

    @property
    def tools(self) -> Mapping[str, Tool]: ...


class AgentState(State):
    """A state that works for an agent (None: the state's offline fallback)."""

    def __init__(self, name: str, agent: Agent | None = None, **options: Any) -> None:
        super().__init__(name, **options)
        self.agent = agent

    def tools(self) -> Mapping[str, Tool]:
        """The agent's tools; none when there is no agent or its `tools` is not a mapping."""
        tools = getattr(self.agent, "tools", None)
        return tools if isinstance(tools, Mapping) else {}

    async def ask(self, prompt: str) -> str:
        """The agent's LLM's reply to `prompt`."""
        if self.agent is None:
            raise RuntimeError(f"state '{self.name}' has no agent to ask")
        reply = await self.agent.llm.complete(prompt)
        return reply if isinstance(reply, str) else str(reply)


def _missing(task: Any) -> bool:
    return task is None or not str(task).strip()


class InitialState(AgentState):
    """Reads the task: no task is an error; a task asking for a plan or steps is planned; any other is thought about.

    Deviation: the mission sends a short question to a `clarification` state its loop does
    not have; here it is thought about (`task_analysis` still says `requires_clarification`).
    """

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(INITIAL, agent, state_type=StateType.INITIAL)

    async def execute(self, context: StateContext) -> str:
        task = context.get("task")
        if _missing(task):
            context.set("error", "No task provided")
            return ERROR
        analysis = analyze_task(str(task))
        context.set("task_analysis", analysis)
        logger.info("agent task: %s", task)
        return PLANNING if analysis["requires_planning"] else THINKING


class PlanningState(AgentState):
    """Asks the LLM for a numbered plan and keeps its steps (`plan`, `current_step`); offline, a two-step plan."""

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(PLANNING, agent)

    async def execute(self, context: StateContext) -> str:
        if self.agent is None:
            steps = ["Think about the problem", "Carry out the solution"]
        else:
            steps = parse_plan(await self.ask(planning_prompt(context.get("task"))))
            logger.info("agent plan: %d steps", len(steps))
        context.update(plan=steps, current_step=0)
        return THINKING


class ThinkingState(AgentState):
    """Asks the LLM about the current goal: a final answer finalizes, an action acts, anything else is reflected on.

    A thought calls for an action when it names one of the agent's tools, or one of the
    mission's verbs (calculate, search, read). The mission's list alone missed a thought
    such as `calculator(2 + 2)`.
    """

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(THINKING, agent)

    async def execute(self, context: StateContext) -> str:
        if self.agent is None:
            context.set("last_thought", "Work on the task with the tools at hand")
            return ACTING
        task = context.get("task")
        goal = current_goal(task, context.get("plan") or [], int(context.get("current_step", 0)))
        tools = self.tools()
        thought = await self.ask(thinking_prompt(task, goal, context.get("history") or [], tools))
        context.set("last_thought", thought)
        answer = final_answer_in(thought)
        if answer is not None:
            context.set("final_answer", answer)
            return FINALIZING
        return ACTING if mentions_tool(thought, tools) else REFLECTING


class ActingState(AgentState):
    """Calls the tool the last thought names and keeps its result (`last_action`, `last_result`, the scratchpad).

    Results are kept as JSON (`{"success", "output", ...}`) so a context stays storable.
    Deviations: a thought with no readable action is an error here (the mission goes to a
    `clarification` state its loop lacks); a tool that raises is caught by the machine's
    catch rule and handled by `error`, as the mission's loop sends any exception there.
    """

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(ACTING, agent)

    async def execute(self, context: StateContext) -> str:
        tools = self.tools()
        if not tools:
            return REFLECTING
        thought = str(context.get("last_thought") or "")
        action = parse_action(thought, tools)
        if action is None:
            context.set("error", "The last thought names no action to take")
            return ERROR
        tool = {name.lower(): tool for name, tool in tools.items()}.get(action["tool"])  # actions read lower-case
        if tool is None:
            context.set("error", f"Unknown tool: {action['tool']}")
            return ERROR
        outcome = tool.execute(action["input"])
        result = tool_result_json(await outcome if inspect.isawaitable(outcome) else outcome)
        scratchpad = [*(context.get("history") or []), {"thought": thought, "action": action, "result": result}]
        context.update(last_action=action, last_result=result, history=scratchpad)
        return OBSERVING


class ObservingState(AgentState):
    """Reads the last result: a success moves to the plan's next step (or to reflecting after the last one);
    a failure recovers.

    A failed result's error is kept under `error`, so recovery can tell a rate limit from the rest.
    """

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(OBSERVING, agent)

    async def execute(self, context: StateContext) -> str:
        result = context.get("last_result")
        if not result:
            return THINKING
        if not succeeded(result):
            context.set("error", failure_text(result))
            return ERROR_RECOVERY
        plan = context.get("plan") or []
        step = int(context.get("current_step", 0))
        if plan and step < len(plan) - 1:
            context.set("current_step", step + 1)
            return THINKING
        return REFLECTING


class ReflectingState(AgentState):
    """Asks the LLM whether the progress so far answers the task: a final answer finalizes, else think again.

    Deviation: offline, the mission's loop never ends (its scratchpad never grows without
    tools); here it finalizes once it has reflected more than five times, as well as once the
    scratchpad holds more than five entries.
    """

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(REFLECTING, agent)

    async def execute(self, context: StateContext) -> str:
        scratchpad = context.get("history") or []
        if self.agent is None:
            enough = len(scratchpad) > 5 or context.visits.get(self.name, 0) > 5
            return FINALIZING if enough else THINKING
        reflection = await self.ask(reflection_prompt(context.get("task"), scratchpad))
        context.set("last_reflection", reflection)
        answer = final_answer_in(reflection, whole=True)
        if answer is None:
            return THINKING
        context.set("final_answer", answer)
        return FINALIZING


class ErrorState(AgentState):
    """Counts errors (`error_count`) and sends the run to recovery; past `max_errors`, it gives up and finalizes.

    Deviations: typed PROCESSING, not ERROR (an ERROR state ends an agentfsm run, and this
    one routes on); with no task there is nothing to recover toward (the mission would
    think about `None` forever), so it finalizes at once with an answer saying why.
    """

    def __init__(self, agent: Agent | None = None, *, max_errors: int = 3) -> None:
        super().__init__(ERROR, agent)
        self.max_errors = max_errors

    async def execute(self, context: StateContext) -> str:
        error = error_text(context.get("error"))
        count = int(context.get("error_count", 0)) + 1
        context.set("error_count", count)
        logger.warning("agent error %d: %s", count, error)
        if count > self.max_errors:
            context.set("final_answer", f"Gave up after {count} errors; the last one: {error}")
            return FINALIZING
        if _missing(context.get("task")):
            context.set("final_answer", f"Could not start: {error}")
            return FINALIZING
        return ERROR_RECOVERY


class ErrorRecoveryState(AgentState):
    """Recovers from the last error: after a rate limit it waits and tries again; otherwise it thinks again.

    Deviations: the error goes into the scratchpad, so the next thought sees what failed (the
    mission asks the same question again); after a rate limit it retries the step that hit it
    (the tool call when that is what failed, else thinking), where the mission always acts,
    even on a thought that never produced an action. `retry_delay` is the wait, in seconds.
    """

    def __init__(self, agent: Agent | None = None, *, retry_delay: float = 2.0) -> None:
        super().__init__(ERROR_RECOVERY, agent)
        self.retry_delay = retry_delay

    async def execute(self, context: StateContext) -> str:
        error = context.get("error")
        text = error_text(error)
        context.set("history", [*(context.get("history") or []), {"error": text}])
        if "rate limit" in text.lower():
            await asyncio.sleep(self.retry_delay)
            return ACTING if _failed_acting(error, context) else THINKING
        return THINKING


def _failed_acting(error: Any, context: StateContext) -> bool:
    """Whether the failure came from the tool call: a caught error names its state; a state's own message does not."""
    if isinstance(error, Mapping) and error.get("state"):
        return bool(error["state"] == ACTING)
    return context.get("last_action") is not None


class FinalizingState(AgentState):
    """Settles the final answer: the one found, else the last tool result, else a note that the task was not completed.

    It is the machine's final state: agentfsm executes it once (the mission's loop never
    did), and it returns the answer, which becomes the run's `output`.
    """

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__(FINALIZING, agent, state_type=StateType.FINAL)

    async def execute(self, context: StateContext) -> str:
        answer = context.get("final_answer")
        if not answer:
            answer = _answer_from(context.get("history") or [])
        answer = str(answer)
        context.set("final_answer", answer)
        logger.info("agent final answer: %.100s", answer)
        return answer


def _answer_from(scratchpad: list[Mapping[str, Any]]) -> str:
    if not scratchpad:
        return "I could not complete the task."
    for entry in reversed(scratchpad):
        if "result" in entry:
            return result_text(entry["result"])
    return "The task ended without a clear result."


# (target, label) for every move each state can make, in the order its execute decides.
TRANSITIONS: dict[str, tuple[tuple[str, str], ...]] = {
    INITIAL: ((ERROR, "no task"), (PLANNING, "asks for a plan"), (THINKING, "task read")),
    PLANNING: ((THINKING, "plan made"),),
    THINKING: ((FINALIZING, "final answer"), (ACTING, "action"), (REFLECTING, "no action")),
    ACTING: ((OBSERVING, "tool called"), (ERROR, "no usable action"), (REFLECTING, "no tools")),
    OBSERVING: ((THINKING, "next plan step"), (REFLECTING, "result in"), (ERROR_RECOVERY, "tool failed")),
    REFLECTING: ((FINALIZING, "final answer"), (THINKING, "not yet")),
    ERROR: ((ERROR_RECOVERY, "recover"), (FINALIZING, "give up")),
    ERROR_RECOVERY: ((ACTING, "retry after rate limit"), (THINKING, "think again")),
    FINALIZING: (),
}


def create_agent_state_machine(
    agent: Agent | None = None,
    *,
    max_steps: int = 100,
    max_errors: int = 3,
    retry_delay: float = 2.0,
) -> StateMachine:
    """The nine-state agent loop around `agent`, named "agent": start it with `{"task": ...}`.

    Every move is declared (the event that takes it is named after its target). Any
    exception in a state's work is caught and sent to `error` with the error object saved
    under `error`, as the mission's loop sends every exception there. `max_steps` bounds
    the loop, which the mission's left unbounded: past it the run fails with `limit.max_steps`.
    """
    machine = StateMachine("agent", description="Plans, thinks, acts with tools, observes and reflects until it "
                           "can answer the task.", max_steps=max_steps)
    states: list[AgentState] = [
        InitialState(agent), PlanningState(agent), ThinkingState(agent), ActingState(agent), ObservingState(agent),
        ReflectingState(agent), ErrorState(agent, max_errors=max_errors),
        ErrorRecoveryState(agent, retry_delay=retry_delay), FinalizingState(agent),
    ]
    for state in states:
        if state.name != FINALIZING:
            state.catch = (CatchRule(("*",), ERROR, save_as="error"),)
        machine.add_state(state, initial=state.name == INITIAL, final=state.name == FINALIZING)
    for source, moves in TRANSITIONS.items():
        for target, label in moves:
            machine.add_transition(source, target, target, label=label)
    return machine
