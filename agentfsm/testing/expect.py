"""Checking a case's expectations against what its run did; each mismatch is a `Failure` with a diff."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from agentfsm.spec.expressions import ExpressionError, base_scope, compile_guard
from agentfsm.testing.models import Expect


@dataclass(frozen=True, slots=True)
class Failure:
    """One expectation the run did not meet: which (`field`), why, and the expected/actual diff when it helps."""

    field: str
    message: str
    diff: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _text(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def diff(expected: Any, actual: Any, labels: tuple[str, str] = ("expected", "actual")) -> str:
    """A unified diff of two values as indented JSON (`-` expected, `+` actual)."""
    lines = difflib.unified_diff(_text(expected), _text(actual), *labels, lineterm="")
    return "\n".join(lines)


def _is_subsequence(wanted: list[str], path: list[str]) -> int:
    """How many of `wanted` appear in `path` in order (all of them: it is a subsequence)."""
    position = iter(path)
    count = 0
    for state in wanted:
        if not any(state == taken for taken in position):
            break
        count += 1
    return count


def _error_matches(expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    return expected == "*" or actual == expected or actual.startswith(expected + ".")


def check(expect: Expect, actual: dict[str, Any]) -> list[Failure]:
    """Every expectation given that the run did not meet."""
    given = expect.model_fields_set
    failures: list[Failure] = []
    if "status" in given and expect.status != actual["status"]:
        why = f" ({actual['error']}: {actual['error_message']})" if actual.get("error") else ""
        failures.append(Failure("status", f"expected {expect.status}, got {actual['status']}{why}"))
    if "output" in given and expect.output != actual["output"]:
        failures.append(Failure("output", "the output differs", diff(expect.output, actual["output"])))
    if expect.output_when is not None:
        failures.extend(_guard(expect.output_when, actual))
    if expect.path is not None and expect.path != actual["path"]:
        failures.append(Failure("path", "the path differs", diff(expect.path, actual["path"])))
    if expect.path_contains is not None:
        matched = _is_subsequence(expect.path_contains, actual["path"])
        if matched < len(expect.path_contains):
            failures.append(Failure("path_contains", f"'{expect.path_contains[matched]}' does not follow "
                                    f"{expect.path_contains[:matched] or 'the start'} on the path "
                                    f"{' -> '.join(actual['path'])}"))
    if expect.visits is not None:
        seen = {state: actual["visits"].get(state, 0) for state in expect.visits}
        if seen != expect.visits:
            failures.append(Failure("visits", "the visits differ", diff(expect.visits, seen)))
    if expect.context is not None:
        missing = object()
        seen = {key: actual["context"].get(key, missing) for key in expect.context}
        shown = {key: ("<not set>" if value is missing else value) for key, value in seen.items()}
        if shown != expect.context:
            failures.append(Failure("context", "context values differ", diff(expect.context, shown)))
    if expect.error is not None and not _error_matches(expect.error, actual["error"]):
        failures.append(Failure("error", f"expected an error of type {expect.error}, got {actual['error'] or 'none'}"))
    if expect.steps_at_most is not None and actual["steps"] > expect.steps_at_most:
        failures.append(Failure("steps_at_most", f"took {actual['steps']} steps, more than {expect.steps_at_most}"))
    return failures


def _guard(source: str, actual: dict[str, Any]) -> list[Failure]:
    scope = {**base_scope(), **actual["context"], "output": actual["output"], "status": actual["status"]}
    try:
        holds = compile_guard(source).render(scope)
    except ExpressionError as exc:
        return [Failure("output_when", f"the guard failed: {exc}")]
    except Exception as exc:  # noqa: BLE001 - a guard that does not compile (validated files never get here)
        return [Failure("output_when", f"the guard does not compile: {exc}")]
    if holds:
        return []
    return [Failure("output_when", f"{source!r} is false for the output {json.dumps(actual['output'], default=str)}")]
