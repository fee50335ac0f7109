"""Live progress of a run on stderr: a spinner line on a terminal, plain lines otherwise.

On a terminal, the reporter also watches the reply of the current `llm` state as it
streams in (it sets `context.on_token`): the end of the text so far is shown on the
spinner line. Elsewhere (a pipe, a file, CI logs) it sets no observer, so the providers
do not stream and the output stays one line per step.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text

from agentfsm.runtime.hooks import StepRecord
from agentfsm.runtime.model import StateContext

STREAM_TAIL = 60
"""How many characters of the streamed reply the spinner line shows: the latest ones."""
STREAM_REFRESH = 0.05
"""At most this often (seconds) does a token redraw the spinner line; the spinner's own refresh does the rest."""


class ProgressReporter:
    """A runtime hook printing each step (number, state, elapsed time) to `console`.

    With `stream` (the default) and a terminal, LLM replies are shown as they arrive.
    """

    def __init__(self, console: Console, machine_name: str, *, stream: bool = True) -> None:
        self.console = console
        self.machine_name = machine_name
        self.live = console.is_terminal
        self.stream = stream and self.live
        self.started = time.perf_counter()
        self.status: _SpinnerLine | None = None
        self._step_label = "starting"
        self._streamed = ""
        self._drawn_at = 0.0

    def on_run_start(self, context: StateContext) -> None:
        self.started = time.perf_counter()
        self.console.print(Text.assemble(("run ", "dim"), (context.run_id, "bold"), ("  ", ""),
                                         (self.machine_name, "cyan")), highlight=False)
        if self.live:
            self.status = _SpinnerLine(self.console, "starting")
            self.status.start()
        if self.stream:
            context.on_token = self.on_token

    def before_step(self, context: StateContext, state: str) -> None:
        self._streamed = ""
        self._drawn_at = 0.0
        self._step_label = f"step {context.step}  [bold]{escape(state)}[/]"
        if self.status is not None:
            self.status.update(f"{self._step_label}  {self._elapsed()}")

    def on_token(self, state: str, delta: str) -> None:
        """The token observer: keep the reply's tail and show it on the spinner line."""
        if self.status is None:
            return
        self._streamed = (self._streamed + delta)[-4 * STREAM_TAIL:]
        now = time.perf_counter()
        first = self._drawn_at == 0.0
        if not first and now - self._drawn_at < STREAM_REFRESH:
            return
        self._drawn_at = now
        tail = " ".join(self._streamed.split())[-STREAM_TAIL:]
        self.status.update(f"{self._step_label}  {self._elapsed()}  [dim]{escape(tail)}[/]")
        if first:
            self.status.refresh()  # the first words show at once, however short the reply

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
        if context.on_token == self.on_token:
            context.on_token = None
        if self.status is not None:
            self.status.stop()
            self.status = None
        style = {"succeeded": "green", "waiting": "yellow"}.get(result.status, "red")
        preposition = "after" if result.status == "waiting" else "in"
        steps = f"{result.steps} step{'' if result.steps == 1 else 's'}"
        self.console.print(Text.assemble((result.status, style), (f" {preposition} {steps}, {self._elapsed()}", "dim")),
                           highlight=False)

    def _elapsed(self) -> str:
        seconds = time.perf_counter() - self.started
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


class _SpinnerLine:
    """What `console.status` makes (a transient spinner with a text), plus a way to redraw it at once."""

    def __init__(self, console: Console, text: str) -> None:
        self.spinner = Spinner("dots", text=text, style="status.spinner")
        self.live = Live(self.spinner, console=console, refresh_per_second=12.5, transient=True)

    def start(self) -> None:
        self.live.start()

    def update(self, text: str) -> None:
        self.spinner.update(text=text)

    def refresh(self) -> None:
        self.live.refresh()

    def stop(self) -> None:
        self.live.stop()
