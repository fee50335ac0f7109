"""Child runs: a nested machine, a parallel branch or a team agent runs as a run of its own.

The parent's loop stays linear: a state that has children (`machine`, `parallel`, `team`,
`map`) asks `context.children` to run them and waits for them. How a child is run is the
context's business: `LocalChildren` runs it in memory; a durable run's context carries the
store's implementation (`agentfsm.history.children`), which finds the children a parent
started before a crash (reusing finished ones' results, resuming unfinished ones) instead
of starting them again. A child's steps reach the parent's observers as `ChildStep` events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agentfsm.runtime.budget import charge_usage
from agentfsm.runtime.calls import ChildCallRecord
from agentfsm.runtime.errors import UNCATCHABLE, StateError
from agentfsm.runtime.events import (
    ChildEnded,
    ChildStarted,
    ChildStep,
    MemoryWritten,
    MessageReceived,
    MessageSent,
    StepEnded,
)
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.teams import LocalSpace, Seat, TeamSpace, take_seat

if TYPE_CHECKING:
    from agentfsm.runtime.loop import RunResult
    from agentfsm.runtime.machine import StateMachine
    from agentfsm.runtime.model import StateContext

Join = Literal["all", "any"] | int
"""When a group of children is done: all succeeded, the first succeeded, or N succeeded."""


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """A child to run: its name in the parent's step (unique there), its machine and its inputs."""

    name: str
    machine: StateMachine
    inputs: Mapping[str, Any] = field(default_factory=dict)
    seat: Seat | None = None
    """For a team agent: its seat (its team's bus and memory, its name), taken by the task running it."""
    observers: tuple[object, ...] = ()
    """More observers of the child's run (a collaborative team watches its agents' steps)."""


class Children(Protocol):
    """How a context runs its children (see the module docstring)."""

    async def run(self, context: StateContext, request: ChildRequest) -> RunResult:
        """Run the child to its end (or find how it ended) and return that; never raises for a failed child."""
        ...

    async def space(self, context: StateContext, name: str, agents: Iterable[str],
                    memory: Mapping[str, Any]) -> TeamSpace:
        """The message bus and shared memory of the team state `name` at this step (`memory`: its first values);
        the same one again when the step is taken again."""
        ...

    async def cancel(self, context: StateContext, name: str) -> None:
        """Record that the step gave up on the child `name` (its task was cancelled): it is `cancelled` for good."""
        ...


class ChildRelay:
    """The observer a child run carries: it tells the parent's observers about each step the child takes."""

    def __init__(self, parent: StateContext, name: str) -> None:
        self.parent_observers = parent.observers
        self.parent_run, self.parent_step, self.name = parent.run_id, parent.step, name

    async def on_step_ended(self, *, event: StepEnded) -> None:
        if self.parent_observers.listens(ChildStep):
            await self.parent_observers.publish(ChildStep(
                run_id=self.parent_run, at=event.at, child=self.name, child_run=event.run_id, step=event.step,
                state=event.state, next_state=event.next_state, error=event.error))

    async def on_message_sent(self, *, event: MessageSent) -> None:
        await self._pass_up(event)

    async def on_message_received(self, *, event: MessageReceived) -> None:
        await self._pass_up(event)

    async def on_memory_written(self, *, event: MemoryWritten) -> None:
        await self._pass_up(event)

    async def _pass_up(self, event: MessageSent | MessageReceived | MemoryWritten) -> None:
        """A team's bus and memory events reach every ancestor's observers (a trace records them)."""
        if self.parent_observers.listens(type(event)):
            await self.parent_observers.publish(event)

    async def on_child_step(self, *, event: ChildStep) -> None:
        """A grandchild's step: passed up with its path of names (`team/agent`)."""
        if self.parent_observers.listens(ChildStep):
            await self.parent_observers.publish(ChildStep(
                run_id=self.parent_run, at=event.at, child=f"{self.name}/{event.child}", child_run=event.child_run,
                step=event.step, state=event.state, next_state=event.next_state, error=event.error))


class LocalChildren:
    """Children run in memory, as plain runs of their machines (for a run that is not recorded)."""

    async def run(self, context: StateContext, request: ChildRequest) -> RunResult:
        note = ChildNote(context, request.name, new_run_id())
        await note.started_run()
        result = await request.machine.run(request.inputs, run_id=note.run_id,
                                           observers=[ChildRelay(context, request.name), *request.observers])
        return await note.ended(result)

    async def space(self, context: StateContext, name: str, agents: Iterable[str],
                    memory: Mapping[str, Any]) -> TeamSpace:
        return LocalSpace.seeded(f"{context.run_id}:{context.step}:{name}", agents, memory)

    async def cancel(self, context: StateContext, name: str) -> None:
        return None


def children_of(context: StateContext) -> Children:
    """How `context`'s run runs its children (in memory when nothing else was set)."""
    return context.children or LOCAL_CHILDREN


LOCAL_CHILDREN = LocalChildren()


class ChildNote:
    """Publishes `ChildStarted` and `ChildEnded` around a child's run, and adds its record to the parent's step."""

    def __init__(self, context: StateContext, name: str, run_id: str, *, reused: bool = False) -> None:
        self.context, self.name, self.run_id, self.reused = context, name, run_id, reused
        self.started = time.perf_counter()

    async def started_run(self) -> None:
        observers = self.context.observers
        if observers.listens(ChildStarted):
            await observers.publish(ChildStarted(run_id=self.context.run_id, at=time.time(), step=self.context.step,
                                                 child=self.name, child_run=self.run_id, reused=self.reused))

    async def ended(self, result: RunResult, ended_at: float | None = None) -> RunResult:
        """Record the child's end on the parent's step (its usage rolls up) and tell the parent's observers."""
        context = self.context
        result.context.metadata.setdefault("ended_at", time.time() if ended_at is None else ended_at)
        if self.reused:  # its calls were charged to the budgets in force by the process that ran it, not this one
            charge_usage(result.usage)
        context.record_call(ChildCallRecord(name=self.name, run_id=self.run_id, status=result.status,
                                            usage=result.usage, duration=time.perf_counter() - self.started,
                                            reused=self.reused))
        if context.observers.listens(ChildEnded):
            await context.observers.publish(ChildEnded(run_id=context.run_id, at=time.time(), step=context.step,
                                                       child=self.name, child_run=self.run_id, status=result.status,
                                                       error=result.error))
        return result


def child_error(name: str, result: RunResult) -> StateError:
    """The error a failed (or cancelled) child raises in its parent's state, where retry and catch apply.

    The child's own error type is kept, so `catch: [{errors: [llm], ...}]` in the parent matches an LLM failure
    of the child; the types that end a run for good (a `fail` state, no transition...) become `child.TYPE`, which
    the parent can catch.
    """
    error = result.error or {}
    kind = str(error.get("type") or ("child.cancelled" if result.status == "cancelled" else "child.fail"))
    if kind in UNCATCHABLE:
        kind = f"child.{kind}"
    message = str(error.get("message") or f"ended {result.status}")
    detail = {"child": name, "run_id": result.run_id, "status": result.status}
    if error.get("state"):
        detail["state"] = error["state"]
    return StateError(kind, f"'{name}' failed: {message}", detail=detail)


async def run_child(context: StateContext, request: ChildRequest) -> RunResult:
    """Run one child with the context's children (local when the context has none)."""
    children: Children = context.children or LOCAL_CHILDREN
    if request.seat is None:
        return await children.run(context, request)
    return await asyncio.ensure_future(_seated(children, context, request))  # the seat stays in the child's task


async def _seated(children: Children, context: StateContext, request: ChildRequest) -> RunResult:
    if request.seat is not None:
        take_seat(request.seat)
    return await children.run(context, request)


async def gather(context: StateContext, requests: Iterable[ChildRequest], *, join: Join = "all",
                 max_concurrency: int | None = None, fail_fast: bool = True,
                 stop: asyncio.Event | None = None) -> dict[str, RunResult]:
    """Run children concurrently (at most `max_concurrency` at once) until `join` is met.

    `all`: every child must succeed; with `fail_fast` the first failure cancels the rest and raises (without it,
    every child runs to its end and the failures are in the results). `any` / N: the first (N) successes end the
    group and the others are cancelled; when too many fail for that, the group raises. Cancelled children are
    recorded as cancelled. `stop`, once set, ends the group as it stands (the children still running are
    cancelled). Returns the results of the children that ended, by name, in the order they were given.
    """
    requests = list(requests)
    needed = len(requests) if join == "all" else (1 if join == "any" else int(join))
    children: Children = context.children or LOCAL_CHILDREN
    limit = asyncio.Semaphore(max_concurrency or len(requests) or 1)

    async def one(request: ChildRequest) -> RunResult:
        async with limit:
            return await _seated(children, context, request)

    tasks = {asyncio.ensure_future(one(request)): request.name for request in requests}
    results: dict[str, RunResult] = {}
    succeeded = 0
    failure: StateError | None = None
    pending = set(tasks)
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        while pending and failure is None and succeeded < needed:
            done, pending = await asyncio.wait(pending | ({stopping} if stopping else set()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if stopping is not None:
                pending.discard(stopping)
                done.discard(stopping)
            for task in sorted(done, key=lambda t: _order(t, tasks)):
                name = tasks[task]
                result = results[name] = task.result()
                if result.status == "succeeded":
                    succeeded += 1
                elif join == "all" and not fail_fast:
                    continue  # collecting: every child runs to its end, failures are in the results
                elif join == "all" or len(requests) - len(results) + succeeded < needed:
                    failure = failure or child_error(name, result)
            if stopping is not None and stopping.done():
                break
    finally:
        if stopping is not None:
            stopping.cancel()
        await _cancel(context, children, pending, tasks)
    if failure is not None:
        raise failure
    return {request.name: results[request.name] for request in requests if request.name in results}


def _order(task: asyncio.Future[RunResult], tasks: Mapping[asyncio.Future[RunResult], str]) -> tuple[float, str]:
    """Children that ended in one wake-up are looked at by when they ended (a resumed parent finds several
    finished at once), then by name: the same group is decided the same way again."""
    result = task.result() if not task.cancelled() and task.exception() is None else None
    ended = result.context.metadata.get("ended_at", 0.0) if result is not None else 0.0
    return (float(ended or 0.0), tasks[task])


async def _cancel(context: StateContext, children: Children, pending: Iterable[asyncio.Future[RunResult]],
                  tasks: Mapping[asyncio.Future[RunResult], str]) -> None:
    """Cancel the children still running and wait until they stopped; record them as cancelled unless the
    parent itself is being cancelled (then they stay resumable with it)."""
    pending = list(pending)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        return
    for task in pending:
        await children.cancel(context, tasks[task])
