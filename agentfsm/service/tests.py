"""Machine tests as a front end uses them: find `*.test.yaml` files, run their cases, report (text, JUnit XML,
JSON, coverage). The work is `agentfsm.testing`'s; this is the one place the CLI and others call."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentfsm.testing import coverage as coverage_module
from agentfsm.testing import report
from agentfsm.testing.runner import DEFAULT_JOBS, FileResult, find_test_files, run_files


@dataclass(frozen=True, slots=True)
class TestRun:
    """Every file's results and how long the whole run took."""

    __test__ = False  # not a pytest class

    results: list[FileResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return report.tally(self.results).ok

    def text(self, *, coverage: bool = False) -> str:
        """The pytest-like report; with `coverage`, the coverage table before the summary line."""
        return report.render_text(self.results, self.seconds, self.coverage_text() if coverage else "")

    def junit(self) -> bytes:
        return report.junit_xml(self.results, self.seconds)

    def as_json(self) -> dict[str, Any]:
        return report.as_json(self.results, self.seconds)

    def updates(self) -> list[Any]:
        """What `--update` would write: a `testing.update.FileUpdate` per file with failed cases."""
        from agentfsm.testing.update import plan_update

        return [update for result in self.results if (update := plan_update(result)) is not None]

    def coverage(self) -> dict[str, Any]:
        return coverage_module.coverage_report(coverage_module.collect(self.results))

    def coverage_text(self) -> str:
        return coverage_module.render_coverage(coverage_module.collect(self.results))


async def run_tests(paths: Iterable[str | Path], *, jobs: int = DEFAULT_JOBS) -> TestRun:
    """Run the cases of the test files named and of those under the folders named."""
    started = time.perf_counter()
    files = find_test_files(paths)
    results = await run_files(files, jobs=jobs)
    return TestRun(results, time.perf_counter() - started)


def machine_coverage(report: Path, machine: Path) -> dict[str, Any]:
    """One machine's entry of a coverage report file (`agentfsm test --coverage REPORT`).

    Raises InputError when the report cannot be read or has no entry for the machine."""
    import json

    from agentfsm.service.errors import InputError

    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{report}: cannot read the coverage report: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{report}: not a coverage report (not JSON)") from None
    if not isinstance(data, dict) or data.get("agentfsm_coverage") != coverage_module.COVERAGE_VERSION:
        raise InputError(f"{report}: not a coverage report of agentfsm test --coverage")
    wanted = machine.resolve()
    entries = [m for m in data.get("machines") or [] if isinstance(m, dict)]
    for entry in entries:
        if Path(str(entry.get("machine"))).resolve() == wanted:
            return entry
    raise InputError(f"{report}: no coverage of {machine} in the report (it covers "
                     f"{', '.join(str(m.get('machine')) for m in entries) or 'nothing'})")


def write_updates(updates: list[Any]) -> None:
    """Rewrite the files `TestRun.updates()` planned."""
    from agentfsm.testing.update import apply_update

    for update in updates:
        apply_update(update)
