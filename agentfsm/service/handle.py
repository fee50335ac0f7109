"""`RunHandle`: one stored run, with the seed's vocabulary (roll back by steps, to a point or a state; branch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfsm.history.errors import RunRefused
from agentfsm.history.diff import RunDiff
from agentfsm.history.rewrite import Rollback
from agentfsm.runtime.loop import RunResult
from agentfsm.store.base import CheckpointRow, RunRow, StepRow

if TYPE_CHECKING:
    from agentfsm.service.runs import Runs


class RunHandle:
    """One stored run: roll back, branch, summarise, diff, resume, send."""

    def __init__(self, runs: Runs, run_id: str) -> None:
        self.runs = runs
        self.id = run_id

    async def row(self) -> RunRow:
        return await self.runs.get(self.id)

    async def rollback(self, steps: int = 1) -> Rollback:
        """Go back `steps` steps from the head: a new branch starts there."""
        have = (await self.row()).steps
        point = have + 1 - steps
        if steps < 1 or point < 1:
            raise RunRefused(f"run {self.id} cannot go back {steps} step(s): it has {have}")
        return await self.runs.rollback(self.id, point)

    async def rollback_to_point(self, name: str) -> Rollback:
        """Go back to a named checkpoint."""
        names = [checkpoint.name for checkpoint in await self.runs.checkpoints(self.id)]
        if name not in names:
            raise RunRefused(f"run {self.id} has no checkpoint '{name}' (checkpoints: {', '.join(names) or 'none'})")
        return await self.runs.rollback(self.id, name)

    async def rollback_to_state(self, name: str) -> Rollback:
        """Go back to just before the latest visit of a state."""
        return await self.runs.rollback(self.id, f"state:{name}")

    async def create_branch(self, name: str) -> Rollback:
        return await self.runs.create_branch(self.id, name)

    async def switch_branch(self, name: str) -> RunRow:
        return await self.runs.switch_branch(self.id, name)

    async def checkpoint(self, name: str) -> CheckpointRow:
        return await self.runs.checkpoint(self.id, name)

    async def history(self, branch: str | None = None) -> list[StepRow]:
        return await self.runs.history(self.id, branch)

    async def summary(self, branch: str | None = None) -> dict[str, Any]:
        return await self.runs.summary(self.id, branch)

    async def diff(self, a: str | int, b: str | int) -> RunDiff:
        return await self.runs.diff(self.id, str(a), str(b))

    async def resume(self, **options: Any) -> RunResult:
        return await self.runs.resume(self.id, **options)

    async def send(self, event: str, data: Any = None, **options: Any) -> RunResult | None:
        return await self.runs.send(self.id, event, data, **options)
