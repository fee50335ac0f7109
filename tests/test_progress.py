"""The progress display as a user sees it: every step's line, in order, as soon as a step ends when steps
are slow; on a terminal one live line below them that is gone (cursor back) however the run stops."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import State, StateContext, StateMachine, StepEnded
from agentfsm.observability.progress import progress_display

COUNTER = Path(__file__).parent / "machines" / "counter.yaml"
STEP_LINE = re.compile(r"^\s*(?P<step>\d+)\s+\S+ m?s\s+(?P<state>\w+) (?:--(?P<event>\w+)--> (?P<next>\w+)|\(end\))")


class Terminal(io.StringIO):
    """What a terminal receives (a StringIO that says it is one)."""

    def isatty(self) -> bool:
        return True


def on_screen(received: str) -> tuple[list[str], str]:
    """What stays on a terminal: the finished lines, and what is left on the line under them."""
    lines: list[str] = []
    current = ""
    for piece in re.split(r"(\r\x1b\[2K|\n)", received.replace("\x1b[?25l", "").replace("\x1b[?25h", "")):
        if piece == "\r\x1b[2K":
            current = ""
        elif piece == "\n":
            lines.append(current)
            current = ""
        else:
            current += piece
    return lines, current


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")


def run_counter(stream: io.StringIO, limit: int) -> Any:
    machine = agentfsm.load_machine(COUNTER)
    return asyncio.run(agentfsm.run(machine, {"limit": limit}, observers=progress_display(stream)))


def assert_whole_run(lines: list[str], result: Any) -> None:
    assert lines[0] == f"run {result.run_id}  counter"
    steps = [STEP_LINE.match(line) for line in lines[1:-1]]
    assert all(steps), lines
    assert [int(m["step"]) for m in steps if m] == list(range(1, result.steps + 1))
    assert [m["state"] for m in steps if m][:4] == ["inc", "check", "inc", "check"]
    assert re.fullmatch(rf"succeeded in {result.steps} steps, \S+ m?s", lines[-1])


def test_a_fast_loop_puts_every_step_line_in_a_pipe_in_order() -> None:
    pipe = io.StringIO()
    result = run_counter(pipe, limit=150)
    assert result.steps == 301
    assert "\x1b" not in pipe.getvalue()  # a pipe gets neither colour nor a live line
    assert_whole_run(pipe.getvalue().splitlines(), result)


def test_a_terminal_gets_the_same_lines_and_no_live_line_left_behind() -> None:
    terminal = Terminal()
    result = run_counter(terminal, limit=150)
    lines, left_over = on_screen(terminal.getvalue())
    assert_whole_run(lines, result)
    assert left_over == ""
    assert terminal.getvalue().endswith("\x1b[?25h")  # the cursor hidden under the spinner is back


class Slow(State):
    """Sleeps, then looks at what the progress display has shown so far."""

    def __init__(self, name: str, stream: io.StringIO, seconds: float) -> None:
        super().__init__(name)
        self.stream, self.seconds = stream, seconds
        self.seen_before = self.seen_after = ""

    async def execute(self, context: StateContext) -> Any:
        self.seen_before = self.stream.getvalue()
        await asyncio.sleep(self.seconds)
        self.seen_after = self.stream.getvalue()
        return None


def slow_machine(stream: io.StringIO, seconds: float) -> tuple[StateMachine, Slow]:
    machine = StateMachine("slow")
    machine.add_state(Slow("first", stream, 0), initial=True)
    middle = machine.add_state(Slow("middle", stream, seconds))
    machine.add_state(Slow("last", stream, 0), final=True)
    machine.add_transition("first", "middle", "done")
    machine.add_transition("middle", "last", "done")
    assert isinstance(middle, Slow)
    return machine, middle


@pytest.mark.parametrize("where", [io.StringIO, Terminal])
def test_a_steps_line_shows_as_soon_as_the_step_ends(where: type[io.StringIO]) -> None:
    stream = where()
    machine, middle = slow_machine(stream, 0.01)
    asyncio.run(machine.run(observers=progress_display(stream)))
    shown, _ = on_screen(middle.seen_before)
    assert STEP_LINE.match(shown[-1])["next"] == "middle"  # type: ignore[index]


def test_the_live_line_shows_the_step_in_progress() -> None:
    terminal = Terminal()
    machine, middle = slow_machine(terminal, 0.3)
    asyncio.run(machine.run(observers=progress_display(terminal)))
    _, live = on_screen(middle.seen_after)
    assert re.fullmatch(r"\S step 2  middle  \d+ ms", live), live


class BreaksAtStep:
    """A critical observer (as the store's recorder is) failing at one step: the run stops there."""

    critical = True

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_ended(self, *, event: StepEnded) -> None:
        if event.step == self.step:
            raise OSError("disk full")


@pytest.mark.parametrize("stop", ["error", "cancel"])
def test_a_run_stopped_early_leaves_the_terminal_clean(stop: str) -> None:
    terminal = Terminal()
    machine, _ = slow_machine(terminal, 5 if stop == "cancel" else 0)

    async def main() -> None:
        observers = [BreaksAtStep(2), *progress_display(terminal)]
        task = asyncio.ensure_future(machine.run(observers=observers))
        if stop == "cancel":
            while "step 2" not in terminal.getvalue():
                await asyncio.sleep(0.01)
            task.cancel()
        await task

    with pytest.raises(OSError if stop == "error" else asyncio.CancelledError):
        asyncio.run(main())
    lines, left_over = on_screen(terminal.getvalue())
    assert STEP_LINE.match(lines[-1])["state"] == "first"  # type: ignore[index]
    assert left_over == ""
    assert terminal.getvalue().endswith("\x1b[?25h")
