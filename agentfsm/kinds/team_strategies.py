"""How a team's agents work together: one function per strategy, each over child runs (`runtime/children.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agentfsm.compiler.scope import make_scope, rendered
from agentfsm.kinds.machine import outcome_of
from agentfsm.runtime.children import gather, run_child
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.model import StateContext

if TYPE_CHECKING:
    from agentfsm.kinds.team import TeamState


async def sequential(team: TeamState, context: StateContext) -> dict[str, Any]:
    """One after another, in the order written; each agent's inputs see `previous` (the outputs so far)."""
    outputs: dict[str, Any] = {}
    for agent in team.agents.values():
        result = await run_child(context, agent.request(context, sees={"previous": dict(outputs)}))
        outputs[agent.name] = outcome_of(agent.name, result)
    return outputs


async def parallel(team: TeamState, context: StateContext) -> dict[str, Any]:
    """All at once (at most `max_concurrency`); `fail_fast` raises at the first failure, `collect` keeps errors."""
    fail_fast = team.spec.on_failure == "fail_fast"
    results = await gather(context, [agent.request(context) for agent in team.agents.values()],
                           max_concurrency=team.spec.max_concurrency, fail_fast=fail_fast)
    return {name: outcome_or_error(name, result) for name, result in results.items()}


def outcome_or_error(name: str, result: RunResult) -> Any:
    if result.status == "succeeded":
        return result.output
    error = result.error or {"type": f"child.{result.status}", "message": f"ended {result.status}"}
    return {"error": {**error, "run_id": result.run_id}}


async def hierarchical(team: TeamState, context: StateContext) -> Any:
    """The supervisor plans, the workers do their tasks (at once), the supervisor synthesizes their results."""
    supervisor = team.supervisor
    assert supervisor is not None  # the spec's check
    workers = list(team.agents)
    plan = outcome_of("supervisor", await run_child(context, supervisor.request(
        context, given={"phase": "plan", "workers": workers}, name="supervisor")))
    assignments = assign(plan, workers, team.name)
    requests = [team.agents[worker].request(context, given={"task": task}, name=child)
                for child, worker, task in assignments]
    results = await gather(context, requests, max_concurrency=team.spec.max_concurrency)
    outputs = {name: result.output for name, result in results.items()}
    return outcome_of("supervisor.synthesize", await run_child(context, supervisor.request(
        context, given={"phase": "synthesize", "results": outputs}, name="supervisor.synthesize")))


def assign(plan: Any, workers: list[str], state: str) -> list[tuple[str, str, Any]]:
    """(child name, worker, task) for each task of a plan: worker -> task, or a list of tasks dealt round-robin
    (a worker's second task runs as `worker#2`)."""
    if isinstance(plan, dict):
        unknown = [name for name in plan if name not in workers]
        if unknown:
            raise StateError("team.bad_plan", f"the plan names {', '.join(repr(str(n)) for n in unknown)}, not a "
                             f"worker of the team (workers: {', '.join(workers)})", state=state)
        return [(name, name, task) for name, task in plan.items()]
    if isinstance(plan, list) and plan:
        dealt: list[tuple[str, str, Any]] = []
        for index, task in enumerate(plan):
            worker, turn = workers[index % len(workers)], index // len(workers) + 1
            dealt.append((worker if turn == 1 else f"{worker}#{turn}", worker, task))
        return dealt
    raise StateError("team.bad_plan", "the supervisor's plan must be a mapping from worker to task or a list of "
                     f"tasks, got {type(plan).__name__}", state=state)


async def competitive(team: TeamState, context: StateContext) -> dict[str, Any]:
    """Agents race: the first to succeed wins, or the best by `score` or by the `judge`."""
    requests = [agent.request(context) for agent in team.agents.values()]
    first = team.spec.winner == "first"
    try:
        results = await gather(context, requests, join="any" if first else "all",
                               max_concurrency=team.spec.max_concurrency, fail_fast=False)
    except StateError as exc:
        raise StateError("team.no_winner", f"no agent succeeded ({exc.message})", detail=exc.detail) from None
    succeeded = {name: result for name, result in results.items() if result.status == "succeeded"}
    if not succeeded:
        raise StateError("team.no_winner", "no agent succeeded", state=team.name)
    candidates = {name: result.output for name, result in succeeded.items()}
    if first:
        winner = min(succeeded, key=lambda name: succeeded[name].context.metadata.get("ended_at", 0.0))
    elif team.score is not None:
        scores = {name: rendered(team.score.render, {**make_scope(context), "output": output, "agent": name},
                                 "score") for name, output in candidates.items()}
        winner = max(candidates, key=lambda name: _number(scores[name], name, team.name))
    else:
        winner = await _judged(team, context, candidates)
    return {"winner": winner, "output": candidates[winner], "candidates": candidates}


def _number(value: Any, agent: str, state: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError("template.error", f"score of '{agent}' is {value!r}, not a number", state=state)
    return float(value)


async def _judged(team: TeamState, context: StateContext, candidates: dict[str, Any]) -> str:
    judge = team.judge
    assert judge is not None  # the spec's check
    verdict = outcome_of("judge", await run_child(context, judge.request(
        context, given={"candidates": candidates}, name="judge")))
    name = verdict.get("winner") if isinstance(verdict, dict) else verdict
    if not isinstance(name, str) or name.strip() not in candidates:
        raise StateError("team.bad_judgement", f"the judge chose {verdict!r}, not one of "
                         f"{', '.join(candidates)}", state=team.name)
    return name.strip()


async def collaborative(team: TeamState, context: StateContext) -> dict[str, Any]:
    from agentfsm.kinds.team_collaborative import run_collaborative

    return await run_collaborative(team, context)


STRATEGIES: dict[str, Callable[[TeamState, StateContext], Awaitable[Any]]] = {
    "sequential": sequential, "parallel": parallel, "hierarchical": hierarchical,
    "collaborative": collaborative, "competitive": competitive,
}

