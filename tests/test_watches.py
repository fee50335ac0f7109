"""Watches: `--watch EXPR` prints a value of the context whenever it changes, with the step and state, and the
trace keeps each change (`watch` entries). A watch that does not parse is one line, exit 2, nothing run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentfsm import InputError, Runs
from agentfsm.runtime.events import WatchChanged
from agentfsm.service.debugging import watching
from tests.cli_inprocess import Cli
from tests.test_breakpoints import COUNTER


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    path = tmp_path / "counter.yaml"
    path.write_text(COUNTER, encoding="utf-8")
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


class Seen:
    def __init__(self) -> None:
        self.events: list[WatchChanged] = []

    def on_watch(self, *, event: WatchChanged) -> None:
        self.events.append(event)


def test_a_watch_reports_each_change_with_its_step_and_state_and_the_trace_keeps_it(runs: Runs,
                                                                                     counter: Path) -> None:
    seen = Seen()

    async def scenario() -> list[dict]:
        result = await runs.start(counter, observers=[watching(["n", "n * 10", "{{ n }} of 5", "missing"]), seen])
        assert result.output == 5
        return await runs.trace(result.run_id)

    trace = asyncio.run(scenario())
    by_name: dict[str, list[tuple[object, int, object]]] = {}
    for event in seen.events:
        by_name.setdefault(event.name, []).append((event.value, event.step, event.state))
    # n is 0 at the start and after `start` (no change, no report), then 1..5 after each `count`
    assert by_name["n"] == [(0, 0, "start"), (1, 2, "count"), (2, 3, "count"), (3, 4, "count"), (4, 5, "count"),
                            (5, 6, "count")]
    assert [value for value, _, _ in by_name["n * 10"]] == [0, 10, 20, 30, 40, 50]
    assert by_name["{{ n }} of 5"][-1] == ("5 of 5", 6, "count")
    missing = [event for event in seen.events if event.name == "missing"]
    assert len(missing) == 1 and missing[0].initial and "'missing' is undefined" in (missing[0].error or "")
    entries = [entry for entry in trace if entry["kind"] == "watch" and entry["name"] == "n"]
    assert [(entry["value"], entry["step"], entry["state"], entry["initial"]) for entry in entries] == [
        (0, 0, "start", True), (1, 2, "count", False), (2, 3, "count", False), (3, 4, "count", False),
        (4, 5, "count", False), (5, 6, "count", False)]
    assert [entry["seq"] for entry in trace] == list(range(1, len(trace) + 1))


def test_a_watched_list_changed_in_place_is_reported(tmp_path: Path, runs: Runs) -> None:
    """A value is copied when read: a list the machine appends to is seen to change."""
    path = tmp_path / "grow.yaml"
    path.write_text("""\
agentfsm: 1
name: grow
context: {items: []}
initial: add
states:
  add:
    type: set
    set: {items: "{{ items + [items|length] }}"}
    transitions: [{when: "items|length < 3", to: add}, {to: done}]
  done: {type: final}
""", encoding="utf-8")
    seen = Seen()
    asyncio.run(runs.start(path, observers=[watching(["items"]), seen]))
    assert [event.value for event in seen.events] == [[], [0], [0, 1], [0, 1, 2]]


def test_watch_on_the_command_line_prints_changes_among_the_steps(cli: Cli, tmp_path: Path, counter: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    done = cli("run", counter, "--watch", "n", "--watch", "n >= 4", store=store)
    assert done.code == 0 and done.out == "5\n", done
    lines = done.err.splitlines()
    assert lines[1] == "watch n = 0  (step 0, start)"
    assert "watch n = 3  (step 4, count)" in lines
    assert lines.index("watch n >= 4 = true  (step 5, count)") == lines.index("watch n = 4  (step 5, count)") + 1
    # the change comes under the step that made it
    assert lines[lines.index("watch n = 4  (step 5, count)") - 1].split()[0] == "5"


def test_a_watch_that_does_not_parse_is_one_line_and_runs_nothing(cli: Cli, tmp_path: Path, counter: Path) -> None:
    store = tmp_path / "runs.db"
    bad = cli("run", counter, "--watch", "{{ n", store=f"sqlite:///{store}")
    assert bad.code == 2, bad
    assert bad.err.splitlines() == ["error: --watch '{{ n': template syntax error: unexpected end of template, "
                                    "expected 'end of print statement'."]
    assert not store.exists()
    with pytest.raises(InputError, match="--watch 'n >': template syntax error"):
        watching(["n >"])
