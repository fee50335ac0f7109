"""What the agents of a run (its child runs: team agents, branches, nested machines) are doing, as it happens.

In a pipe: one line per agent step (`  [writer] 3 draft --> read`). On a terminal: a live
table under the run's live line, one row per agent (name, current state, steps, status),
redrawn with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentfsm.observability.progress import Screen
from agentfsm.observability.terminal import visible
from agentfsm.runtime.events import ChildEnded, ChildStarted, ChildStep

MAX_ROWS = 12
"""At most this many agents in the live table (the others are counted on one more row)."""


class AgentLines:
    """An observer writing one line per step of any agent (child run) of the run."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen

    def on_child_step(self, *, event: ChildStep) -> None:
        style = self.screen.style
        target = event.next_state if event.next_state is not None else "(end)"
        line = (f"{style(f'{self.screen.elapsed():>13}  ', 'dim')}{style(f'[{visible(event.child)}]', 'cyan')} "
                f"{event.step:>3} {visible(event.state)} {style('-->', 'dim')} {visible(target)}")
        if event.error:
            line += style(f"  {event.error.get('type')}: {visible(str(event.error.get('message')))}", "red")
        self.screen.line(line)


@dataclass(slots=True)
class _Row:
    state: str = "-"
    steps: int = 0
    status: str = "running"


class AgentTable:
    """An observer keeping the live table of agents (drawn by the live line on a terminal)."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.rows: dict[str, _Row] = {}

    def on_child_started(self, *, event: ChildStarted) -> None:
        self.rows[event.child] = _Row(status="done" if event.reused else "running")

    def on_child_step(self, *, event: ChildStep) -> None:
        row = self.rows.setdefault(event.child, _Row())
        row.state, row.steps = event.state, row.steps + 1

    def on_child_ended(self, *, event: ChildEnded) -> None:
        self.rows.setdefault(event.child, _Row()).status = event.status

    def lines(self) -> list[str]:
        """The table's rows (none before any agent started)."""
        if not self.rows:
            return []
        style = self.screen.style
        width = min(max(len(name) for name in self.rows), 24)
        shown = list(self.rows.items())[:MAX_ROWS]
        lines = [style(f"  {'agent':<{width}}  {'state':<16} {'steps':>5}  status", "dim")]
        for name, row in shown:
            colour = {"succeeded": "green", "running": "yellow"}.get(row.status, "red")
            lines.append(f"  {visible(name)[:width]:<{width}}  {visible(row.state)[:16]:<16} {row.steps:>5}  "
                         f"{style(row.status, colour)}")
        if len(self.rows) > MAX_ROWS:
            lines.append(style(f"  ... and {len(self.rows) - MAX_ROWS} more", "dim"))
        return lines
