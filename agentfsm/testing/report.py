"""How test results read: a pytest-like text report, JUnit XML for CI, and a JSON view."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass

from agentfsm.testing.runner import CaseResult, FileResult


@dataclass(frozen=True, slots=True)
class Tally:
    passed: int
    failed: int
    errors: int
    """Files that could not run (invalid test file or machine)."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors


def tally(results: Sequence[FileResult]) -> Tally:
    cases = [case for result in results for case in result.cases]
    return Tally(sum(c.passed for c in cases), sum(not c.passed for c in cases),
                 sum(bool(r.problems) for r in results))


def progress_line(result: FileResult) -> str:
    """`machines/hello.test.yaml ..F` (one mark per case), or `E` for a file that could not run."""
    if result.problems:
        return f"{result.file} E"
    return f"{result.file} " + "".join("." if case.passed else "F" for case in result.cases)


def failure_block(case: CaseResult) -> str:
    """One failed case: a header, then each failure with its diff."""
    lines = [f"{'_' * 20} {case.name} ({case.file}:{case.line}) {'_' * 20}"]
    if case.actual.get("path"):
        lines.append("path: " + " -> ".join(case.actual["path"]))
    for failure in case.failures:
        lines.append(f"E   {failure}")
        if failure.diff:
            lines.extend("    " + line for line in failure.diff.splitlines())
    return "\n".join(lines)


def summary_line(results: Sequence[FileResult], seconds: float) -> str:
    counts = tally(results)
    parts = []
    if counts.failed:
        parts.append(f"{counts.failed} failed")
    parts.append(f"{counts.passed} passed")
    if counts.errors:
        parts.append(f"{counts.errors} file error(s)")
    return f"{', '.join(parts)} in {seconds:.2f}s"


def render_text(results: Sequence[FileResult], seconds: float, extra: str = "") -> str:
    """The whole report: progress lines, the problems of files that could not run, failures, `extra` (such as
    the coverage), the summary."""
    out = [progress_line(result) for result in results]
    problems = [str(p) for result in results for p in result.problems]
    failed = [case for result in results for case in result.cases if not case.passed]
    if problems:
        out += ["", "=" * 24 + " ERRORS " + "=" * 24, *problems]
    if failed:
        out += ["", "=" * 24 + " FAILURES " + "=" * 24]
        out += [failure_block(case) for case in failed]
        out += ["", "short test summary"]
        out += [f"FAILED {case.nodeid} - {case.failures[0]}" for case in failed]
    if extra:
        out += ["", extra.rstrip("\n")]
    out.append(summary_line(results, seconds))
    return "\n".join(out) + "\n"


def junit_xml(results: Sequence[FileResult], seconds: float) -> bytes:
    """JUnit XML: one `testsuite` per file, one `testcase` per case (a file that could not run is an `error`)."""
    counts = tally(results)
    root = ElementTree.Element("testsuites", name="agentfsm", tests=str(counts.passed + counts.failed),
                               failures=str(counts.failed), errors=str(counts.errors), time=f"{seconds:.3f}")
    for result in results:
        suite = ElementTree.SubElement(
            root, "testsuite", name=result.file, tests=str(len(result.cases) or 1),
            failures=str(sum(not c.passed for c in result.cases)), errors=str(int(bool(result.problems))),
            time=f"{sum(c.duration for c in result.cases):.3f}")
        if result.problems:
            case = ElementTree.SubElement(suite, "testcase", classname=result.file, name="(load)", time="0")
            error = ElementTree.SubElement(case, "error", message=str(result.problems[0]))
            error.text = "\n".join(str(p) for p in result.problems)
        for outcome in result.cases:
            case = ElementTree.SubElement(suite, "testcase", classname=result.file, name=outcome.name,
                                          file=result.file, line=str(outcome.line), time=f"{outcome.duration:.3f}")
            if not outcome.passed:
                failure = ElementTree.SubElement(case, "failure", message=str(outcome.failures[0]))
                failure.text = failure_block(outcome)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def as_json(results: Sequence[FileResult], seconds: float) -> dict[str, object]:
    """The report as one JSON document (`agentfsm test --json`)."""
    counts = tally(results)
    return {
        "passed": counts.passed, "failed": counts.failed, "errors": counts.errors, "seconds": round(seconds, 3),
        "files": [{
            "file": r.file, "problems": [p.as_dict() for p in r.problems],
            "cases": [{"name": c.name, "line": c.line, "passed": c.passed, "duration": round(c.duration, 4),
                       "failures": [{"field": f.field, "message": f.message, "diff": f.diff} for f in c.failures]}
                      for c in r.cases],
        } for r in results],
    }
