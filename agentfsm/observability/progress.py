"""Live progress of a run on a text stream (stderr): one line per step, and on a terminal a live line under them.

The live line (a spinner, the step in progress, its elapsed time and, with streaming, the
end of the LLM reply arriving) is drawn with a few ANSI control sequences, and every line
is a plain string: showing progress must cost far less than the step it reports. In a
pipe, a file or CI logs there is no live line and no colour, and the reporter does not
ask for streamed replies, so the output stays one line per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TextIO

from agentfsm.runtime.events import (
    RunEnded,
    RunPaused,
    RunStarted,
    StepEnded,
    StepStarted,
    TokenReceived,
    WaitStarted,
)

STREAM_TAIL = 60
"""How many characters of the streamed reply the live line shows: the latest ones."""
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPIN_EVERY = 0.08
"""Seconds between two frames of the spinner (and between redraws of the live line)."""

_STYLES = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_CLEAR_LINE = "\r\x1b[2K"


class ProgressReporter:
    """An observer printing each step (number, elapsed time, state, event, next state, duration) to `stream`."""

    def __init__(self, stream: TextIO, machine_name: str, *, live: bool | None = None,
                 color: bool | None = None) -> None:
        self.out = stream
        self.machine_name = machine_name
        terminal = _is_terminal(stream)
        self.live = terminal if live is None else live
        self.color = (terminal and "NO_COLOR" not in os.environ) if color is None else color
        self.started = time.perf_counter()
        self._label = "starting"
        self._tail = ""
        self._frame = 0
        self._spinning: asyncio.Task[None] | None = None

    # -- observer methods ---------------------------------------------------------------------------

    def on_run_started(self, *, event: RunStarted) -> None:
        self.started = time.perf_counter()
        self._print(f"{self._style('run ', 'dim')}{self._style(event.run_id, 'bold')}  "
                    f"{self._style(self.machine_name, 'cyan')}")
        if self.live:
            self.out.write("\x1b[?25l")  # no cursor blinking over the spinner
            self._draw()
            with contextlib.suppress(RuntimeError):  # no running loop: the line is redrawn on events only
                self._spinning = asyncio.get_running_loop().create_task(self._spin())

    def on_step_started(self, *, event: StepStarted) -> None:
        self._tail = ""
        self._label = f"step {event.step}  {self._style(event.state, 'bold')}"
        if self.live:
            self._draw()

    def on_step_ended(self, *, event: StepEnded) -> None:
        self._print(self.step_line(event))

    def on_wait(self, *, event: WaitStarted) -> None:
        self._label = f"waiting in {self._style(event.state, 'bold')}"

    def on_pause(self, *, event: RunPaused) -> None:
        self._stop()

    def on_run_ended(self, *, event: RunEnded) -> None:
        self._stop()
        result = event.result
        style = {"succeeded": "green", "waiting": "yellow"}.get(result.status, "red")
        preposition = "after" if result.status == "waiting" else "in"
        steps = f"{result.steps} step{'' if result.steps == 1 else 's'}"
        self._print(f"{self._style(result.status, style)}{self._style(f' {preposition} {steps}, {self._elapsed()}', 'dim')}")

    # -- what is shown ---------------------------------------------------------------------------------

    def step_line(self, event: StepEnded) -> str:
        """`   3   120 ms  thinking --done--> acting  4.1 ms`, then retries, the error and token counts."""
        parts = [self._style(f"{event.step:>4} {self._elapsed():>8}  ", "dim"), self._style(event.state, "bold")]
        if event.next_state is not None:
            parts += [self._style(f" --{event.event}--> ", "dim"), self._style(event.next_state, "bold")]
        elif event.error is None:
            parts.append(self._style(" (end)", "dim"))
        parts.append(self._style(f"  {event.duration * 1000:.1f} ms", "dim"))
        if event.retries:
            parts.append(self._style(f"  ({event.retries} {'retry' if event.retries == 1 else 'retries'})", "yellow"))
        if event.error:
            parts.append(self._style(f"  {event.error['type']}: {event.error['message']}", "red"))
        for call in event.calls:
            if call.kind == "llm":
                parts.append(self._style(f"  [{call.binding}: {call.prompt_tokens}+{call.completion_tokens} tokens]",
                                         "dim"))
        return "".join(parts)

    def _style(self, text: str, style: str) -> str:
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m" if self.color else text

    def _elapsed(self) -> str:
        seconds = time.perf_counter() - self.started
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"

    def _print(self, line: str) -> None:
        """A permanent line; on a terminal it goes above the live line, which is drawn again below it."""
        line = " ".join(line.split("\n"))
        if self.live:
            self.out.write(f"{_CLEAR_LINE}{line}\n")
            if self._spinning is not None:
                self._draw()
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def _draw(self) -> None:
        frame = SPINNER[self._frame % len(SPINNER)]
        text = f"{frame} {self._label}  {self._elapsed()}"
        if self._tail:
            text += "  " + self._style(" ".join(self._tail.split())[-STREAM_TAIL:], "dim")
        self.out.write(_CLEAR_LINE + _fit(text, _columns(self.out)))
        self.out.flush()

    async def _spin(self) -> None:
        while True:
            await asyncio.sleep(SPIN_EVERY)
            self._frame += 1
            self._draw()

    def _stop(self) -> None:
        if self._spinning is not None:
            self._spinning.cancel()
            self._spinning = None
        if self.live:
            self.out.write(_CLEAR_LINE + "\x1b[?25h")
            self.out.flush()


class StreamingProgressReporter(ProgressReporter):
    """Progress that also shows, on the live line, the end of each LLM reply as it arrives."""

    def on_token(self, *, event: TokenReceived) -> None:
        first = not self._tail
        self._tail = (self._tail + event.text)[-4 * STREAM_TAIL:]
        if first and self._spinning is not None:
            self._draw()  # the first words show at once, however short the reply


def progress_reporter(stream: TextIO, machine_name: str, *, stream_replies: bool = True) -> ProgressReporter:
    """The progress observer for `stream`: on a terminal, LLM replies stream onto its live line unless told not to."""
    if stream_replies and _is_terminal(stream):
        return StreamingProgressReporter(stream, machine_name)
    return ProgressReporter(stream, machine_name)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    """The terminal's width: $COLUMNS when set, else what the terminal says, else 80 (a new pty says 0)."""
    given = os.environ.get("COLUMNS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns if columns > 0 else 80


def _fit(text: str, columns: int) -> str:
    """The live line cut to the terminal's width (a wrapped live line could not be cleared)."""
    from rich.cells import cell_len, set_cell_size  # display widths (wide characters count 2); terminals only

    plain_width = cell_len(_strip_styles(text))
    if plain_width < columns:
        return text
    return set_cell_size(_strip_styles(text), max(columns - 1, 1))


def _strip_styles(text: str) -> str:
    while "\x1b[" in text:
        start = text.index("\x1b[")
        end = text.find("m", start)
        if end < 0:
            break
        text = text[:start] + text[end + 1:]
    return text
