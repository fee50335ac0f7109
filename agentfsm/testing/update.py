"""`agentfsm test --update`: rewrite the expectations of failed cases from what their runs did.

Only the `expect:` block of a failed case is rewritten, in place; every other line of the file (comments
included) stays as it is. Each expectation the case gave takes the run's actual value: `status`, `output`,
`path`, `path_contains` (the whole actual path), `visits` and `context` (the keys it named), `error`,
`steps_at_most`. An `output_when` guard cannot be computed from a value: it is kept, and said so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentfsm.testing.models import Expect
from agentfsm.testing.runner import CaseResult, FileResult


@dataclass(frozen=True, slots=True)
class FileUpdate:
    """A test file's new text, and the cases whose expectations it changes."""

    path: Path
    text: str
    cases: tuple[str, ...]
    kept_guards: tuple[str, ...]
    """Cases whose `output_when` guard failed and stays as written."""


def updated_expect(expect: Expect, actual: dict[str, Any]) -> dict[str, Any]:
    """The expectations a case gave, each with the value its run actually had."""
    given = expect.model_fields_set
    new: dict[str, Any] = {}
    for name in Expect.model_fields:
        if name not in given:
            continue
        value = getattr(expect, name)
        if name in ("status", "output", "path", "error"):
            value = actual[name]
        elif name == "path_contains":
            value = actual["path"]
        elif name == "visits":
            value = {state: actual["visits"].get(state, 0) for state in value}
        elif name == "context":
            value = {key: actual["context"].get(key) for key in value}
        elif name == "steps_at_most":
            value = max(value, actual["steps"])
        new[name] = value
    return new


def _block(lines: list[str], loaded: Any, index: int) -> tuple[int, int, int] | None:
    """(first line, line after the last, indent) of case `index`'s `expect:` entry, 0-based."""
    source_map = loaded.source_map
    key = source_map.key(("cases", index, "expect"))
    if key is None:
        return None
    start = key.line - 1
    if lines[start][: key.column - 1].strip() not in ("", "-"):
        return None  # written inside a flow mapping: not rewritten line by line
    case = loaded.spec.cases[index]
    later = [mark.line - 1 for name in type(case).model_fields
             if (mark := source_map.key(("cases", index, name))) is not None and mark.line - 1 > start]
    following = source_map.key(("cases", index + 1))
    if following is not None:
        later.append(following.line - 1)
    end = min(later) if later else len(lines)
    while end > start + 1 and _outside(lines[end - 1], key.column - 1):
        end -= 1  # blank lines and comments between cases stay
    return start, end, key.column - 1


def _outside(line: str, indent: int) -> bool:
    """A blank line, or a comment no deeper than the `expect:` key: it belongs to what follows."""
    stripped = line.strip()
    return not stripped or (stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent)



def _expect_text(expect: dict[str, Any], first: str, indent: int) -> list[str]:
    """The `expect:` entry as block YAML; its first line keeps what stood before the key (`- ` of a list item)."""
    dumped = yaml.safe_dump({"expect": expect}, sort_keys=False, allow_unicode=True, default_flow_style=None,
                            width=100).splitlines()
    return [first + dumped[0], *(" " * indent + line if line else line for line in dumped[1:])]


def plan_update(result: FileResult) -> FileUpdate | None:
    """The new text of a file whose cases failed (None when none did, or the file could not run)."""
    loaded = result.loaded
    failed: Sequence[CaseResult] = [case for case in result.cases if not case.passed and case.actual]
    if loaded is None or not failed:
        return None
    lines = loaded.path.read_text(encoding="utf-8").splitlines()
    by_name = {case.name: index for index, case in enumerate(loaded.spec.cases)}
    edits = []
    kept = []
    for outcome in failed:
        index = by_name[outcome.name]
        place = _block(lines, loaded, index)
        if place is None:
            continue
        expect = loaded.spec.cases[index].expect
        if any(f.field == "output_when" for f in outcome.failures):
            kept.append(outcome.name)
        first = lines[place[0]][: place[2]]
        edits.append((place, _expect_text(updated_expect(expect, outcome.actual), first, place[2])))
    for (start, end, _), text in sorted(edits, key=lambda edit: edit[0][0], reverse=True):
        lines[start:end] = text
    return FileUpdate(loaded.path, "\n".join(lines) + "\n", tuple(case.name for case in failed), tuple(kept))


def apply_update(update: FileUpdate) -> None:
    update.path.write_text(update.text, encoding="utf-8")
