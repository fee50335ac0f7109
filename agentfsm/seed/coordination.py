"""The mission's multi-agent vocabulary over agentfsm's teams: the same child runs, bus and memory rules.

    >>> import asyncio
    >>> from agentfsm.seed import CoordinatedAgent, CoordinationStrategy, MultiAgentCoordinator
    >>> from agentfsm.seed import State, StateMachine
    >>> class Shout(State):
    ...     async def execute(self, context):
    ...         context.set("answer", context.get("task").upper())
    >>> def shouter(name):
    ...     machine = StateMachine(name)
    ...     machine.add_state(Shout("shout"), initial=True)
    ...     machine.add_state(State("done"), final=True)
    ...     machine.add_transition("shout", "done")
    ...     return machine
    >>> coordinator = MultiAgentCoordinator(strategy=CoordinationStrategy.PARALLEL)
    >>> coordinator.add_agent(CoordinatedAgent("a", shouter("a"), output="answer"))
    >>> coordinator.add_agent(CoordinatedAgent("b", shouter("b"), output="answer"))
    >>> asyncio.run(coordinator.execute_task("hi", {"b": "there"}))
    {'a': 'HI', 'b': 'THERE'}

Each agent runs as a child run of the coordinator's task (`agentfsm.runtime.children`),
under the strategy's rules; the agents' `MessageBus` and `SharedMemory` are one team space
(`agentfsm.runtime.teams`), the same a YAML team's `send`, `receive` and `memory` states use,
so a Python agent and a YAML agent of one team talk to each other.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentfsm.runtime.children import ChildRequest, gather, run_child
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.events import ChildEnded, ChildStarted, ChildStep
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import StateContext
from agentfsm.runtime.observers import Observers
from agentfsm.runtime.teams import LocalSpace, Seat, seat

__all__ = ["AgentMessage", "CoordinatedAgent", "CoordinationStrategy", "MessageBus", "MultiAgentCoordinator",
           "SharedMemory", "SharedResource"]


class CoordinationStrategy(enum.Enum):
    """How a coordinator's agents work together (a YAML team's `strategy:`)."""

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"
    HIERARCHICAL = "hierarchical"
    COLLABORATIVE = "collaborative"
    COMPETITIVE = "competitive"


@dataclass
class AgentMessage:
    """A message between agents; `to_agent` None broadcasts to every other agent."""

    from_agent: str
    to_agent: str | None
    message_type: str
    content: Any
    timestamp: datetime = field(default_factory=datetime.now)
    requires_response: bool = False


@dataclass
class SharedResource:
    """One key of the shared memory as the mission shows it: value, version, lock owner."""

    name: str
    value: Any
    owner: str | None = None
    locked: bool = False
    version: int = 0


class MessageBus:
    """A team's bus: `send_message`, `receive_message(agent_id, timeout)` (waits without polling), topics."""

    def __init__(self, space: LocalSpace | None = None) -> None:
        self.space = space or LocalSpace("bus", ())
        self.subscribers: dict[str, set[str]] = {}
        self.message_history: list[AgentMessage] = []

    def register_agent(self, agent_id: str) -> None:
        if agent_id not in self.space.agents:
            self.space.agents = (*self.space.agents, agent_id)
        self.subscribers.setdefault(agent_id, set())

    def subscribe(self, agent_id: str, topic: str) -> None:
        """From now on `agent_id` receives only messages of its subscribed topics."""
        self.register_agent(agent_id)
        self.subscribers[agent_id].add(topic)

    async def send_message(self, message: AgentMessage) -> None:
        """Deliver to `to_agent`, or to every other agent when it is None (StateError `bus.unknown_agent` for an
        agent the bus does not know)."""
        self.message_history.append(message)
        await self.space.send(message.from_agent, message.to_agent or "all", message.message_type,
                              {"content": message.content, "requires_response": message.requires_response}, "")

    async def receive_message(self, agent_id: str, timeout: float | None = None,
                              message_type: str | None = None, from_agent: str | None = None
                              ) -> AgentMessage | None:
        """The oldest message for `agent_id` (of its topics, or `message_type`, from `from_agent`); None once
        `timeout` seconds passed without one."""
        topics = self.subscribers.get(agent_id) or set()
        wanted = message_type if message_type is not None else (next(iter(topics)) if len(topics) == 1 else None)
        while True:
            found = await self.space.receive(agent_id, from_agent, wanted, timeout, "")
            if found is None:
                return None
            if wanted is None and topics and found.topic not in topics:
                continue  # not a topic it follows: dropped for it, as an unsubscribed topic is
            body = found.content if isinstance(found.content, dict) else {"content": found.content}
            return AgentMessage(found.sender, found.recipient, found.topic or "", body.get("content"),
                                requires_response=bool(body.get("requires_response")))


class SharedMemory:
    """A team's shared memory: versioned keys, locks with an owner and an expiry."""

    def __init__(self, space: LocalSpace | None = None) -> None:
        self.space = space or LocalSpace("memory", ())

    async def get(self, resource_name: str, agent_id: str = "") -> Any:
        return (await self.space.memory(agent_id, "get", resource_name, None, None, None, "")).value

    async def set(self, resource_name: str, value: Any, agent_id: str, *, expect_version: int | None = None) -> bool:
        """Write (compare-and-set when `expect_version` is given); False when another agent holds the lock or
        the version moved on."""
        op = "set" if expect_version is None else "cas"
        try:
            await self.space.memory(agent_id, op, resource_name, value, expect_version, None, "")
        except StateError as exc:
            if exc.type in ("memory.locked", "memory.conflict"):
                return False
            raise
        return True

    async def acquire_lock(self, resource_name: str, agent_id: str, ttl: float = 30.0) -> bool:
        try:
            await self.space.memory(agent_id, "lock", resource_name, None, None, ttl, "")
        except StateError as exc:
            if exc.type == "memory.locked":
                return False
            raise
        return True

    async def release_lock(self, resource_name: str, agent_id: str) -> bool:
        cell = self.space.cells.get(resource_name)
        if cell is None or cell.lock_owner != agent_id:
            return False
        await self.space.memory(agent_id, "unlock", resource_name, None, None, None, "")
        return True

    def resource(self, resource_name: str) -> SharedResource | None:
        cell = self.space.cells.get(resource_name)
        if cell is None:
            return None
        live = cell.lock_owner is not None and (cell.lock_expires is None or cell.lock_expires > time.time())
        return SharedResource(resource_name, cell.value, cell.lock_owner if live else None, live, cell.version)

    @property
    def resources(self) -> dict[str, SharedResource]:
        return {name: found for name in self.space.cells if (found := self.resource(name)) is not None}


class CoordinatedAgent:
    """An agent: an id, its machine (a `StateMachine` or a machine file), its inputs and role.

    The machine runs with the input `task` (its share of the coordinator's task) besides `inputs`;
    its result is its run's output, or the context value named by `output`. While it runs,
    `send_message`/`wait_for_message` and its YAML `send`/`receive`/`memory` states use its team's
    bus and memory.
    """

    def __init__(self, agent_id: str, machine: StateMachine | str | Path, *, inputs: Mapping[str, Any] | None = None,
                 role: str | None = None, output: str | None = None) -> None:
        self.agent_id, self.role, self.output, self.inputs = agent_id, role, output, dict(inputs or {})
        if not isinstance(machine, StateMachine):
            from agentfsm.service.machines import load_machine

            machine = load_machine(machine)
        self.machine = machine
        self.message_bus: MessageBus | None = None
        self.shared_memory: SharedMemory | None = None

    async def send_message(self, to_agent: str | None, message_type: str, content: Any,
                           requires_response: bool = False) -> None:
        assert self.message_bus is not None, "add the agent to a coordinator first"
        await self.message_bus.send_message(AgentMessage(self.agent_id, to_agent, message_type, content,
                                                         requires_response=requires_response))

    async def wait_for_message(self, message_type: str | None = None, from_agent: str | None = None,
                               timeout: float = 30) -> AgentMessage | None:
        assert self.message_bus is not None, "add the agent to a coordinator first"
        return await self.message_bus.receive_message(self.agent_id, timeout, message_type, from_agent)

    def result_of(self, run: RunResult) -> Any:
        if run.status != "succeeded":
            return {"error": run.error or {"type": f"child.{run.status}"}}
        return run.context.get(self.output) if self.output is not None else run.output


def current_agent(state: str = "agent") -> str:
    """The id of the agent whose run calls this (inside a coordinator's task); StateError `team.none` outside."""
    return seat(state).agent


class MultiAgentCoordinator:
    """Agents working on one task under a strategy; `execute_task` returns agent id -> result."""

    def __init__(self, strategy: CoordinationStrategy = CoordinationStrategy.PARALLEL, *,
                 max_concurrency: int | None = None) -> None:
        self.strategy, self.max_concurrency = strategy, max_concurrency
        self.agents: dict[str, CoordinatedAgent] = {}
        self.space = LocalSpace("coordinator", ())
        self.message_bus = MessageBus(self.space)
        self.shared_memory = SharedMemory(self.space)
        self.running = False
        self.status: dict[str, dict[str, Any]] = {}

    def add_agent(self, agent: CoordinatedAgent) -> None:
        self.agents[agent.agent_id] = agent
        agent.message_bus, agent.shared_memory = self.message_bus, self.shared_memory
        self.message_bus.register_agent(agent.agent_id)
        self.status[agent.agent_id] = {"status": "idle", "state": None, "steps": 0, "run_id": None}

    async def execute_task(self, task: Any, task_allocation: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the agents on `task` (each on `task_allocation[agent_id]` when given) under the strategy."""
        if not self.agents:
            raise ValueError("add agents before executing a task (add_agent)")
        self.running = True
        context = StateContext({"task": task})
        context.run_id = new_run_id()
        context.observers = Observers([_StatusWatch(self.status)])
        try:
            return await self._run(context, task, dict(task_allocation or {}))
        finally:
            self.running = False

    def _request(self, agent: CoordinatedAgent, task: Any, name: str | None = None) -> ChildRequest:
        inputs = {**agent.inputs, "task": task}
        if agent.role is not None:
            inputs.setdefault("role", agent.role)
        return ChildRequest(name or agent.agent_id, agent.machine, inputs, Seat(self.space, agent.agent_id))

    async def _run(self, context: StateContext, task: Any, allocation: dict[str, Any]) -> dict[str, Any]:
        agents = list(self.agents.values())
        requests = [self._request(agent, allocation.get(agent.agent_id, task)) for agent in agents]
        strategy = self.strategy
        if strategy is CoordinationStrategy.SEQUENTIAL:
            results: dict[str, Any] = {}
            for agent, request in zip(agents, requests, strict=True):
                results[agent.agent_id] = agent.result_of(await run_child(context, request))
            return results
        if strategy is CoordinationStrategy.HIERARCHICAL:
            return await self._hierarchical(context, task, allocation)
        join = "any" if strategy is CoordinationStrategy.COMPETITIVE else "all"
        ran = await gather(context, requests, join=join, max_concurrency=self.max_concurrency, fail_fast=False)
        return {name: self.agents[name].result_of(run) for name, run in ran.items()}

    async def _hierarchical(self, context: StateContext, task: Any, allocation: dict[str, Any]) -> dict[str, Any]:
        """The first agent added is the master: it runs first on the task, then the workers on their shares."""
        master, *workers = self.agents.values()
        results = {master.agent_id: master.result_of(await run_child(context, self._request(master, task)))}
        ran = await gather(context, [self._request(w, allocation.get(w.agent_id, task)) for w in workers],
                           max_concurrency=self.max_concurrency, fail_fast=False)
        results.update({name: self.agents[name].result_of(run) for name, run in ran.items()})
        return results

    def get_status(self) -> dict[str, Any]:
        """Strategy, whether a task runs, each agent's status, state and steps, and the bus and memory sizes."""
        return {"strategy": self.strategy.name, "running": self.running,
                "agents": {name: dict(status) for name, status in self.status.items()},
                "messages": len(self.message_bus.message_history), "resources": len(self.space.cells)}


class _StatusWatch:
    """Keeps the coordinator's view of its agents as their child runs start, step and end."""

    def __init__(self, status: dict[str, dict[str, Any]]) -> None:
        self.status = status

    def on_child_started(self, *, event: ChildStarted) -> None:
        self.status.setdefault(event.child, {}).update(status="running", run_id=event.child_run, steps=0)

    def on_child_step(self, *, event: ChildStep) -> None:
        entry = self.status.setdefault(event.child, {"steps": 0})
        entry.update(state=event.state, steps=entry.get("steps", 0) + 1)

    def on_child_ended(self, *, event: ChildEnded) -> None:
        self.status.setdefault(event.child, {})["status"] = event.status
