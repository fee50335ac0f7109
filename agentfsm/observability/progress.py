"""Live progress of a run on a text stream (stderr): one line per step, and on a terminal a live line under them.

The live line (a spinner, the step in progress, its elapsed time and, with streaming, the
end of the LLM reply arriving) is drawn with a few ANSI control sequences, and every line
is a plain string: showing progress must cost far less than the step it reports. In a
pipe, a file or CI logs there is no live line and no colour, and the reporter does not
ask for streamed replies, so the output stays one line per step.

Lines are written as their steps end, except in a loop too fast to read: past
`LINES_AT_ONCE` lines in `GATHER_FOR` seconds, the rest of that stretch is gathered and
written in one go at its end (a write per line would cost a fast step more than the step).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

from agentfsm.bindings.known_secrets import redact
from agentfsm.observability.terminal import set_live_writer, visible
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
LINES_AT_ONCE = 25
GATHER_FOR = 0.05
"""Up to LINES_AT_ONCE lines in GATHER_FOR seconds are written one by one; more wait for the stretch's end."""

_STYLES = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_CLEAR_LINE = "\r\x1b[2K"


class Screen:
    """The stream progress writes to: permanent lines, gathered when they come fast, and on a terminal
    a live line kept below them (drawn by `live`, a function giving its text)."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        self.out = stream
        self.color = color
        self.live: Callable[[], str] | None = None
        self.started = time.perf_counter()
        self._pending: list[str] = []
        self._stretch_began = 0.0
        self._written_in_stretch = 0
        self._timer: asyncio.TimerHandle | None = None
        self._live_height = 1
        self._lock = threading.Lock()  # log lines may come from other threads (an exporter's)

    def style(self, text: str, style: str) -> str:
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m" if self.color else text

    def elapsed(self) -> str:
        seconds = time.perf_counter() - self.started
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"

    def line(self, text: str) -> None:
        """A permanent line (on a terminal it goes above the live line)."""
        with self._lock:
            self._pending.append(text.replace("\n", " "))
        now = time.perf_counter()
        if now - self._stretch_began >= GATHER_FOR:
            self._stretch_began, self._written_in_stretch = now, 0
        if self._written_in_stretch < LINES_AT_ONCE:
            self._written_in_stretch += 1
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # nobody to wake us later: write now
                self.flush()
            else:
                self._timer = loop.call_at(loop.time() + GATHER_FOR - (now - self._stretch_began), self.flush)

    def flush(self, *, last: bool = False) -> None:
        """Write the gathered lines, then the live line (if any; `last`: clear it for good), in one write."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            self._write(last=last)
        if last:
            self.live = None
            set_live_writer(self.out, None)

    def above(self, text: str) -> None:
        """Text from elsewhere (a log record, from any thread): written whole with the gathered lines, above the
        live line, which is drawn again below it."""
        with self._lock:
            self._pending.append(text[:-1] if text.endswith("\n") else text)
            self._write(last=False)

    def _write(self, *, last: bool) -> None:
        live = self.live
        # a live area of several lines (the agents' table) is cleared from its first line down
        text = f"\x1b[{self._live_height - 1}A\r\x1b[J" if live is not None and self._live_height > 1 else ""
        text += "".join(f"{_CLEAR_LINE if live else ''}{line}\n" for line in self._pending)
        self._pending.clear()
        if live is not None:
            drawn = "\x1b[?25h" if last else live()  # the cursor hidden under the spinner is back
            self._live_height = drawn.count("\n") + 1
            text += _CLEAR_LINE + drawn
        if text:
            self.out.write(text)
            self.out.flush()

    def close(self) -> None:
        """Write what is gathered and leave no live line behind."""
        self.flush(last=True)


class ProgressReporter:
    """An observer printing each step (number, elapsed time, state, event, next state, duration)."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen

    def on_run_started(self, *, event: RunStarted) -> None:
        style = self.screen.style
        self.screen.started = time.perf_counter()
        self.screen.line(f"{style('run ', 'dim')}{style(event.run_id, 'bold')}  {style(event.machine, 'cyan')}")

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.screen.line(self.step_line(event))

    def on_pause(self, *, event: RunPaused) -> None:
        self.screen.close()

    def on_run_ended(self, *, event: RunEnded) -> None:
        result, style = event.result, self.screen.style
        colour = {"succeeded": "green", "waiting": "yellow"}.get(result.status, "red")
        preposition = "after" if result.status == "waiting" else "in"
        steps = f"{result.steps} step{'' if result.steps == 1 else 's'}"
        self.screen.line(f"{style(result.status, colour)}"
                         f"{style(f' {preposition} {steps}, {self.screen.elapsed()}', 'dim')}")
        self.screen.close()

    def step_line(self, event: StepEnded) -> str:
        """`   3   120 ms  thinking --done--> acting  4.1 ms`, then retries, the error and token counts."""
        style = self.screen.style
        parts = [style(f"{event.step:>4} {self.screen.elapsed():>8}  ", "dim"), style(event.state, "bold")]
        if event.next_state is not None:
            parts += [style(f" --{visible(str(event.event))}--> ", "dim"), style(event.next_state, "bold")]
        elif event.error is None:
            parts.append(style(" (end)", "dim"))
        parts.append(style(f"  {event.duration * 1000:.1f} ms", "dim"))
        if event.retries:
            parts.append(style(f"  ({event.retries} {'retry' if event.retries == 1 else 'retries'})", "yellow"))
        if event.error:
            parts.append(style(f"  {event.error['type']}: {visible(str(event.error['message']))}", "red"))
        for call in event.calls:
            if call.kind == "llm":
                parts.append(style(f"  [{call.binding}: {call.prompt_tokens}+{call.completion_tokens} tokens]", "dim"))
        return "".join(parts)


class LiveLine:
    """An observer keeping, on a terminal, a line below the steps: a spinner, the step in progress and
    its elapsed time; redrawn every SPIN_EVERY seconds, not at every step."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.label = "starting"
        self.tail = ""
        self.below: Callable[[], list[str]] | None = None
        """More lines under the live line (the agents' table), or None."""
        self._frame = 0
        self._columns = _columns(screen.out)
        self._spinning: asyncio.Task[None] | None = None

    def on_run_started(self, *, event: RunStarted) -> None:
        self.screen.out.write("\x1b[?25l")  # no cursor blinking over the spinner
        self.screen.live = self.text
        set_live_writer(self.screen.out, self.screen.above)  # log lines go above the live line, whole
        self.screen.flush()
        with contextlib.suppress(RuntimeError):  # no running loop: the line is redrawn with the steps only
            self._spinning = asyncio.get_running_loop().create_task(self._spin())

    def on_step_started(self, *, event: StepStarted) -> None:
        self.tail = ""
        self.label = f"step {event.step}  {self.screen.style(event.state, 'bold')}"

    def on_wait(self, *, event: WaitStarted) -> None:
        self.label = f"waiting in {self.screen.style(event.state, 'bold')}"

    def on_pause(self, *, event: RunPaused) -> None:
        self._stop()

    def on_run_ended(self, *, event: RunEnded) -> None:
        self._stop()

    def text(self) -> str:
        text = f"{self.label}  {self.screen.elapsed()}"
        if self.tail:
            shown = visible(redact(" ".join(self.tail.split())))  # a streamed reply may echo a key
            text += "  " + self.screen.style(shown[-STREAM_TAIL:], "dim")
        line = f"{SPINNER[self._frame % len(SPINNER)]} {_fit(text, self._columns - 2)}"
        rows = self.below() if self.below is not None else []
        return "\n".join([line, *(_fit(row, self._columns - 1) for row in rows)])

    async def _spin(self) -> None:
        while True:
            await asyncio.sleep(SPIN_EVERY)
            self._frame += 1
            self._columns = _columns(self.screen.out)  # the terminal may have been resized
            self.screen.flush()

    def _stop(self) -> None:
        if self._spinning is not None:
            self._spinning.cancel()
            self._spinning = None
        self.screen.close()


class StreamedReply:
    """An observer showing, on the live line, the end of each LLM reply as it arrives."""

    def __init__(self, live: LiveLine) -> None:
        self.live = live

    def on_token(self, *, event: TokenReceived) -> None:
        first = not self.live.tail
        self.live.tail = (self.live.tail + event.text)[-4 * STREAM_TAIL:]
        if first:
            self.live.screen.flush()  # the first words show at once, however short the reply


def progress_display(stream: TextIO, *, stream_replies: bool = True, live: bool = True) -> list[object]:
    """The observers showing a run's progress on `stream`: on a terminal with a live line (unless `live` is off: a
    prompt shares the terminal), and LLM replies streamed onto it unless `stream_replies` is off; colour on a
    terminal unless $NO_COLOR."""
    terminal = _is_terminal(stream) and live
    screen = Screen(stream, color=terminal and "NO_COLOR" not in os.environ)
    from agentfsm.observability.agents import AgentLines, AgentTable

    observers: list[object] = [ProgressReporter(screen)]
    if terminal:
        line = LiveLine(screen)
        table = AgentTable(screen)
        line.below = table.lines
        observers += [line, table]
        if stream_replies:
            observers.append(StreamedReply(line))
    else:
        observers.append(AgentLines(screen))
    return observers


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
    if len(text) < columns and text.isascii():  # the common case: nothing to measure
        return text
    from rich.cells import (  # display widths (wide characters count 2); terminals only
        cell_len,
        set_cell_size,
    )

    plain = _strip_styles(text)
    if cell_len(plain) < columns:
        return text
    return set_cell_size(plain, max(columns - 1, 1))


def _strip_styles(text: str) -> str:
    while "\x1b[" in text:
        start = text.index("\x1b[")
        end = text.find("m", start)
        if end < 0:
            break
        text = text[:start] + text[end + 1:]
    return text
