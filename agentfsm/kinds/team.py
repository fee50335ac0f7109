"""`type: team`: agents (machines, each a child run) working under a strategy, with a bus and a shared memory.

The strategies themselves are in `team_strategies.py`; this module holds the language (the
spec and its checks) and the compile step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.nested import compile_nested
from agentfsm.kinds.machine import inputs_renderer
from agentfsm.runtime.budget import Budget, budget_scope
from agentfsm.runtime.children import ChildRequest
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.runtime.teams import Seat
from agentfsm.spec.budget import BudgetSpec
from agentfsm.spec.expressions import compile_guard
from agentfsm.spec.fields import GUARD, TEMPLATE_KEY, VALUE_TEMPLATE
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import ActiveStateSpec, Identifier, Reporter
from agentfsm.spec.nesting import NestedMachine, NestedRef
from agentfsm.spec.sites import SEES_KEY

Strategy = Literal["sequential", "parallel", "hierarchical", "collaborative", "competitive"]

STRATEGY_INPUTS: dict[str, frozenset[str]] = {
    "worker": frozenset({"task"}),
    "supervisor": frozenset({"phase", "workers", "results"}),
    "judge": frozenset({"candidates"}),
}
"""The inputs a strategy gives an agent besides its own `inputs:` (an inline agent may read them)."""


class AgentSpec(NestedMachine):
    """A team agent: a machine (file or inline) run as a child run, with its inputs and its role."""

    inputs: dict[Identifier, Any] = Field(
        default_factory=dict, description="The agent's inputs: name -> value template over this run's context "
        "(a sequential team's agents also see `previous`: the outputs of the agents before them).",
        json_schema_extra={**VALUE_TEMPLATE, SEES_KEY: ["previous"]})
    role: str | None = Field(None, description="What the agent does; given to it as the input `role`.")


class TeamStateSpec(ActiveStateSpec):
    """Run a team of agents, each a child run, under a coordination strategy; save the team's result."""

    type: Literal["team"]
    strategy: Strategy = Field(description="How the agents work together.")
    agents: dict[Identifier, AgentSpec] = Field(description="Agent name -> agent (the workers, for hierarchical).")
    supervisor: AgentSpec | None = Field(None, description="hierarchical: plans (input `phase: plan`, `workers`), "
                                                           "then synthesizes (`phase: synthesize`, `results`).")
    judge: AgentSpec | None = Field(None, description="competitive, `winner: best`: receives `candidates` (agent "
                                                      "name -> output) and outputs the winner's name.")
    max_concurrency: int | None = Field(None, ge=1, description="At most this many agents run at once.")
    on_failure: Literal["fail_fast", "collect"] = Field(
        "fail_fast", description="parallel: `fail_fast` cancels the rest at the first failure and raises here; "
        "`collect` keeps going and saves a failed agent's result as `{error: {...}}`.")
    until: str | None = Field(None, description="collaborative: end the team as soon as this guard over `memory` "
                                                "(the shared memory) holds; checked after each agent step.",
                              json_schema_extra={**GUARD, SEES_KEY: ["memory"]})
    max_steps: int | None = Field(None, ge=1, description="collaborative: the agents' steps, all together, "
                                                          "stay under this (error `team.max_steps`).")
    winner: Literal["first", "best"] = Field(
        "first", description="competitive: `first` keeps the first agent to succeed and cancels the others; "
        "`best` waits for all and picks by `score` or `judge`.")
    score: str | None = Field(None, description="competitive, `winner: best`: an expression over an agent's "
                                                "`output`; the highest wins.",
                              json_schema_extra={TEMPLATE_KEY: "guard", SEES_KEY: ["output", "agent"]})
    memory: dict[str, Any] = Field(default_factory=dict, description="The shared memory's first values "
                                                                     "(key -> value, each at version 1).")
    save: Identifier | None = Field(None, description="Context key the team's result is saved under.")
    budget: BudgetSpec | None = Field(None, description="Limits on what the agents spend together (tokens, cost, "
                                      "llm_calls); an agent's LLM call after one is reached fails, and the team state "
                                      "with it, with `limit.budget` (catchable here).")

    def members(self) -> Iterator[tuple[str, tuple[str | int, ...], AgentSpec, frozenset[str]]]:
        """(role in the team, where, agent, inputs the strategy gives it) for every agent, supervisor and judge."""
        given = frozenset({"role"})
        worker = STRATEGY_INPUTS["worker"] if self.strategy == "hierarchical" else frozenset()
        for name, agent in self.agents.items():
            yield name, ("agents", name), agent, given | worker
        if self.supervisor is not None:
            yield "supervisor", ("supervisor",), self.supervisor, given | STRATEGY_INPUTS["supervisor"]
        if self.judge is not None:
            yield "judge", ("judge",), self.judge, given | STRATEGY_INPUTS["judge"]

    def diagram_label(self, name: str) -> str:
        """How a diagram names the state: with its strategy (its agents are drawn inside it)."""
        return f"{name} (team, {self.strategy})"

    def nested(self) -> Iterator[NestedRef]:
        for _, where, agent, extra in self.members():
            yield where, agent, extra

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        where = ("states", name)

        def problem(path: tuple[str | int, ...], message: str) -> None:
            reporter.report((*where, *path), "team-config", f"states.{name}: {message}", key=True)

        if not self.agents:
            problem(("agents",), "a team needs at least one agent")
        if self.strategy == "hierarchical" and self.supervisor is None:
            problem(("strategy",), "a hierarchical team needs a supervisor: (an agent that plans and synthesizes)")
        if self.strategy == "competitive" and self.winner == "best" and self.score is None and self.judge is None:
            problem(("winner",), "winner: best needs score: (an expression over output) or judge: (an agent)")
        if self.until is not None and self.strategy != "collaborative":
            problem(("until",), "until: applies to a collaborative team only")
        self._check_sends(name, reporter)

    def _check_sends(self, name: str, reporter: Reporter) -> None:
        """A `send` of an inline agent to a literal name the team does not have."""
        known = set(self.agents)
        for agent_name, agent in self.agents.items():
            for state_name, state in (agent.states or {}).items():
                to = state.get("to") if isinstance(state, dict) and state.get("type") == "send" else None
                if isinstance(to, str) and "{" not in to and to != "all" and to not in known:
                    reporter.report(("states", name, "agents", agent_name, "states", state_name, "to"),
                                    "unknown-agent", f"states.{name}.agents.{agent_name}: sends to '{to}', "
                                    f"not an agent of the team (agents: {', '.join(known)}; or all)")


@dataclass(frozen=True, slots=True)
class Agent:
    """A compiled agent: its name, its machine, how its inputs render, its role."""

    name: str
    machine: StateMachine
    render: Any
    role: str | None

    def request(self, context: StateContext, *, sees: dict[str, Any] | None = None, given: dict[str, Any] | None = None,
                name: str | None = None, seat: Seat | None = None, observers: tuple[object, ...] = ()
                ) -> ChildRequest:
        inputs = {**self.render(context, sees or {}), **(given or {})}
        if self.role is not None:
            inputs.setdefault("role", self.role)
        return ChildRequest(name or self.name, self.machine, inputs, seat, observers)


class TeamState(State):
    """Run the team's strategy (see `team_strategies.py`) and save its result."""

    def __init__(self, name: str, spec: TeamStateSpec, agents: dict[str, Agent], supervisor: Agent | None,
                 judge: Agent | None, **options: Any) -> None:
        super().__init__(name, **options)
        self.spec, self.agents, self.supervisor, self.judge = spec, agents, supervisor, judge
        self.score = compile_guard(spec.score) if spec.score is not None else None
        self.until = compile_guard(spec.until) if spec.until is not None else None
        limits = spec.budget
        self.budget = None if limits is None else Budget(limits.tokens, limits.cost, limits.llm_calls,
                                                         f"team state '{name}'")

    async def execute(self, context: StateContext) -> Event:
        from agentfsm.kinds.team_strategies import STRATEGIES

        with budget_scope(self.budget, None):
            output = await STRATEGIES[self.spec.strategy](self, context)
        if self.spec.save is not None:
            context.data[self.spec.save] = output
        return Event("done", result=output)


def compile_team(name: str, spec: TeamStateSpec, env: CompileEnv) -> State:
    def agent(agent_name: str, where: str, agent_spec: AgentSpec, extra: frozenset[str]) -> Agent:
        machine = compile_nested(agent_spec, f"{name}.{agent_name}", env, extra)
        return Agent(agent_name, machine, inputs_renderer(agent_spec.inputs, f"{where}.inputs"), agent_spec.role)

    built = {where: agent(member, ".".join(map(str, where)), agent_spec, extra)
             for member, where, agent_spec, extra in spec.members()}
    supervisor, judge = built.pop(("supervisor",), None), built.pop(("judge",), None)
    agents = {found.name: found for found in built.values()}
    return TeamState(name, spec, agents, supervisor, judge, **state_options(spec))


KIND = register(Kind("team", TeamStateSpec, compile_team))
