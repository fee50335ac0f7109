"""`agentfsm import` of Amazon States Language: imported machines validate and run offline with Python stubs bound
to their tasks, giving the path and output the ASL specification says; what cannot be expressed is refused with a
JSON pointer; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm.runtime.loop import RunResult
from agentfsm.service.asl import import_file
from agentfsm.spec.problems import InputError
from tests.test_cli import agentfsm_cmd

EXAMPLES = Path(__file__).resolve().parent / "asl" / "examples"
STUBS = "tests.asl.stubs"
TASK_BINDS = [f"PriceOrder=python:{STUBS}:price", f"Audit=python:{STUBS}:audit", f"Charge=python:{STUBS}:charge"]


def run_imported(tmp_path: Path, name: str, inputs: dict[str, Any], binds: list[str] = ()) -> RunResult:
    """Import an example into tmp_path, load it as any machine, run it in memory."""
    target = tmp_path / f"{name}.yaml"
    outcome = import_file(EXAMPLES / f"{name}.asl.json", binds=binds, output=target)
    assert outcome.imported, outcome.refusals
    return asyncio.run(agentfsm.load_machine(target).run(inputs))


def path_of(result: RunResult) -> list[str]:
    return [record.from_state for record in result.context.history] + [result.context.state]


def test_pass_states_place_results_as_result_path_and_output_path_say(tmp_path: Path) -> None:
    result = run_imported(tmp_path, "pass-and-merge", {"name": "Ada", "items": [{"id": "a"}, {"id": "b"}]})
    assert result.status == "succeeded"
    # Nest: InputPath picks `shaped`, ResultPath writes into the raw input, OutputPath keeps `deep`
    assert result.output == {"er": {"path": {"copy": "Ada"}}}
    assert path_of(result) == ["Greet", "Shape", "Nest", "Done"]


def test_pass_parameters_read_paths_and_intrinsics(tmp_path: Path) -> None:
    definition = json.loads((EXAMPLES / "pass-and-merge.asl.json").read_text(encoding="utf-8"))
    definition["States"]["Shape"]["Next"] = "Done"
    source = tmp_path / "shape.asl.json"
    source.write_text(json.dumps(definition), encoding="utf-8")
    import_file(source, output=tmp_path / "shape.yaml")
    assert (tmp_path / "shape.yaml").read_text(encoding="utf-8").startswith(
        "# Imported from shape.asl.json (Amazon States Language)")
    result = asyncio.run(agentfsm.load_machine(tmp_path / "shape.yaml").run(
        {"name": "Ada", "items": [{"id": "a"}, {"id": "b"}]}))
    assert result.output["shaped"] == {
        "who": "Ada", "line": "hello Ada, you have 2 items", "first": {"id": "a"}, "ids": ["a", "b"],
        "fixed": {"kept": "{{ not a template }}"},  # a literal that reads like a template stays a literal
    }
    assert result.output["greeting"] == {"text": "hello"}


BASE = {"kind": "x", "n": 1, "limit": 5, "flag": False, "when": "2024-05-01T00:00:00Z", "file": "data.csv",
        "maybe": 1, "tag": "a", "other": "a"}


@pytest.mark.parametrize(("change", "branch"), [
    ({}, "Other"), ({"kind": "text"}, "Text"), ({"n": 10}, "Big"), ({"n": 5}, "Big"), ({"n": -1}, "Negative"),
    ({"flag": True}, "Flagged"), ({"when": "2019-12-31T23:59:59Z"}, "Old"), ({"file": "log-2024.txt"}, "Log"),
    ({"maybe": None}, "Odd"), ({"tag": "b"}, "Odd"), ({"n": "10"}, "Other"),
], ids=lambda value: value if isinstance(value, str) else ",".join(value) or "none")
def test_choice_rules_take_the_branch_the_spec_says(tmp_path: Path, change: dict[str, Any], branch: str) -> None:
    result = run_imported(tmp_path, "choices", {**BASE, **change})
    assert result.status == "succeeded"
    assert path_of(result) == ["Route", branch, "end"]
    assert result.output == {**BASE, **change, "went": branch.lower()}


def card(**fields: Any) -> dict[str, Any]:
    return {"number": uuid.uuid4().hex, **fields}


def test_tasks_merge_results_retry_and_succeed(tmp_path: Path) -> None:
    order = {"items": [{"price": 10, "quantity": 2}, {"price": 5}]}
    result = run_imported(tmp_path, "tasks", {"order": order, "card": card(limit=100)}, TASK_BINDS)
    assert result.status == "succeeded", result.error
    assert path_of(result) == ["Price", "Audit", "Charge", "Done"]
    assert result.output == {"charged": 25, "attempts": 2}  # one Busy, retried
    assert result.context.data["pricing"] == {"total": 25, "status": 200}  # ResultSelector over lambda:invoke
    assert "audited" not in json.dumps(result.context.data)  # ResultPath null drops Audit's result


def test_a_catch_writes_error_and_cause_and_a_fail_names_its_error(tmp_path: Path) -> None:
    order = {"items": [{"price": 60}]}
    result = run_imported(tmp_path, "tasks", {"order": order, "card": card(limit=10)}, TASK_BINDS)
    assert result.status == "failed"
    assert path_of(result) == ["Price", "Audit", "Charge", "Charge (caught 1)", "Declined"]
    assert result.context.data["failure"] == {"Error": "CardDeclined", "Cause": "60 is over the limit"}
    assert result.error["detail"] == {"error": "PaymentFailed", "cause": "60 is over the limit"}
    broken = run_imported(tmp_path, "tasks", {"order": order, "card": card(limit=100, broken=True)}, TASK_BINDS)
    assert path_of(broken) == ["Price", "Audit", "Charge", "Broken"]  # States.ALL, ResultPath null
    assert broken.error["detail"] == {"error": "Broken", "cause": "the charge failed"}
    assert "failure" not in broken.context.data


def test_an_unbound_task_fails_naming_its_resource(tmp_path: Path) -> None:
    result = run_imported(tmp_path, "tasks", {"order": {"items": []}, "card": card(limit=1)})
    assert result.error["type"] == "tool.unbound"
    assert "arn:aws:states:::lambda:invoke" in result.error["message"] and "PriceOrder" in result.error["message"]


def test_intrinsic_functions_give_the_documented_results(tmp_path: Path) -> None:
    given = {"name": "Ada", "n": 3, "flag": True, "text": '{"a": [1, 2]}', "obj": {"a": 1}, "more": {"b": 2, "a": 0},
             "list": [1, 2, 3], "dupes": [1, 1, "1", {"x": 1}, {"x": 1}]}
    result = run_imported(tmp_path, "intrinsics", given)
    assert result.status == "succeeded", result.error
    assert result.output == {
        "format": "Hi Ada, {literal} 3 true", "json": {"a": [1, 2]}, "text": '{"a":1}', "array": ["a", 1, 3],
        "parts": [[1, 3], [5, 7]], "contains": True, "item": 2, "length": 3, "unique": [1, "1", {"x": 1}],
        "b64": "QWRh", "plain": "hello", "hash": "aaff4a450a104cd177d28d18d74485e8cae074b7",
        "merged": {"a": 0, "b": 2}, "sum": 2, "split": ["a", "b", "c"], "random": 5, "uuid_length": 5,
    }


def test_waits_read_seconds_and_timestamps(tmp_path: Path) -> None:
    result = run_imported(tmp_path, "waits", {"delay": 0.2, "at": "2020-01-01T00:00:00Z"})
    assert result.status == "succeeded"
    assert path_of(result) == ["Brief", "Past", "Literal", "Done"]


def test_a_choice_without_default_fails_with_no_choice_matched(tmp_path: Path) -> None:
    assert run_imported(tmp_path, "no-default", {"x": 1}).status == "succeeded"
    failed = run_imported(tmp_path, "no-default", {"x": 2})
    assert failed.error["detail"]["error"] == "States.NoChoiceMatched"


def test_the_command_writes_the_machine_and_lists_what_to_bind(tmp_path: Path) -> None:
    target = tmp_path / "tasks.yaml"
    listed = agentfsm_cmd("import", EXAMPLES / "tasks.asl.json", "-o", target, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"wrote {target}" in listed.stderr and "3 tool(s) to bind" in listed.stderr
    assert "  Charge: arn:aws:lambda:us-east-1:123456789012:function:Charge" in listed.stderr
    assert agentfsm.validate_file(target).problems == []
    bound = agentfsm_cmd("import", EXAMPLES / "tasks.asl.json", "--json", *(f"--bind={b}" for b in TASK_BINDS),
                         cwd=tmp_path)
    view = json.loads(bound.stdout)
    assert (bound.returncode, view["imported"], view["unbound"], view["written"]) == (0, True, [], None)


def test_a_refused_part_is_located_and_nothing_is_written(tmp_path: Path) -> None:
    source = tmp_path / "m.asl.json"
    source.write_text(json.dumps({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"id.$": "$$.Execution.StartTime"}, "Next": "B"},
        "B": {"Type": "Wait", "Seconds": 1, "OutputPath": "$.x", "End": True}}}), encoding="utf-8")
    target = tmp_path / "m.yaml"
    done = agentfsm_cmd("import", source, "-o", target, "--json", cwd=tmp_path)
    assert done.returncode == 2 and not target.exists()
    assert [r["pointer"] for r in json.loads(done.stdout)["refusals"]] == ["/States/A/Parameters/id.$",
                                                                           "/States/B/OutputPath"]


BAD = {
    "not-json": ('{"StartAt": "A", "States": {', "/: not JSON: Expecting property name enclosed in double quotes"),
    "not-asl": ('{"Comment": "no states"}', "/: not an Amazon States Language machine"),
    "next-missing": ('{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}',
                     '/States/A/Next: Next names no state: "Nowhere"'),
    "unknown-type": ('{"StartAt": "A", "States": {"A": {"Type": "Sleep", "End": true}}}',
                     '/States/A/Type: unknown state type "Sleep"'),
    "bad-path": ('{"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.a[?(", "End": true}}}',
                 "/States/A/InputPath: malformed JSONPath '$.a[?('"),
    "bad-intrinsic": ('{"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"n.$": '
                      '"States.ArrayLength($.a, $.b)"}, "End": true}}}',
                      "/States/A/Parameters/n.$: States.ArrayLength takes 1 argument(s), got 2"),
    "unknown-intrinsic": ('{"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"n.$": '
                          '"States.Nope(1)"}, "End": true}}}', "/States/A/Parameters/n.$: unknown intrinsic function"),
    "yaml": ("StartAt: [", "/: not JSON or YAML"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_located_line(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    source = tmp_path / "m.asl.json"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as raised:
        import_file(source, output=tmp_path / "m.yaml")
    message = str(raised.value)
    assert message.startswith(f"{source}: {expected}"), message
    assert "\n" not in message and not (tmp_path / "m.yaml").exists()


def test_bad_input_and_a_bind_naming_no_resource_exit_2_on_one_line(tmp_path: Path) -> None:
    target = tmp_path / "out.yaml"
    done = agentfsm_cmd("import", EXAMPLES / "tasks.asl.json", "--bind", "Nope=python:x:y", "-o", target,
                        cwd=tmp_path)
    assert done.returncode == 2 and not target.exists()
    assert done.stderr.count("\n") == 1 and "--bind Nope: no task of this machine uses that resource" in done.stderr
    missing = agentfsm_cmd("import", tmp_path / "absent.asl.json", cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
