"""Diagrams of machines and of runs, in any format: what `agentfsm diagram`, the web UI's run page and
`StateMonitor`/`StateDebugger` draw.

    >>> import asyncio, agentfsm
    >>> from agentfsm.service.diagrams import run_diagram
    >>> async def main():
    ...     async with agentfsm.Runs("memory://diagram-doc") as runs:
    ...         done = await runs.start("machines/hello.yaml", {"name": "Ada"})
    ...         return await run_diagram(runs, done.run_id)
    >>> print(asyncio.run(main()).splitlines()[-3])
        classDef ended fill:#e6f4ea,stroke:#188038,stroke-width:3px

A run-aware diagram is the machine's diagram with the run's path drawn over it: each arrow the run took
carries how often it took it, the states it never entered are dimmed, and the state it is in is marked by
how it stands there (current, waiting, paused, failed, cancelled, ended). The path is read from the run's
stored steps (one page at a time), the machine from the source stored with the run, or from a file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agentfsm.diagram.dot import render_dot
from agentfsm.diagram.graphviz import GraphvizError, render_image
from agentfsm.diagram.mermaid import render
from agentfsm.diagram.model import DiagramGraph
from agentfsm.observability.diagram import (
    graph_from_spec,
    graph_with_coverage,
    machine_graph,
)
from agentfsm.observability.run_diagram import RunPath
from agentfsm.runtime.machine import StateMachine
from agentfsm.service.browse import stored_spec
from agentfsm.service.runs import RunRow, Runs
from agentfsm.spec.loader import load_spec
from agentfsm.spec.models import MachineSpec
from agentfsm.spec.problems import InputError

MAX_DEPTH = 8
"""Levels of child runs drawn inside composite states."""
FORMATS = ("mermaid", "dot", "svg", "png")
"""What a diagram can be written as: Mermaid or Graphviz source (text), or a picture drawn by the local `dot`."""

__all__ = ["FORMATS", "coverage_diagram", "draw", "live_diagram", "machine_diagram", "run_diagram", "run_graph", "run_path"]


def draw(graph: DiagramGraph, diagram_format: str = "mermaid") -> str | bytes:
    """`graph` as `diagram_format`: text for mermaid and dot, bytes for svg and png (Graphviz's `dot` draws
    them; without it, an InputError says how to install it)."""
    if diagram_format not in FORMATS:
        raise InputError(f"--format: '{diagram_format}' is not a format ({', '.join(FORMATS)})")
    if diagram_format == "mermaid":
        return render(graph)
    source = render_dot(graph)
    if diagram_format == "dot":
        return source
    try:
        return render_image(source, diagram_format)
    except GraphvizError as exc:
        raise InputError(str(exc)) from None


def machine_diagram(file: str | Path, diagram_format: str = "mermaid") -> str | bytes:
    """A machine file's diagram (its states' kinds visible: choices, waits, bindings)."""
    return draw(graph_from_spec(load_spec(Path(file)).spec), diagram_format)


def coverage_diagram(file: str | Path, report: str | Path, diagram_format: str = "mermaid") -> str | bytes:
    """A machine file's diagram with a coverage report's counts (`agentfsm test --coverage REPORT`)."""
    from agentfsm.service.tests import machine_coverage

    graph = graph_with_coverage(load_spec(Path(file)).spec, machine_coverage(Path(report), Path(file)))
    return draw(graph, diagram_format)


def live_diagram(machine: StateMachine, path: RunPath | None = None, diagram_format: str = "mermaid") -> str | bytes:
    """A machine's diagram with a run it watched live drawn over it (`path`: a `RunPath` attached to the run as
    an observer), as `StateMonitor.get_diagram` and `StateDebugger.generate_mermaid_diagram` draw it."""
    graph = machine_graph(machine)
    return draw(path.draw(graph) if path is not None else graph, diagram_format)


async def run_path(runs: Runs, run_id: str, branch: str | None = None) -> RunPath:
    """What a run did on a branch (default: its head), read from its stored steps a page at a time."""
    run = await runs.get(run_id)
    path = RunPath(run.id)
    async for row in runs.iter_history(run.id, branch):
        path.add_step(row.state, row.event, row.next_state, error=row.error)
    on_head = branch is None or branch == run.head
    if on_head:
        path.status = run.status
        if run.status == "waiting" and run.waiting:
            path.current = run.waiting.get("state", path.current)
    elif path.current is not None and path.status == "running":
        path.status = "paused"  # another branch stands where it was left
    return path


async def run_graph(runs: Runs, run_id: str, *, file: str | Path | None = None,
                    branch: str | None = None) -> DiagramGraph:
    """The diagram of a run's machine (the source stored with the run, or `file`) with the run's path over it."""
    run = await runs.get(run_id)
    spec = await _machine_of(runs, run) if file is None else load_spec(Path(file)).spec
    path = await run_path(runs, run.id, branch)
    if path.current is None and path.status in ("queued", "running", "paused"):
        path.current = spec.initial  # no step yet: it stands before its first state
    return await _with_children(runs, run.id, path.draw(graph_from_spec(spec)))


async def _with_children(runs: Runs, run_id: str, graph: DiagramGraph, depth: int = 0) -> DiagramGraph:
    """Composite states with the paths of the child runs they started drawn inside: in each region (a nested
    machine, a branch, an agent written inline) the newest child run of that name."""
    if not graph.regions or depth > MAX_DEPTH:
        return graph
    newest: dict[str, RunRow] = {}
    for child in await runs.list(parent=run_id):  # newest first
        newest.setdefault(child.child_name or "", child)
    regions = {}
    for name, parts in graph.regions.items():
        drawn = []
        for label, inner in parts:
            child = newest.get(label or name)
            if child is not None:
                path = await run_path(runs, child.id)
                if path.current in inner.kinds:  # drawn inline (a machine file shows only its name)
                    inner = await _with_children(runs, child.id, path.draw(inner), depth + 1)
            drawn.append((label, inner))
        regions[name] = drawn
    return replace(graph, regions=regions)


async def run_diagram(runs: Runs, run_id: str, diagram_format: str = "mermaid", *, file: str | Path | None = None,
                      branch: str | None = None, marks: bool = True) -> str | bytes:
    """A run-aware diagram of one run (see the module's text), as `diagram_format` (one of `FORMATS`).

    `marks=False` leaves the states unmarked (the arrows keep their counts), for a page that marks them itself
    as the run moves (the web UI)."""
    if diagram_format not in FORMATS:
        draw(DiagramGraph(None), diagram_format)  # refused before the store is read
    graph = await run_graph(runs, run_id, file=file, branch=branch)
    return draw(graph if marks else replace(graph, run=None), diagram_format)


async def _machine_of(runs: Runs, run: RunRow) -> MachineSpec:
    loaded = await stored_spec(runs, run)
    if loaded is None:
        raise InputError(f"run {run.id} was started from a machine built in Python, so no machine is stored with "
                         "it: draw it with StateMachine.visualize(), or pass its file (diagram FILE --run RUN)")
    return loaded.spec
