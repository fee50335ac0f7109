"""Live progress of a run on stderr: a spinner line on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.text import Text

from agentfsm.runtime.hooks import StepRecord
from agentfsm.runtime.model import StateContext


class ProgressReporter:
    """A runtime hook printing each step (number, state, elapsed time) to `console`."""

    def __init__(self, console: Console, machine_name: str) -> None:
        self.console = console
        self.machine_name = machine_name
        self.live = console.is_terminal
        self.started = time.perf_counter()
        self.status: Status | None = None

    def on_run_start(self, context: StateContext) -> None:
        self.started = time.perf_counter()
        self.console.print(Text.assemble(("run ", "dim"), (context.run_id, "bold"), ("  ", ""),
                                         (self.machine_name, "cyan")), highlight=False)
        if self.live:
            self.status = self.console.status("starting", spinner="dots")
            self.status.start()

    def before_step(self, context: StateContext, state: str) -> None:
        if self.status is not None:
            self.status.update(f"step {context.step}  [bold]{state}[/]  {self._elapsed()}")

    def after_step(self, context: StateContext, record: StepRecord) -> None:
        line = Text.assemble(
            (f"{record.step:>4} {self._elapsed():>8}  ", "dim"),
            (record.state, "bold"),
            (f" --{record.event}--> " if record.next_state else "", "dim"),
            (record.next_state or ("" if record.error else " (end)"), "bold" if record.next_state else "dim"),
            (f"  {record.duration * 1000:.1f} ms", "dim"),
        )
        if record.retries:
            line.append(f"  ({record.retries} {'retry' if record.retries == 1 else 'retries'})", "yellow")
        if record.error:
            line.append(f"  {record.error['type']}: {record.error['message']}", "red")
        for call in record.calls:
            if call.get("kind") == "llm":
                line.append(f"  [{call['binding']}: {call['prompt_tokens']}+{call['completion_tokens']} tokens]",
                            "dim")
        self.console.print(line, highlight=False)

    def on_run_end(self, context: StateContext, result: Any) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        style = "green" if result.status == "succeeded" else "red"
        self.console.print(Text.assemble((result.status, style), (f" in {result.steps} steps, {self._elapsed()}",
                                                                  "dim")), highlight=False)

    def _elapsed(self) -> str:
        seconds = time.perf_counter() - self.started
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
