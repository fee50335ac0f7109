"""The inputs a front end collects for a run: `KEY=VALUE` pairs and a JSON or YAML file, checked by the machine."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from agentfsm.limits import DataRefused, check_data
from agentfsm.spec.durations import parse_duration
from agentfsm.spec.problems import InputError

if TYPE_CHECKING:
    from agentfsm.runtime.machine import StateMachine

# What parses machines (pydantic, the spec's models, YAML) is imported by the functions that need it:
# commands that only read stored runs (`runs`, `history`) parse ages and event data, nothing more.

__all__ = ["collect_inputs", "given_inputs", "parse_age", "parse_event_data", "parse_llm_options", "read_batch", "read_inputs_file"]


def read_inputs_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping of inputs, read safely."""
    from agentfsm.spec.yamlsource import load_yaml_file

    document, problems = load_yaml_file(path, str(path))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise InputError(f"--inputs {errors[0]}")
    if document is None or not isinstance(document.data, dict):
        raise InputError(f"--inputs {path}: the file must hold a mapping of input names to values")
    return dict(document.data)


def collect_inputs(machine: StateMachine, pairs: Iterable[str], inputs_file: Path | None = None) -> dict[str, Any]:
    """The inputs from a file, then `KEY=VALUE` pairs over it (typed by the machine's `inputs:`), checked whole.

    Raises InputError before anything runs or is stored when they do not fit the machine.
    """
    given = given_inputs(machine, pairs, inputs_file)
    machine.new_context(given)  # the machine's own check: unknown, missing or ill-typed inputs
    return given


def given_inputs(machine: StateMachine, pairs: Iterable[str], inputs_file: Path | None = None) -> dict[str, Any]:
    """`collect_inputs` without the final check (a batch's common inputs are checked with each line)."""
    from agentfsm.service.machines import loaded_source
    from agentfsm.spec.inputs import parse_cli_input

    given: dict[str, Any] = read_inputs_file(inputs_file) if inputs_file else {}
    source = loaded_source(machine)
    declared = source.spec.inputs if source is not None else {}
    for pair in pairs:
        key, value = parse_cli_input(pair, declared)
        given[key] = value
    checked_inputs(given)
    return given


def checked_data(value: Any, what: str) -> Any:
    """`value`, unless it is nested too deeply or is not Unicode text: then one InputError line naming `what`."""
    try:
        check_data(value)
    except DataRefused as exc:
        raise InputError(f"{what} {exc}") from None
    return value


def checked_inputs(inputs: Any) -> None:
    """Each input checked by `checked_data`, the error naming the input."""
    for key, value in dict(inputs or {}).items():
        checked_data(key, "an input's name")
        checked_data(value, f"input '{key}'")


def read_batch(machine: StateMachine, path: Path, common: dict[str, Any]) -> list[dict[str, Any]]:
    """`--batch FILE.jsonl`: one run's inputs per line (a JSON object, over the common `-i`/`--inputs` ones),
    every line checked by the machine before any run is recorded. Blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--batch {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    batch: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            inputs = json.loads(line, parse_constant=_refuse_constant)
        except RecursionError:
            raise InputError(f"{path}:{number}: nested too deeply") from None
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not a JSON object ({exc})") from None
        if not isinstance(inputs, dict):
            raise InputError(f"{path}:{number}: each line must be a JSON object of inputs")
        given = {**common, **inputs}
        try:
            checked_inputs(inputs)
            machine.new_context(given)
        except InputError as exc:
            raise InputError(f"{path}:{number}: {exc}") from None
        batch.append(given)
    if not batch:
        raise InputError(f"--batch {path}: no lines of inputs")
    return batch


def parse_llm_options(pairs: list[str]) -> dict[str, str]:
    """`NAME=PROVIDER:MODEL` options from the command line, by binding name."""
    from agentfsm.spec.overrides import parse_llm_options as parse

    return parse(pairs)


def parse_event_data(text: str | None) -> Any:
    """An event's data given as JSON text (None: no data). NaN and Infinity, which JSON has not, are refused."""
    if text is None:
        return None
    try:
        return checked_data(json.loads(text, parse_constant=_refuse_constant), "--data")
    except InputError:
        raise
    except RecursionError:
        raise InputError("--data is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"--data is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise InputError(f"--data is not JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_age(text: str | None, option: str = "--older-than") -> float | None:
    """An age such as `30d` or `12h` in seconds; a bare `0` needs no unit (any age)."""
    if text is None:
        return None
    try:
        seconds = 0.0 if text.strip() == "0" else parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None
    if not math.isfinite(seconds):
        raise InputError(f"{option}: {text!r} is not a duration")
    return seconds
