"""The JSON views of runs, steps, checkpoints, diffs and results: what `--json` prints and what the web UI serves.

One module builds them, so every front end shows the same shapes. Each view is a plain
JSON-ready dict (non-finite floats are left to the printer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfsm.history.leases import owner_is_dead
from agentfsm.store.base import STATUSES, lease_live

if TYPE_CHECKING:
    from agentfsm.history.diff import RunDiff
    from agentfsm.history.rewrite import Rollback
    from agentfsm.runtime.loop import RunResult
    from agentfsm.service.costs import Cost
    from agentfsm.service.stats import MachineStats, RunStats
    from agentfsm.service.inspection import BranchInfo, Inspection, PointContext
    from agentfsm.service.browse import MachineView, RunChange, RunsPage, RunView, StepsWindow, StepView
    from agentfsm.store.base import CheckpointRow, RunRow, StepRow
    from agentfsm.store.queue import WorkerView

SHORT_ID = 8
"""Characters of a run id shown in tables: its random tail, which tells runs made the same minute apart."""


def short_id(run_id: str) -> str:
    """The distinguishing tail of a run id (ids start with their creation time, so their heads look alike)."""
    return run_id[-SHORT_ID:] if len(run_id) > SHORT_ID + 4 else run_id


def owner_gone(run: RunRow, now: float) -> bool:
    """A `running` run nobody advances: its owner process is dead, or its lease ran out."""
    if run.status != "running":
        return False
    return not lease_live(run.lease_owner, run.lease_expires, now) or owner_is_dead(run.lease_owner)


def status_label(run: RunRow, now: float) -> str:
    """The status as a table shows it: `running (owner gone)` for a run a worker or `resume` must pick up."""
    return f"{run.status} (owner gone)" if owner_gone(run, now) else run.status


def result_json(result: RunResult) -> dict[str, Any]:
    """How a run that was driven ended (`run`, `resume`, `send`, `rollback --resume`): the same keys whatever
    the status (`waiting` is null unless the run waits, `paused` unless it stopped before a state:
    `{state, reason, detail}`)."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "output": result.output,
        "context": result.context.data,
        "steps": result.steps,
        "error": result.error,
        "usage": result.usage,
        "waiting": result.waiting,
        "paused": result.paused,
    }


def interrupted_json(run: RunRow | None) -> dict[str, Any]:
    """What `--json` prints when Ctrl-C stopped a command advancing `run` (as the store has it now, if at all):
    the keys of `result_json`, so a script reading stdout still gets them."""
    return {"run_id": None if run is None else run.id, "status": None if run is None else run.status,
            "output": None, "context": None, "steps": 0 if run is None else run.steps,
            "error": {"type": "interrupted", "message": "interrupted (Ctrl-C)"}, "usage": None,
            "waiting": None if run is None or run.status != "waiting" else run.waiting, "paused": None}


def run_json(run: RunRow, now: float) -> dict[str, Any]:
    """A stored run, as `runs --json` lists it."""
    return {"run_id": run.id, "machine": run.machine, "status": run.status, "branch": run.head, "steps": run.steps,
            "created_at": run.created_at, "updated_at": run.updated_at, "waiting": run.waiting,
            "error": run.error, "output": run.output, "owner_gone": owner_gone(run, now),
            "parent_run": run.parent_run, "child_name": run.child_name}


def step_json(row: StepRow) -> dict[str, Any]:
    """A recorded step, as `history --json` lists it (with the child runs it started, if any)."""
    shown = {"step": row.step, "branch": row.branch, "state": row.state, "event": row.event,
             "next_state": row.next_state, "started_at": row.started_at, "duration": row.duration,
             "retries": row.retries, "error": row.error}
    children = step_children(row)
    if children:
        shown["children"] = children
    return shown


def step_children(row: StepRow) -> list[dict[str, Any]]:
    """The child runs a step started or found (a nested machine, branches, agents): name, run id, status."""
    return [{"name": call.get("name"), "run_id": call.get("run_id"), "status": call.get("status")}
            for call in row.calls or () if isinstance(call, dict) and call.get("kind") == "child"]


def run_tree_json(found: list[tuple[int, RunRow]], now: float) -> list[dict[str, Any]]:
    """`runs --tree --json`: top-level runs, each with `children` (the same shape, nested)."""
    roots: list[dict[str, Any]] = []
    path: list[dict[str, Any]] = []
    for depth, run in found:
        shown = {**run_json(run, now), "parent_step": run.parent_step, "children": []}
        del path[depth:]
        (path[-1]["children"] if path else roots).append(shown)
        path.append(shown)
    return roots


def checkpoint_json(checkpoint: CheckpointRow) -> dict[str, Any]:
    return {"name": checkpoint.name, "branch": checkpoint.branch, "step": checkpoint.point,
            "created_at": checkpoint.created_at}


def rollback_json(made: Rollback) -> dict[str, Any]:
    return {"run_id": made.run_id, "branch": made.branch, "step": made.point, "state": made.state}


def diff_json(diff: RunDiff) -> dict[str, Any]:
    return {"run_id": diff.run_id, "a": diff.a, "b": diff.b, "added": diff.added, "removed": diff.removed,
            "changed": diff.changed, "transitions": diff.transitions, "fork": diff.fork, "undone": diff.undone}


def event_recorded_json(run_id: str, event: str, status: str) -> dict[str, Any]:
    return {"run_id": run_id, "event": event, "status": status, "recorded": True}


def prune_json(runs: list[RunRow], *, dry_run: bool, now: float) -> dict[str, Any]:
    return {"dry_run": dry_run, "runs": [run_json(run, now) for run in runs]}


def worker_json(view: WorkerView, now: float) -> dict[str, Any]:
    """A live worker as `agentfsm workers --json` lists it."""
    row = view.row
    return {"worker": row.id, "host": row.host, "pid": row.pid, "runs_held": view.held,
            "concurrency": row.concurrency, "machine": row.machine, "started_at": row.started_at,
            "heartbeat_at": row.heartbeat_at, "heartbeat_age": round(max(0.0, now - row.heartbeat_at), 3)}


def cost_json(cost: Cost) -> dict[str, Any]:
    """Tokens and USD per LLM binding and in total (`cost` null where no price is known, never guessed)."""
    return {"bindings": {one.binding: {"model": one.model, "calls": one.calls, "prompt_tokens": one.prompt_tokens,
                                       "completion_tokens": one.completion_tokens, "tokens": one.tokens,
                                       "cost": _usd(one.cost)} for one in cost.bindings},
            "calls": cost.calls, "prompt_tokens": cost.prompt_tokens, "completion_tokens": cost.completion_tokens,
            "tokens": cost.tokens, "cost": _usd(cost.cost), "unpriced": cost.unpriced}


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, 8)


def stats_json(stats: RunStats) -> dict[str, Any]:
    """`stats RUN --json`: the run's own figures; with child runs, `children` (each this shape) and `total`."""
    from agentfsm.service.stats import summarize

    run = stats.run
    shown = {"run_id": run.id, "machine": run.machine, "status": run.status, "agent": run.child_name,
             "steps": stats.steps, "duration": stats.duration,
             "states": {name: {"visits": len(durations), **summarize(durations)}
                        for name, durations in stats.states.items()},
             "transitions": [{"source": source, "target": target, "event": event, "count": count}
                             for (source, target, event), count in stats.transitions.most_common()],
             "errors": dict(stats.errors.most_common()),
             "retries": {"total": sum(stats.retries.values()), "by_state": dict(stats.retries)},
             **_spending_json(stats), "memory": _memory_json(stats.memory)}
    if stats.children:
        shown["children"] = [stats_json(child) for child in stats.children]
        shown["total"] = _total_json([stats, *stats.descendants()])
    return shown


def _spending_json(stats: RunStats) -> dict[str, Any]:
    from agentfsm.service.stats import summarize

    llm = {binding: {"models": dict(one.models), "calls": one.calls, "failures": one.failures,
                     "prompt_tokens": one.prompt_tokens, "completion_tokens": one.completion_tokens,
                     "latency": summarize(one.latencies), "cost": _usd(one.cost)} for binding, one in stats.llm.items()}
    tools = {tool: {"calls": one.calls, "failures": one.failures, "duration": summarize(one.durations)}
             for tool, one in stats.tools.items()}
    return {"llm": llm, "tools": tools, **_usage_totals([stats])}


def _usage_totals(every: list[RunStats]) -> dict[str, Any]:
    calls = [one for stats in every for one in stats.llm.items()]
    priced = [one.cost for _, one in calls if one.cost is not None]
    prompt = sum(one.prompt_tokens for _, one in calls)
    completion = sum(one.completion_tokens for _, one in calls)
    return {"tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
            "cost": _usd(sum(priced)) if priced else None,
            "unpriced": sorted({binding for binding, one in calls
                                if one.cost is None and one.prompt_tokens + one.completion_tokens})}


def _memory_json(samples: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = [sample["rss"] for sample in samples if isinstance(sample.get("rss"), int)]
    peaks = [sample["peak"] for sample in samples if isinstance(sample.get("peak"), int)]
    return {"peak": max(peaks + sizes) if peaks or sizes else None, "last": sizes[-1] if sizes else None,
            "min": min(sizes) if sizes else None, "samples": samples}


def _total_json(every: list[RunStats]) -> dict[str, Any]:
    """A run and its descendants together: steps, LLM and tool calls, tokens, cost, errors, retries."""
    errors: dict[str, int] = {}
    for stats in every:
        for kind, count in stats.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return {"runs": len(every), "steps": sum(stats.steps for stats in every),
            "llm_calls": sum(one.calls for stats in every for one in stats.llm.values()),
            "tool_calls": sum(one.calls for stats in every for one in stats.tools.values()),
            "errors": errors, "retries": sum(sum(stats.retries.values()) for stats in every),
            **_usage_totals(every),
            "memory_peak": _memory_json([sample for stats in every for sample in stats.memory])["peak"]}


def machine_stats_json(stats: MachineStats) -> dict[str, Any]:
    """`stats --machine NAME --json`."""
    from agentfsm.service.stats import summarize

    steps = stats.steps
    return {"machine": stats.machine, "since": stats.since, "runs": stats.runs, "statuses": dict(stats.statuses),
            "success_rate": stats.success_rate, "mean_steps": sum(steps) / len(steps) if steps else 0.0,
            "duration": summarize(stats.durations),
            "llm_calls": stats.llm_calls,
            "tokens": {"prompt": stats.prompt_tokens, "completion": stats.completion_tokens,
                       "total": stats.prompt_tokens + stats.completion_tokens},
            "cost": _usd(stats.cost), "unpriced": sorted(stats.unpriced)}


# -- the web UI's pages (agentfsm.service.browse) -----------------------------------------------------------

FINISHED = ("succeeded", "failed", "cancelled")


def tokens(usage: dict[str, Any]) -> int:
    """Prompt and completion tokens of every LLM binding a run used."""
    return sum(int(used.get("prompt_tokens", 0)) + int(used.get("completion_tokens", 0))
               for used in usage.values() if isinstance(used, dict))


def listed_run_json(run: RunRow, now: float) -> dict[str, Any]:
    """A run as the runs page lists it: `run_json`, its duration (so far) and the tokens it used."""
    end = run.updated_at if run.status in FINISHED or run.status == "waiting" else now
    return {**run_json(run, now), "duration": max(0.0, end - run.created_at), "tokens": tokens(run.usage),
            "usage": run.usage}


def runs_page_json(page: RunsPage, now: float) -> dict[str, Any]:
    def folded(run: RunRow) -> dict[str, Any]:  # a child run's children under it, at every level
        cost = page.costs.get(run.id)
        return {**listed_run_json(run, now), "cost": None if cost is None else _usd(cost.cost),
                "unpriced": [] if cost is None else cost.unpriced,
                "children": [folded(kid) for kid in page.children.get(run.id, [])]}

    return {"runs": [folded(run) for run in page.runs], "cursor": page.cursor, "statuses": list(STATUSES)}


def run_view_json(view: RunView, now: float) -> dict[str, Any]:
    return {"run": listed_run_json(view.run, now), "branch": view.branch, "last_step": view.last,
            "current": view.current, "visits": view.visits,
            "branches": [{"name": b.name, "parent": b.parent, "fork": b.fork, "created_at": b.created_at}
                         for b in view.branches],
            "checkpoints": [checkpoint_json(checkpoint) for checkpoint in view.checkpoints],
            "states": list(view.spec.states) if view.spec is not None else [],
            "children": [listed_run_json(kid, now) for kid in view.children],
            "breakpoints": list(view.run.breakpoints),
            "cost": None if view.cost is None else cost_json(view.cost)}


def steps_window_json(window: StepsWindow) -> dict[str, Any]:
    return {"steps": [step_json(row) for row in window.steps], "first": window.first, "last_step": window.last}


def step_view_json(view: StepView) -> dict[str, Any]:
    """One step whole: its row, its event's data and result, its LLM and tool calls, the context and its change."""
    row = view.row
    # the trace keeps a tool call whole (its result too): shown in the keys the step row's record has
    traced_tools = [{"kind": "tool", "binding": entry.get("tool"), "args": entry.get("arguments"),
                     "result": entry.get("result"), "error": entry.get("error"), "duration": entry.get("duration"),
                     "via": entry.get("via")}
                    for entry in view.trace if entry.get("kind") == "tool_call"]
    return {**step_json(row), "event_data": row.event_data, "result": row.result,
            "llm_calls": [call for call in row.calls if call.get("kind") == "llm"],
            "llm_exchanges": [entry for entry in view.trace if entry.get("kind") == "llm_call"],
            "tool_calls": traced_tools or [call for call in row.calls if call.get("kind") == "tool"],
            "context": view.context, "added": view.added, "removed": view.removed, "changed": view.changed}


def run_change_json(change: RunChange, now: float) -> dict[str, Any]:
    return {"run": listed_run_json(change.run, now), "steps": [step_json(row) for row in change.steps],
            "reset": change.reset}


def machine_view_json(view: MachineView) -> dict[str, Any]:
    return {"path": view.path, "valid": view.spec is not None,
            "problems": [{**found.as_dict(), "text": str(found)} for found in view.problems],
            "name": view.spec.name if view.spec is not None else None,
            "description": view.spec.description if view.spec is not None else None,
            "inputs": {name: spec.model_dump(mode="json") for name, spec in view.inputs.items()}}


# -- looking into one run (agentfsm.service.inspection) -------------------------------------------------------


def point_context_json(at: PointContext) -> dict[str, Any]:
    """`show RUN POINT --json`: the context just before step `step` of `branch` (`state` about to run)."""
    return {"run_id": at.run_id, "point": at.label, "branch": at.branch, "step": at.point, "state": at.state,
            "context": at.context, "visits": at.visits}


def branch_json(branch: BranchInfo) -> dict[str, Any]:
    return {"name": branch.name, "parent": branch.parent, "fork": branch.fork, "last_step": branch.last,
            "state": branch.state, "status": branch.status, "head": branch.head, "created_at": branch.created_at}


def inspection_json(view: Inspection, now: float) -> dict[str, Any]:
    """`inspect RUN --json`: the run, where it stands, its path, what went wrong last, its last LLM call, its cost,
    its context (long values cut, secret-looking ones masked) and its child runs."""
    return {"run": run_json(view.run, now), "branch": view.branch, "current": view.current, "paused": view.paused,
            "path": view.path, "checkpoints": [checkpoint_json(c) for c in view.checkpoints],
            "branches": [branch_json(branch) for branch in view.branches], "last_error": view.last_error,
            "last_llm": view.last_llm, "cost": cost_json(view.cost), "context": view.context,
            "children": [run_json(child, now) for child in view.children]}
