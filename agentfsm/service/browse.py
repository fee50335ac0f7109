"""Reading runs a page at a time, as a browser shows them: what the web UI serves (and any script may call).

Every read is bounded whatever the store holds: a page of runs by a keyset cursor, a window of
steps, one step with the context around it (rebuilt from the nearest snapshot), and what changed
in a run since a caller last looked (one row, plus only the steps that are new).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentfsm.history.diff import compare_data
from agentfsm.history.lineage import context_after, last_step, lineage, stream_branch
from agentfsm.history.points import Point
from agentfsm.history.trace_read import entries_of, resolve
from agentfsm.service.costs import Cost, Pricings, run_usage, usage_cost
from agentfsm.service.runs import Runs
from agentfsm.spec.loader import LoadedSpec, load_spec_text, validate_file
from agentfsm.spec.models import InputSpec, MachineSpec
from agentfsm.spec.problems import InputError, Problem
from agentfsm.store.base import STATUSES, BranchRow, CheckpointRow, RunFilter, RunRow, StepRow

RUNS_PAGE = 50
STEPS_PAGE = 100
MOST = 500
"""The largest page a caller may ask for (runs or steps)."""
FOLDED = 2000
"""The most child runs (at every level) a page of runs folds under its runs; a run's own page lists all of its."""


@dataclass(slots=True)
class RunsPage:
    """Top-level runs, newest first, each with its child runs (and theirs) folded under it; `cursor` reads the next
    page."""

    runs: list[RunRow]
    children: dict[str, list[RunRow]]
    cursor: str | None
    costs: dict[str, Cost] = field(default_factory=dict)
    """Run id -> what its LLM calls cost (the runs and children listed)."""


def page_size(limit: int | None, default: int) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= MOST:
        raise InputError(f"limit: {limit} is not between 1 and {MOST}")
    return limit


def cursor_of(run: RunRow) -> str:
    """Where the page after `run` starts, as text a client hands back."""
    return f"{run.created_at!r}_{run.id}"


def parse_cursor(text: str) -> tuple[float, str]:
    moment, _, run_id = text.partition("_")
    try:
        return float(moment), run_id
    except ValueError:
        raise InputError(f"cursor: '{text}' is not a cursor this server gave") from None


PricedRuns = dict[tuple[str, int, float], Cost]
"""(run id, steps, updated at) -> what the run had cost then: a live page reprices only the runs that moved."""


async def runs_page(runs: Runs, *, status: str | None = None, machine: str | None = None,
                    cursor: str | None = None, limit: int | None = None, priced: PricedRuns | None = None) -> RunsPage:
    """A page of top-level runs (newest first) with their children; the same `status`/`machine` filters as `runs`.

    `priced` (kept by a caller that reads the page again and again) holds the costs found before; it is
    left holding this page's."""
    if status is not None and status not in STATUSES:
        raise InputError(f"status: '{status}' is not a status ({', '.join(STATUSES)})")
    size = page_size(limit, RUNS_PAGE)
    where = RunFilter((status,) if status else (), machine or None, None, size + 1, top_level=True,
                      before=parse_cursor(cursor) if cursor else None)
    found = await runs.store.list_runs(where)
    shown = found[:size]
    children = await descendants(runs, [run.id for run in shown])
    listed = [*shown, *(kid for kids in children.values() for kid in kids)]
    costs = await _costs(runs, listed, {} if priced is None else priced)
    return RunsPage(shown, children, cursor_of(shown[-1]) if len(found) > size else None, costs)


async def _costs(runs: Runs, listed: list[RunRow], priced: PricedRuns) -> dict[str, Cost]:
    """What each listed run cost, priced again only where it moved since `priced` was filled."""
    pricings = Pricings(runs.store)
    found: PricedRuns = {}
    for run in listed:
        key = (run.id, run.steps, run.updated_at)
        cost = priced.get(key)
        found[key] = cost if cost is not None else usage_cost(await run_usage(runs.store, run), await pricings.of(run))
    priced.clear()
    priced.update(found)
    return {run_id: cost for (run_id, _, _), cost in found.items()}


async def descendants(runs: Runs, run_ids: list[str]) -> dict[str, list[RunRow]]:
    """The child runs of `run_ids` at every level (parent id -> its children, newest first): one indexed read per
    level of nesting, at most `FOLDED` runs in all, so a page costs the same whatever the store holds."""
    children: dict[str, list[RunRow]] = {}
    level, room = run_ids, FOLDED
    while level and room > 0:
        kids = await runs.store.list_runs(RunFilter(parents=tuple(level), limit=room))
        for kid in kids:
            children.setdefault(kid.parent_run or "", []).append(kid)
        level, room = [kid.id for kid in kids], room - len(kids)
    return children


@dataclass(slots=True)
class RunView:
    """One run as its page opens: the branch shown, where it stands, and the machine it runs."""

    run: RunRow
    branch: str
    branches: list[BranchRow]
    checkpoints: list[CheckpointRow]
    last: int
    """The number of the branch's last step."""
    current: str | None
    """The state the run is in on this branch: waiting in, about to run, or ended in."""
    visits: dict[str, int]
    spec: MachineSpec | None
    """The machine the run started with (None for one built in Python)."""
    children: list[RunRow] = field(default_factory=list)
    """The runs it started (a nested machine, parallel branches, a team's agents), newest first."""
    cost: Cost | None = None
    """What the LLM calls on the branch's path cost (its children's included)."""


_SPECS: dict[str, LoadedSpec] = {}


async def stored_spec(runs: Runs, run: RunRow) -> LoadedSpec | None:
    """The machine a run started with, read once per digest (a digest names one text for good)."""
    if run.digest is None:
        return None
    if run.digest not in _SPECS:
        text = await runs.store.source(run.digest)
        if text is None:
            return None
        if len(_SPECS) > 64:
            _SPECS.clear()
        _SPECS[run.digest] = load_spec_text(text, run.path or f"{run.machine}.yaml")
    return _SPECS[run.digest]


async def run_view(runs: Runs, run_id: str, branch: str | None = None) -> RunView:
    run = await runs.get(run_id)
    branches = await runs.store.branches(run.id)
    shown = branch or run.head
    segments = lineage(branches, shown)
    newest = await last_step(runs.store, run.id, segments)
    where = await runs.position(run.id, Point(shown, newest.step + 1, "head"))
    current = newest.next_state or newest.state
    if shown == run.head and run.status == "waiting" and run.waiting:
        current = run.waiting.get("state", current)
    loaded = await stored_spec(runs, run)
    children = await runs.store.list_runs(RunFilter(parent_run=run.id, limit=MOST))
    cost = usage_cost(where.usage, await Pricings(runs.store).of(run))
    return RunView(run, shown, branches, await runs.store.checkpoints(run.id), newest.step, current, where.visits,
                   loaded.spec if loaded is not None else None, children, cost)


@dataclass(slots=True)
class StepsWindow:
    steps: list[StepRow]
    first: int
    last: int
    """The branch's last step: the window may end before it."""


async def steps_window(runs: Runs, run_id: str, *, branch: str | None = None, first: int | None = None,
                       limit: int | None = None) -> StepsWindow:
    """Steps `first`.. of a branch (default: the newest page), oldest first, as far as `limit` goes."""
    size = page_size(limit, STEPS_PAGE)
    run = await runs.get(run_id)
    segments = lineage(await runs.store.branches(run.id), branch or run.head)
    last = (await last_step(runs.store, run.id, segments)).step
    start = max(1, last - size + 1) if first is None else max(1, first)
    rows = [row async for row in stream_branch(runs.store, run.id, segments, start, start + size - 1)]
    return StepsWindow(rows, start, last)


@dataclass(slots=True)
class StepView:
    """One step, the context after it, and what it changed from the context before it."""

    row: StepRow
    context: dict[str, Any]
    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)
    """The step's trace entries (its LLM requests and replies whole, its tool calls...), oldest first."""


async def step_view(runs: Runs, run_id: str, step: int, branch: str | None = None) -> StepView:
    run = await runs.get(run_id)
    shown = branch or run.head
    segments = lineage(await runs.store.branches(run.id), shown)
    rows = [row async for row in stream_branch(runs.store, run.id, segments, step, step)]
    if step < 1 or not rows:
        last = (await last_step(runs.store, run.id, segments)).step
        raise InputError(f"run {run.id} has no step {step} on branch '{shown}' (its steps are 1 to {last})")
    before, _ = await context_after(runs.store, run.id, segments, step - 1)
    after, _ = await context_after(runs.store, run.id, segments, step)
    added, removed, changed = compare_data(before, after)
    # the branch that recorded the step (an inherited step is its parent branch's) keeps its trace
    traced = [entry for row in await runs.store.step_trace(run.id, rows[0].branch, step)
              for entry in entries_of(run.id, row)]
    return StepView(rows[0], after, added, removed, changed, await resolve(runs.store, run.id, traced))


@dataclass(slots=True)
class RunChange:
    """What a run did since it was `seen`: its row now, and the steps it added (`reset`: read it again whole,
    because it moved to another branch or went back)."""

    run: RunRow
    steps: list[StepRow]
    reset: bool


async def run_change(runs: Runs, run_id: str, seen: RunRow | None) -> RunChange | None:
    """None when nothing changed; costs one row read, plus the new steps when there are some."""
    run = await runs.get(run_id)
    if seen is not None and (run.status, run.head, run.steps, run.updated_at) == (
            seen.status, seen.head, seen.steps, seen.updated_at):
        return None
    if seen is None or run.head != seen.head or run.steps < seen.steps:
        return RunChange(run, [], seen is not None)
    new = await runs.store.steps(run.id, run.head, seen.steps + 1, run.steps) if run.steps > seen.steps else []
    return RunChange(run, new, False)


# -- machine files in a folder ------------------------------------------------------------------------------

_SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages"})
MOST_FILES = 1000


def machine_files(root: Path) -> list[str]:
    """YAML files under `root` (relative, sorted), skipping hidden folders and installed packages."""
    found: list[str] = []
    for path in _walk(root.resolve()):
        found.append(path.relative_to(root.resolve()).as_posix())
        if len(found) >= MOST_FILES:
            break
    return sorted(found)


def _walk(folder: Path) -> Iterator[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name in _SKIPPED or entry.is_symlink():
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.suffix in (".yaml", ".yml"):
            yield entry


def machine_path(root: Path, relative: str) -> Path:
    """The file `relative` names inside `root`; anything outside it (`..`, an absolute path, a link out) is refused."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path.suffix not in (".yaml", ".yml"):
        raise InputError(f"{relative}: not a machine file in {base}")
    if not path.is_file():
        raise InputError(f"{relative}: no such file in {base}")
    return path


@dataclass(slots=True)
class MachineView:
    """A machine file as `validate` checks it; its spec when it is valid."""

    path: str
    problems: list[Problem]
    spec: MachineSpec | None
    inputs: dict[str, InputSpec]


def machine_view(root: Path, relative: str) -> MachineView:
    path = machine_path(root, relative)
    report = validate_file(path, relative)
    spec = report.spec if report.ok else None
    return MachineView(relative, report.problems, spec, dict(spec.inputs) if spec is not None else {})
