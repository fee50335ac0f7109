"""Running test cases: each case is a run of its machine in memory, with its replies, stubs and events, watched
by an observer that keeps the path it took; the expectations are then checked (`expect.py`).

Cases run concurrently on one event loop (a run waiting on a tool or a timer costs no thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentfsm.compiler.build import compile_machine
from agentfsm.runtime.events import StepEnded, TransitionTaken
from agentfsm.runtime.loop import RunResult
from agentfsm.spec.problems import MachineFileError, Problem
from agentfsm.testing.expect import Failure, check
from agentfsm.testing.loader import LoadedTests, load_tests
from agentfsm.testing.models import TEST_SUFFIX, EventToSend, TestCase
from agentfsm.testing.stubs import StubTool, scripted_client

DEFAULT_JOBS = 32
"""Cases running at once: enough to overlap their waits, few enough to keep memory flat."""


@dataclass(slots=True)
class Trail:
    """What a case's run did, step by step: the states it passed and the rules it took."""

    path: list[str] = field(default_factory=list)
    taken: list[tuple[str, str, int | None, bool]] = field(default_factory=list)
    """(source, target, rule index among the source's rules, caught by a catch rule)."""

    def on_step_ended(self, *, event: StepEnded) -> None:
        self.path.append(event.state)

    def on_transition(self, *, event: TransitionTaken) -> None:
        self.taken.append((event.source, event.target, event.rule, event.caught))


@dataclass(slots=True)
class CaseResult:
    """One case's verdict: what went wrong (nothing: it passed), what the run did, how long it took."""

    file: str
    name: str
    line: int
    failures: list[Failure]
    duration: float
    actual: dict[str, Any] = field(default_factory=dict)
    trail: Trail = field(default_factory=Trail)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def nodeid(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass(slots=True)
class FileResult:
    """A test file's cases, or the problems that kept it from running."""

    file: str
    machine: str | None
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    loaded: LoadedTests | None = None


async def run_case(loaded: LoadedTests, index: int, case: TestCase) -> CaseResult:
    """Run one case and check its expectations."""
    started = time.perf_counter()
    trail = Trail()
    base = loaded.path.parent
    try:
        machine = compile_machine(
            loaded.machine,
            llm_clients={name: scripted_client(name, replies, base) for name, replies in case.llms.items()},
            tool_clients={name: StubTool(name, stub) for name, stub in case.tools.items()},
        )
        result, unsent = await _drive(machine, case, trail)
    except Exception as exc:  # noqa: BLE001 - a case that cannot run fails, the others go on
        failure = Failure("run", f"the case could not run: {type(exc).__name__}: {exc}")
        return CaseResult(loaded.display_name, case.name, loaded.case_line(index), [failure],
                          time.perf_counter() - started, trail=trail)
    actual = actual_of(result, trail)
    failures = check(case.expect, actual)
    if unsent:
        failures.append(Failure("events", f"{len(unsent)} event(s) never sent, the run ended first: "
                                          + ", ".join(e.name for e in unsent)))
    return CaseResult(loaded.display_name, case.name, loaded.case_line(index), failures,
                      time.perf_counter() - started, actual, trail)


async def _drive(machine: Any, case: TestCase, trail: Trail) -> tuple[RunResult, list[Any]]:
    """Run to the end, sending the case's events one at a time while the run waits."""
    events = [EventToSend(name=e) if isinstance(e, str) else e for e in case.events]
    result = await machine.run(case.inputs, observers=[trail])
    while result.status == "waiting" and events:
        event = events.pop(0)
        if event.name == "timeout":
            result.context.mailbox.deadline = 1.0  # long past: the wait's timer has run out
        else:
            result.context.mailbox.deliver(event.name, event.data)
        result = await machine.run(context=result.context, observers=[trail])
    return result, events


def actual_of(result: RunResult, trail: Trail) -> dict[str, Any]:
    """What a run did, in the terms of the expectations."""
    return {
        "status": result.status,
        "output": result.output,
        "path": list(trail.path),
        "visits": dict(result.context.visits),
        "context": dict(result.context.data),
        "error": (result.error or {}).get("type"),
        "error_message": (result.error or {}).get("message"),
        "steps": result.steps,
    }


def find_test_files(paths: Iterable[str | Path]) -> list[Path]:
    """The test files named, and those under the folders named (`*.test.yaml`), in order, once each."""
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.update((p, None) for p in sorted(path.rglob("*" + TEST_SUFFIX)) if ".venv" not in p.parts)
        else:
            found[path] = None
    return list(found)


async def run_files(files: Sequence[Path], *, jobs: int = DEFAULT_JOBS) -> list[FileResult]:
    """Load every file, then run every case of the valid ones, `jobs` at a time."""
    results: list[FileResult] = []
    work: list[tuple[FileResult, int, TestCase]] = []
    for file in files:
        try:
            loaded = load_tests(file)
        except MachineFileError as exc:
            results.append(FileResult(str(file), None, problems=exc.problems))
            continue
        entry = FileResult(loaded.display_name, str(loaded.machine.path), loaded=loaded)
        results.append(entry)
        work.extend((entry, index, case) for index, case in enumerate(loaded.spec.cases))
    limit = asyncio.Semaphore(max(1, jobs))

    async def one(entry: FileResult, index: int, case: TestCase) -> CaseResult:
        async with limit:
            assert entry.loaded is not None
            return await run_case(entry.loaded, index, case)

    outcomes = await asyncio.gather(*(one(*item) for item in work))
    for (entry, _, _), outcome in zip(work, outcomes, strict=True):
        entry.cases.append(outcome)
    return results
