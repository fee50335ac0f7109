"""Recorded runs as regression tests: replay one offline (`agentfsm replay`), turn one into a test case
(`agentfsm record`). The recording is the run's trace and history; nothing here writes to the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from agentfsm.compiler.build import compile_machine
from agentfsm.history.advance import context_at
from agentfsm.service.errors import InputError
from agentfsm.service.runs import Runs
from agentfsm.service.stores import open_runs
from agentfsm.spec.loader import LoadedSpec, load_spec, load_spec_text
from agentfsm.spec.overrides import apply_llm_overrides
from agentfsm.testing.recording import Recording, recorded_calls, recorded_steps
from agentfsm.testing.replay import ReplayResult, new_replay, replay_run, served_bindings


async def load_recording(runs: Runs, run_id: str) -> Recording:
    """A run's recording: its steps on the head branch and the LLM and tool calls they made.

    Raises InputError for a run that made calls before runs kept them (it has nothing to replay them from)."""
    run = await runs.get(run_id)
    rows = await runs.history(run.id)
    entries = await runs.trace(run.id)
    calls = recorded_calls(entries, rows)
    made = sum(len(row.calls) for row in rows)
    if made and not calls:
        raise InputError(f"run {run.id} was recorded before runs kept their LLM and tool calls: it has no "
                         f"recording of its {made} call(s) to replay")
    source = await runs.store.source(run.digest) if run.digest else None
    return Recording(run.id, run.machine, source, run.path, await runs.inputs(run.id), run.status, run.output,
                     run.error, recorded_steps(rows), calls, dict(run.llms))


def _machine_spec(recording: Recording, machine_file: Path | None) -> LoadedSpec:
    if machine_file is not None:
        return load_spec(machine_file)
    if recording.source is None:
        raise InputError(f"run {recording.run_id} was started from a machine built in Python; "
                         "give its machine file with --machine")
    return load_spec_text(recording.source, recording.path or f"{recording.machine}.yaml")


def _check_fits(recording: Recording, loaded: LoadedSpec, live: Collection[str], where: str) -> None:
    """A recording that names states or bindings the machine does not have cannot be replayed against it."""
    spec = loaded.spec
    states = sorted({s.state for s in recording.steps if s.state and s.state not in spec.states})
    bindings = sorted({c.binding for c in recording.calls
                       if c.binding not in (spec.llms if c.kind == "llm" else spec.tools)})
    unknown_live = sorted(set(live) - set(spec.llms) - set(spec.tools))
    if states or bindings:
        parts = ([f"states {', '.join(states)}"] if states else []) + \
            ([f"bindings {', '.join(bindings)}"] if bindings else [])
        raise InputError(f"the recording of run {recording.run_id} does not match {where}: it has "
                         f"{' and '.join(parts)} that the machine does not")
    if unknown_live:
        raise InputError(f"--live {unknown_live[0]}: {where} has no binding of that name")


async def replay(store: str | None, run_id: str, *, machine_file: Path | None = None,
                 from_point: str | None = None, live: Collection[str] = (), llms: Mapping[str, str] | None = None,
                 observers: list[object] | None = None) -> ReplayResult:
    """Run a recorded run's machine again in memory, its calls served from the recording, and say where it
    first differs (see `agentfsm.testing.replay`). The `live` bindings call their provider or tool instead:
    an LLM binding as the run called it (its `--llm` override), or as `llms` switches it."""
    async with open_runs(store, create=False) as runs:
        recording = await load_recording(runs, run_id)
        loaded = _machine_spec(recording, machine_file)
        _check_fits(recording, loaded, live,
                    str(machine_file) if machine_file is not None else f"the machine of run {recording.run_id}")
        point = await runs.point(run_id, from_point) if from_point is not None else None
        position = await runs.position(run_id, point) if point is not None else None
    switched = {name: text for name, text in {**recording.llms, **(llms or {})}.items() if name in live}
    if switched:
        loaded = dataclasses.replace(loaded, spec=apply_llm_overrides(loaded.spec, switched))
    start = point.point if point is not None else 1
    session = new_replay(recording, start)
    llms, tools = served_bindings(session, loaded.spec.llms, loaded.spec.tools, live)
    machine = compile_machine(loaded, llm_clients=llms, tool_clients=tools)
    if position is None:
        context = machine.new_context(recording.inputs)
    else:
        if position.state is None:
            raise InputError(f"run {recording.run_id} had ended before point {from_point}: nothing to replay")
        context = context_at(machine, recording.run_id, position)
    result = await replay_run(machine, context, recording, session, observers or [])
    result.live = len(set(live))
    return result


def case_from_recording(recording: Recording, name: str, machine: str, waits: Collection[str]) -> dict[str, Any]:
    """A test case reproducing a recorded run: its inputs, its calls (as scripted replies and tool stubs, in the
    order made), the events its waits took, and its status, path and output as the expectations."""
    replies: dict[str, list[Any]] = {}
    tools: dict[str, list[Any]] = {}
    for call in recording.calls:
        if call.kind == "llm":
            replies.setdefault(call.binding, []).append(_scripted(call.answer, call.error))
        elif call.error is not None:
            tools.setdefault(call.binding, []).append(
                {"error": {"type": call.error.get("type", "tool.error"), "message": call.error.get("message", "")}})
        else:
            tools.setdefault(call.binding, []).append({"result": call.answer})
    events = [{"name": step.event, "data": step.event_data} for step in recording.steps
              if step.state in waits and step.event is not None]
    expect: dict[str, Any] = {"status": recording.status, "path": [s.state for s in recording.steps if s.state]}
    if recording.status == "succeeded":
        expect["output"] = recording.output
    elif recording.error:
        expect["error"] = recording.error.get("type")
    case: dict[str, Any] = {"name": name, "inputs": recording.inputs}
    if replies:
        case["llms"] = replies
    if tools:
        case["tools"] = tools
    if events:
        case["events"] = events
    case["expect"] = expect
    return {"agentfsm_test": 1, "machine": machine, "cases": [case]}


def _scripted(reply: Any, error: dict[str, Any] | None) -> Any:
    """A recorded reply as a scripted one, used once, in its turn."""
    if reply is None:  # a failed call: the scripted provider cannot fail, so it answers nothing usable
        return {"reply": "", "times": 1}
    rule: dict[str, Any] = {"reply": reply.get("text") or "", "times": 1}
    if reply.get("tool_calls"):
        rule["tool_calls"] = [{"name": c.get("name"), "arguments": c.get("arguments") or {}}
                              for c in reply["tool_calls"]]
    return rule


async def record_case(store: str | None, run_id: str, output: Path, *, machine_file: Path | None = None) -> Path:
    """Write a test file (`*.test.yaml`) reproducing a recorded run; returns the path written."""
    import yaml

    async with open_runs(store, create=False) as runs:
        recording = await load_recording(runs, run_id)
    machine = machine_file or (Path(recording.path) if recording.path else None)
    if machine is None:
        raise InputError(f"run {recording.run_id} keeps no machine file path; give it with --machine")
    relative = _relative(machine.resolve(), output.resolve().parent)
    spec = _machine_spec(recording, machine_file).spec
    waits = {name for name, state in spec.states.items() if state.suspends}
    document = case_from_recording(recording, f"run {recording.run_id}", relative, waits)
    text = f"# Recorded from run {recording.run_id} by agentfsm record.\n" + \
        yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from None
    return output


def _relative(target: Path, base: Path) -> str:
    import os

    return os.path.relpath(target, base)
