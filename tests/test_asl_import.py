"""`agentfsm import` of Amazon States Language: imported machines validate and run offline with Python stubs bound
to their tasks, giving the path and output the ASL specification says; what cannot be expressed is refused with a
JSON pointer; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm.runtime.loop import RunResult
from agentfsm.service.asl import export_file, import_file
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


@pytest.mark.parametrize(("status", "path"), [("RUNNING", ["Check", "Check (output to Again)", "Again"]),
                                               ("DONE", ["Check", "Check (output to Done)", "Done"])])
def test_a_choice_output_path_selects_on_every_way_out(tmp_path: Path, status: str, path: list[str]) -> None:
    source = tmp_path / "check.asl.json"
    source.write_text(json.dumps({"StartAt": "Check", "States": {
        "Check": {"Type": "Choice", "OutputPath": "$.operation", "Default": "Done",
                  "Choices": [{"Variable": "$.operation.Status", "StringEquals": "RUNNING", "Next": "Again"}]},
        "Again": {"Type": "Pass", "Result": "again", "ResultPath": "$.next", "End": True},
        "Done": {"Type": "Succeed"}}}), encoding="utf-8")
    assert import_file(source, output=tmp_path / "check.yaml").imported
    result = asyncio.run(agentfsm.load_machine(tmp_path / "check.yaml").run(
        {"operation": {"Status": status, "Id": 7}, "other": 1}))
    assert result.status == "succeeded", result.error
    assert path_of(result)[:3] == path
    assert result.output == {"Status": status, "Id": 7, **({"next": "again"} if status == "RUNNING" else {})}


@pytest.mark.parametrize(("limit", "path"), [(5, ["Work", "end"]), (0.05, ["Work", "Late"])])
def test_a_timeout_read_from_the_input_bounds_the_task(tmp_path: Path, limit: float, path: list[str]) -> None:
    source = tmp_path / "late.asl.json"
    source.write_text(json.dumps({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:slow", "TimeoutSecondsPath": "$.limit",
                 "ResultPath": "$.done", "End": True,
                 "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": None, "Next": "Late"}]},
        "Late": {"Type": "Fail", "Error": "TooSlow"}}}), encoding="utf-8")
    assert import_file(source, binds=[f"slow=python:{STUBS}:slow"], output=tmp_path / "late.yaml").imported
    result = asyncio.run(agentfsm.load_machine(tmp_path / "late.yaml").run({"limit": limit, "sleep": 0.3}))
    assert path_of(result) == path
    assert result.status == ("succeeded" if limit == 5 else "failed")


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
        "A": {"Type": "Pass", "Parameters": {"id.$": "$$.Execution.RoleArn"}, "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "C"}], "Default": "C",
              "Assign": {"seen": True}},
        "C": {"Type": "Succeed"}}}), encoding="utf-8")
    target = tmp_path / "m.yaml"
    done = agentfsm_cmd("import", source, "-o", target, "--json", cwd=tmp_path)
    assert done.returncode == 2 and not target.exists()
    assert [r["pointer"] for r in json.loads(done.stdout)["refusals"]] == ["/States/A/Parameters/id.$",
                                                                           "/States/B/Assign"]


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


def test_a_parallel_result_is_the_array_of_branch_outputs(tmp_path: Path) -> None:
    result = run_imported(tmp_path, "parallel", {"zip": "75001", "number": "555"},
                          [f"AddressFinder=python:{STUBS}:address"])
    assert result.status == "succeeded", result.error
    assert result.context.data["found"] == [{"city": "Paris"}, {"phone": "+1-555"}]
    assert result.output["contact"] == {"city": "Paris", "phone": "+1-555"}


def test_map_outputs_come_in_item_order_and_failures_follow_the_tolerance(tmp_path: Path) -> None:
    binds = [f"ship-val=python:{STUBS}:ship_validate"]
    parcels = [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]
    detail = {"delivery-partner": "UQS", "shipped": parcels}
    result = run_imported(tmp_path, "map", {"detail": detail}, binds)
    assert result.status == "succeeded", result.error
    assert result.output["detail"]["shipped"] == [
        {"sku": sku, "position": index, "by": "UQS"} for index, sku in enumerate("abc")]
    one_bad = run_imported(tmp_path, "map", {"detail": {**detail, "shipped": [{"sku": "a"}, {"sku": "bad"}]}}, binds)
    assert one_bad.status == "succeeded"
    assert one_bad.output["detail"]["shipped"][1]["error"]["type"] == "InvalidParcel"
    two_bad = run_imported(tmp_path, "map", {"detail": {**detail, "shipped": [{"sku": "bad"}, {"sku": "bad"}]}},
                           binds)
    assert path_of(two_bad)[-1] == "Too many"
    assert two_bad.error["detail"]["error"] == "TooManyBadParcels"
    assert two_bad.error["detail"]["cause"].startswith("2 of 2 items failed (tolerated: 1)")


def test_the_context_object_keeps_the_execution_input_apart_from_the_data(tmp_path: Path) -> None:
    """`$$.Execution.Input` is the input the execution started with, though the first state narrowed the data to
    the order; an item processor reads it too; `$$` alone is the whole context object."""
    given = {"order": {"lines": [{"sku": "a"}, {"sku": "b"}], "id": 7}, "currency": "EUR", "customer": {"name": "Ada"}}
    result = run_imported(tmp_path, "context-object", given)
    assert result.status == "succeeded", result.error
    out, run_id = result.output, result.context.run_id
    assert out["original"] == given
    assert out["tagged"] == [{"sku": sku, "currency": "EUR", "customer": "Ada", "machine": "context-object"}
                             for sku in "ab"]
    assert out["same"] is True
    assert out["whole"]["Execution"] == {"Id": run_id, "Name": run_id, "Input": given, "StartTime": out["started"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["started"])
    assert out["whole"]["StateMachine"] == {"Id": "context-object", "Name": "context-object"}
    assert out["whole"]["State"]["Name"] == "Stamp" and out["whole"]["Task"] == {"Token": f"{run_id}/Stamp"}
    assert set(result.context.data) - set(out) == {"$$"}  # kept in the context, never shown as data


def test_an_item_reader_is_a_bound_tool_and_a_batcher_gives_each_run_a_list(tmp_path: Path) -> None:
    """ItemReader: the S3 read is a tool the user binds, given the reader's Parameters and ReaderConfig; each row
    is selected (with its index), then batched two by two, each run getting `{Items, BatchInput}`; the outputs
    come back in order."""
    binds = [f"arn:aws:states:::s3:getObject=python:{STUBS}:read_csv", f"sum-batch=python:{STUBS}:sum_batch"]
    result = run_imported(tmp_path, "reader", {"bucket": "b", "unit": "kg"}, binds)
    assert result.status == "succeeded", result.error
    assert result.output == {"bucket": "b", "unit": "kg", "totals": [
        {"total": 3, "unit": "kg", "rows": [0, 1]}, {"total": 7, "unit": "kg", "rows": [2, 3]},
        {"total": 5, "unit": "kg", "rows": [4]}]}
    unbound = import_file(EXAMPLES / "reader.asl.json")
    assert {"tool": "s3_getObject", "resource": "arn:aws:states:::s3:getObject"} in unbound.unbound


HAND_WRITTEN = """\
    agentfsm: 1
    name: scoring
    inputs:
      name: {type: string, required: true}
    tools:
      score: {python: "tests.asl.stubs:score"}
    initial: greet
    states:
      greet:
        type: set
        set: {greeting: "Hello {{ name }}", tries: 0}
        next: rate
      rate:
        type: tool
        tool: score
        args: {input: {name: "{{ name }}"}}
        save: rating
        retry: {errors: [tool.error], max_attempts: 2, interval: 1s}
        next: judge
      judge:
        type: choice
        transitions:
          - {when: "rating.points >= 50 and greeting is string", to: good}
          - {when: "rating.points < 0", to: broken}
          - {to: fine}
      good: {type: final, output: "{{ rating }}"}
      fine: {type: final, output: {verdict: fine, greeting: "{{ greeting }}"}}
      broken: {type: fail, error: "negative score", detail: {error: Negative, cause: "negative score"}}
"""


@pytest.mark.parametrize("name", ["Ada", "Grace"])
def test_an_exported_machine_runs_the_same_once_imported_again(tmp_path: Path, name: str) -> None:
    original = tmp_path / "scoring.yaml"
    original.write_text(textwrap.dedent(HAND_WRITTEN), encoding="utf-8")
    exported = tmp_path / "scoring.asl.json"
    done = agentfsm_cmd("export", original, "-o", exported, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    definition = json.loads(exported.read_text(encoding="utf-8"))
    rate = definition["States"]["rate"]
    assert rate["Resource"] == "arn:aws:states:::lambda:invoke" and rate["Parameters"]["FunctionName"] == "score"
    assert rate["Retry"] == [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    assert definition["States"]["judge"]["Choices"][0] == {
        "And": [{"Variable": "$.rating.points", "NumericGreaterThanEquals": 50},
                {"Variable": "$.greeting", "IsString": True}], "Next": "good"}
    assert definition["States"]["broken"] == {"Type": "Fail", "Error": "Negative", "Cause": "negative score"}
    back = tmp_path / "back.yaml"
    assert import_file(exported, binds=[f"score=python:{STUBS}:score"], output=back).imported
    first = asyncio.run(agentfsm.load_machine(original).run({"name": name}))
    second = asyncio.run(agentfsm.load_machine(back).run({"name": name}))
    assert first.status == second.status == "succeeded"
    assert second.output == first.output


def test_an_imported_machine_exported_and_imported_again_gives_the_same_output(tmp_path: Path) -> None:
    """A Parallel's InputPath goes back as InputPath (not a wrapped Parameters), a Map's item as the item."""
    given = {"q": 9, "a": {"xs": [1, 2]}}
    first = run_imported(tmp_path, "branch-input", given)
    assert first.status == "succeeded", first.error
    assert first.output["both"] == [{"q": 9, "a": {"xs": [1, 2]}}, [{"x": 1, "q": 9}, {"x": 2, "q": 9}]]
    exported = export_file(tmp_path / "branch-input.yaml", output=tmp_path / "back.asl.json")
    assert exported.text is not None, exported.refusals
    assert import_file(tmp_path / "back.asl.json", output=tmp_path / "back.yaml").imported
    second = asyncio.run(agentfsm.load_machine(tmp_path / "back.yaml").run(given))
    assert second.output == first.output


def test_export_refuses_what_has_no_asl_form_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: m
        llms: {brain: {provider: scripted, replies: [hi]}}
        initial: ask
        states:
          ask: {type: llm, llm: brain, prompt: hi, save: reply, next: keep}
          keep: {type: set, set: {$$: {at: "{{ run.id }}"}}, next: done}
          done: {type: final}
        """), encoding="utf-8")
    done = agentfsm_cmd("export", path, "--json", cwd=tmp_path)
    assert done.returncode == 2
    assert json.loads(done.stdout)["refusals"] == [
        {"pointer": "/states/ask/type", "message": "a llm state has no Amazon States Language form here"},
        {"pointer": "/states/keep/set/$$", "message": "setting the context object $$ has no Amazon States Language "
         "form"}]


SAGA = Path(__file__).resolve().parent / "asl" / "corpus" / "step-functions-workflows-collection" / \
    "saga-pattern-sam__statemachine.asl.json"
SAGA_BINDS = [f"{name}=python:{STUBS}:travel_step" for name in (
    "reserveFlightFunction", "reserveCarRentalFunction", "confirmFlightFunction", "confirmCarRentalFunction",
    "refundPaymentFunction", "cancelCarRentalFunction", "cancelFlightFunction")] + [
    f"processPaymentFunction=python:{STUBS}:travel_payment", f"sns_publish=python:{STUBS}:publish"]


def test_a_sample_of_the_corpus_runs_its_saga_both_ways(tmp_path: Path) -> None:
    """AWS's saga sample: every step's result merged at its ResultPath; a failed payment caught with its error
    written at `$.ProcessPaymentError`, then the compensations in order and the Fail state's error name."""
    target = tmp_path / "saga.yaml"
    assert import_file(SAGA, binds=SAGA_BINDS, output=target).imported
    machine = agentfsm.load_machine(target)
    booked = asyncio.run(machine.run({"trip_id": "t1", "run_type": "success"}))
    assert booked.status == "succeeded", booked.error
    assert path_of(booked) == ["ReserveFlight", "ReserveCarRental", "ProcessPayment", "ConfirmFlight",
                               "ConfirmCarRental", "SendingSMSSuccess", "Reservation Successful!"]
    assert booked.output == {"MessageId": "m-1", "Message": "Your Travel Reservation is Successful"}
    failed = asyncio.run(machine.run({"trip_id": "t2", "run_type": "failPayment"}))
    assert path_of(failed) == ["ReserveFlight", "ReserveCarRental", "ProcessPayment", "ProcessPayment (caught 1)",
                               "RefundPayment", "CancelRentalReservation", "CancelFlightReservation",
                               "SendingSMSFailure", "Reservation Failed"]
    assert failed.error["detail"]["error"] == "Job Failed"
