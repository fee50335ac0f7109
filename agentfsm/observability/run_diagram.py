"""Run-aware diagrams: what a run did (the transitions it took, how often; the states it entered; where it
stands), tallied from its stored steps or live from its events, drawn over its machine's diagram.

`RunPath` is both: fed step by step (`add_step`, what `agentfsm diagram RUN` reads from the store) or
attached as an observer to a run (what `StateMonitor` and `StateDebugger` watch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from agentfsm.diagram.model import DiagramEdge, DiagramGraph, RunMarks
from agentfsm.runtime.errors import error_matches
from agentfsm.runtime.events import (
    RunEnded,
    RunPaused,
    RunStarted,
    StepEnded,
    WaitStarted,
)

STATUS_MARKS = {"queued": "current", "running": "current", "waiting": "waiting", "paused": "paused",
                "failed": "failed", "cancelled": "cancelled", "succeeded": "ended"}
"""How the state a run is in is marked, by the run's status."""


@dataclass(frozen=True, slots=True)
class Taken:
    """One transition as a run took it: from, to, on which event; the rule that matched when it is known; the
    error's type when a catch rule took it."""

    source: str
    target: str
    event: str | None
    rule: int | None = None
    error: str | None = None


@dataclass(slots=True)
class RunPath:
    """The path of one run: visits per state, transitions with how often each was taken, where the run stands."""

    run_id: str | None = None
    visits: dict[str, int] = field(default_factory=dict)
    taken: dict[Taken, int] = field(default_factory=dict)
    current: str | None = None
    status: str = "running"
    steps: int = 0

    def add_step(self, state: str | None, event: str | None, next_state: str | None, *,
                 error: dict[str, Any] | None = None, rule: int | None = None) -> None:
        """One step: `state` ran and led to `next_state` (None: the run ended there)."""
        self.steps += 1
        if state is None:
            return
        self.visits[state] = self.visits.get(state, 0) + 1
        self.current = next_state or state
        if next_state is None:
            self.status = "failed" if error is not None else "succeeded"
            return
        caught = str(error.get("type", "")) if isinstance(error, dict) else None
        move = Taken(state, next_state, event, None if caught is not None else rule, caught)
        self.taken[move] = self.taken.get(move, 0) + 1

    def marks(self) -> RunMarks:
        visits = dict(self.visits)
        if self.status == "waiting" and self.current is not None:  # entered, its step not recorded until it ends
            visits[self.current] = visits.get(self.current, 0) + 1
        return RunMarks(visits, self.current, STATUS_MARKS.get(self.status, "current"))

    def draw(self, graph: DiagramGraph) -> DiagramGraph:
        """`graph` with this path over it (see `draw_run`)."""
        return draw_run(graph, self.taken, self.marks())

    # -- as an observer of a run ------------------------------------------------------------------------------

    def on_run_started(self, *, event: RunStarted) -> None:
        if not event.resumed and event.run_id != self.run_id:
            self.visits, self.taken, self.steps = {}, {}, 0
        self.run_id, self.current, self.status = event.run_id, event.state, "running"

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.add_step(event.state, event.event, event.next_state, error=event.error, rule=event.rule)
        if event.next_state is not None:
            self.status = "running"

    def on_wait(self, *, event: WaitStarted) -> None:
        self.current, self.status = event.state, "waiting"

    def on_pause(self, *, event: RunPaused) -> None:
        if event.state is not None:
            self.current = event.state
        self.status = "paused"

    def on_run_ended(self, *, event: RunEnded) -> None:
        self.status = event.result.status
        if event.result.waiting:
            self.current = event.result.waiting.get("state", self.current)


def draw_run(graph: DiagramGraph, taken: dict[Taken, int], marks: RunMarks) -> DiagramGraph:
    """`graph` with a run over it: each arrow carries how often the run took it; a transition no arrow declares
    (a state that named its next state itself) gets an arrow of its own; `marks` says what to highlight."""
    counts = [0] * len(graph.edges)
    extra: dict[tuple[str, str, str], int] = {}
    outgoing: dict[str, list[int]] = {}
    for index, edge in enumerate(graph.edges):
        outgoing.setdefault(edge.source, []).append(index)
    for move, count in taken.items():
        found = _arrow_of(graph.edges, outgoing.get(move.source, []), move)
        if found is not None:
            counts[found] += count
        elif move.source in graph.kinds and move.target in graph.kinds:
            key = (move.source, move.target, move.event or "")
            extra[key] = extra.get(key, 0) + count
    edges = [replace(edge, taken=count) for edge, count in zip(graph.edges, counts, strict=True)]
    edges.extend(DiagramEdge(source, target, event, taken=count, declared=False)
                 for (source, target, event), count in extra.items())
    return replace(graph, edges=edges, run=marks)


def _arrow_of(edges: list[DiagramEdge], candidates: Iterable[int], move: Taken) -> int | None:
    """The declared arrow a transition took: the rule that matched when known, else the first arrow to the same
    state that answers the event (or, for a caught error, whose error types match it)."""
    caught = move.error is not None
    same = [index for index in candidates if edges[index].target == move.target and edges[index].is_error == caught]
    if move.rule is not None and not caught:
        rules = [index for index in candidates if not edges[index].is_error]
        if move.rule < len(rules) and rules[move.rule] in same:
            return rules[move.rule]
    for index in same:
        answers = edges[index].answers
        if not answers:
            return index
        if caught and error_matches(answers, move.error or ""):
            return index
        if not caught and move.event in answers:
            return index
    return same[0] if same else None
