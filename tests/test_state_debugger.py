"""`StateDebugger(machine)`, the mission's debugger: breakpoints (with guards) pause runs of the machine before a
state, watches report values as they change, the trace is the stored trace's entries, the diagram marks where runs
went (parsed by the real Mermaid parser), the summary tells what happened; in memory and for stored runs alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import agentfsm
from agentfsm import InputError, Runs, StateDebugger
from tests.mermaid import parse_mermaid
from tests.test_breakpoints import COUNTER

REACT = Path(__file__).resolve().parent.parent / "machines" / "react_agent.yaml"


@pytest.fixture
def counter(tmp_path: Path) -> agentfsm.StateMachine:
    path = tmp_path / "counter.yaml"
    path.write_text(COUNTER, encoding="utf-8")
    return agentfsm.load_machine(path)


def test_a_breakpoint_pauses_a_run_in_memory_and_running_its_context_again_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    machine = agentfsm.load_machine(REACT)
    debugger = StateDebugger(machine)
    debugger.add_breakpoint("acting")
    debugger.add_watch("observed", "observations|length")

    async def scenario() -> agentfsm.RunResult:
        first = await machine.run({"task": "What is 17 * 23?"})
        assert (first.status, first.paused["state"], first.steps) == ("paused", "acting", 2)
        assert debugger.paused is not None and debugger.paused["state"] == "acting"
        drawn = debugger.generate_mermaid_diagram()  # the run drawn over the machine, as `diagram RUN` draws it
        parsed = parse_mermaid(drawn)
        assert parsed["ok"], parsed.get("error")
        lines = drawn.splitlines()
        assert "    class s_acting paused" in lines and "    class s_initial,s_thinking visited" in lines
        assert any(line.startswith("    s_thinking --> s_acting : ") and line.endswith("#40;1x#41;") for line in lines)
        return await machine.run(context=first.context)  # the breakpoint is not hit twice in a row

    done = asyncio.run(scenario())
    assert (done.status, done.output) == ("succeeded", "391")
    trace = debugger.get_trace()
    assert [entry["state"] for entry in trace if entry["kind"] == "breakpoint"] == ["acting"]
    watched = [(entry["value"], entry["step"]) for entry in trace if entry["kind"] == "watch"]
    assert watched == [(0, 0), (1, 4)]
    assert {entry["run_id"] for entry in trace} == {done.run_id}
    entered = [entry["state"] for entry in trace if entry["kind"] == "state_entered"]
    assert entered == ["initial", "thinking", "acting", "observing", "reflecting", "thinking", "finalizing"]
    written = debugger.export_trace(tmp_path / "trace.json")
    assert json.loads(written.read_text(encoding="utf-8")) == json.loads(json.dumps(trace, default=repr))
    debugger.print_summary()
    printed = capsys.readouterr().out
    assert "thinking: 2" in printed and "thinking->acting: 1" in printed and "observed: 1" in printed


def test_a_guarded_breakpoint_and_removing_it(counter: agentfsm.StateMachine) -> None:
    debugger = StateDebugger(counter)
    debugger.add_breakpoint("count:n >= 3")

    async def scenario() -> None:
        paused = await counter.run()
        assert (paused.status, paused.context.data["n"]) == ("paused", 3)
        again = await counter.run(context=paused.context)
        assert (again.status, again.context.data["n"]) == ("paused", 4)
        debugger.remove_breakpoint("count")
        assert (await counter.run(context=again.context)).output == 5

    asyncio.run(scenario())
    with pytest.raises(InputError, match=r"add_breakpoint 'cont': machine 'counter' has no state 'cont' "
                                         r"\(did you mean 'count'\?\)"):
        debugger.add_breakpoint("cont")
    with pytest.raises(InputError, match="add_watch 'n >': template syntax error"):
        debugger.add_watch("bad", "n >")


def test_a_stored_run_is_debugged_the_same_way_and_its_trace_keeps_the_hits(
        counter: agentfsm.StateMachine, runs: Runs) -> None:
    debugger = StateDebugger(counter)
    debugger.add_breakpoint("done")
    debugger.add_watch("n", "n")

    async def scenario() -> None:
        paused = await runs.start(counter)
        assert (await runs.get(paused.run_id)).status == "paused"
        done = await runs.resume(paused.run_id, machine=counter)
        assert (done.status, done.output) == ("succeeded", 5)
        stored = await runs.trace(paused.run_id)
        assert [entry["kind"] for entry in stored if entry["kind"] in ("breakpoint", "paused")] == [
            "breakpoint", "paused"]
        assert [entry["value"] for entry in stored if entry["kind"] == "watch"] == [0, 1, 2, 3, 4, 5]
        mine = [entry for entry in debugger.get_trace() if entry["kind"] == "watch"]
        assert [entry["value"] for entry in mine] == [0, 1, 2, 3, 4, 5]

    asyncio.run(scenario())
