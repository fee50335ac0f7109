"""`Driver`: the operations that advance a run, for a front end that must answer before the run is done.

The web UI cannot hold a request open while a run goes on for minutes: each operation here calls
the same `Runs` method the CLI calls, waits until the run has started moving (or was refused), and
lets it go on in the background. A refusal (a run that does not wait for that event, a finished run,
a lease another process holds, a machine that no longer loads) is raised as the CLI shows it,
before anything moved; what happens after that is recorded in the store like any run's steps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from agentfsm.history.rewrite import Rollback
from agentfsm.runtime.events import RunStarted
from agentfsm.runtime.ids import new_run_id
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.service.runs import Runs

logger = logging.getLogger("agentfsm")


class _Moving:
    """An observer that says when the loop has started (or continued) its run."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def on_run_started(self, *, event: RunStarted) -> None:
        self.started.set()


class Driver:
    """Starts, continues and rolls back runs in `runs`, each left to go on in a background task; `observers`
    watch every run it advances (the logs' run context and OpenTelemetry spans, as for the CLI's runs)."""

    def __init__(self, runs: Runs, observers: Iterable[object] = ()) -> None:
        self.runs = runs
        self.observers = tuple(observers)
        self.tasks: set[asyncio.Task[RunResult | tuple[Rollback, RunResult]]] = set()

    async def start(self, machine: StateMachine, inputs: Mapping[str, Any]) -> str:
        """Record and start a run of a ready machine (inputs checked by the caller); its id."""
        run_id = new_run_id()
        await self._launch(lambda observers: self.runs.start(machine, inputs, observers=observers, run_id=run_id))
        return run_id

    async def send(self, run_id: str, event: str, data: Any = None) -> None:
        """`agentfsm send`: deliver an event to a run waiting for it, and continue the run."""
        await self._launch(lambda observers: self.runs.send(run_id, event, data, observers=observers))

    async def resume(self, run_id: str) -> None:
        """`agentfsm resume`: continue a paused or interrupted run from its head."""
        await self._launch(lambda observers: self.runs.resume(run_id, observers=observers))

    async def rollback(self, run_id: str, to: str | int, *, branch: str | None = None,
                       resume: bool = False) -> Rollback:
        """`agentfsm rollback [--resume]`: a new branch at an earlier point, made the head; continued with `resume`."""
        if not resume:
            return await self.runs.rollback(run_id, to, branch=branch)
        made: list[Rollback] = []
        await self._launch(lambda observers: self.runs.rollback_and_resume(
            run_id, to, branch=branch, observers=observers, on_rolled_back=made.append))
        return made[0]

    async def _launch(self, advance: Callable[[list[object]], Awaitable[Any]]) -> None:
        """Run `advance` in a task; return once its run has started moving, raise what refused it before that."""
        moving = _Moving()

        async def go() -> Any:
            try:
                return await advance([*self.observers, moving])
            except Exception as exc:  # noqa: BLE001 - once moving, a failure is the run's, recorded with it
                if not moving.started.is_set():
                    raise
                logger.warning("run advanced in the background stopped: %s", exc)
                return None

        task = asyncio.create_task(go())
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        started = asyncio.create_task(moving.started.wait())
        try:
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)

    async def close(self) -> None:
        """Stop every run still advancing here: each is left paused at its last recorded step."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
