"""`http:` tool bindings against a real loopback server: data never changes the URL's structure, secrets stay out.

Every case writes a machine to tmp_path and runs it with `agentfsm.run` (one through the
`agentfsm` command, to see its `--json` output), against `tests/llm_server.py`, which
answers what the test scripts and records each request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm import load_machine
from agentfsm.bindings.imports import BindingError
from agentfsm.runtime.loop import RunResult
from agentfsm.service.views import result_json
from tests.helpers import environment_without_proxies
from tests.llm_server import LLMServer, Reply

SECRET = "tok-9f8e7d6c5b4a-http-tool"
TOKEN_ENV = "AGENTFSM_TEST_HTTP_TOKEN"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)


def write_machine(folder: Path, tool: dict[str, Any], args: dict[str, Any]) -> Path:
    """One `tool` state calling binding `t` with `args` (templates over the input `x`); errors are caught and shown."""
    path = folder / "m.yaml"
    path.write_text(
        "agentfsm: 1\n"
        "name: http-test\n"
        "inputs: {x: {type: any}}\n"
        f"tools:\n  t: {json.dumps(tool)}\n"
        "initial: call\n"
        "states:\n"
        f"  call: {{type: tool, tool: t, args: {json.dumps(args)}, save: r, next: end}}\n"
        "  end: {type: final, output: '{{ r }}'}\n",
        encoding="utf-8",
    )
    return path


def run(path: Path, x: Any = None) -> RunResult:
    return asyncio.run(agentfsm.run(path, {"x": x}))


def test_data_in_the_url_is_percent_encoded_and_cannot_change_its_structure(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(200, {"id": 7, "name": "widget"}))
    tool = {"http": server.url + "/items/{{ args.id }}?q={{ args.q }}"}
    path = write_machine(tmp_path, tool, {"id": "{{ x }}", "q": "a&b=c #d"})

    result = run(path, "../admin?x=1")

    assert result.status == "succeeded", result.error
    assert result.output == {"status": 200, "output": {"id": 7, "name": "widget"}}
    (request,) = server.requests
    assert request.method == "GET"
    assert request.path == "/items/..%2Fadmin%3Fx%3D1?q=a%26b%3Dc%20%23d"


def test_a_dot_segment_in_data_cannot_move_up_the_path(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(200, {}), Reply(200, {}))
    path = write_machine(tmp_path, {"http": server.url + "/api/items/{{ args.id }}/x"}, {"id": "{{ x }}"})
    assert run(path, "..").status == "succeeded"
    assert run(path, ".").status == "succeeded"
    assert [r.path for r in server.requests] == ["/api/items/%2E%2E/x", "/api/items/%2E/x"]


def test_post_sends_the_rendered_json_body_with_data_as_values(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(201, {"created": True}))
    tool = {"http": server.url + "/items", "method": "POST",
            "json": {"name": "{{ args.name }}", "tags": "{{ args.tags }}", "fixed": 1}}
    path = write_machine(tmp_path, tool, {"name": "{{ x }}", "tags": ["a", "b"]})

    result = run(path, '{{ 7 * 7 }}"; drop')

    assert result.status == "succeeded", result.error
    assert result.output == {"status": 201, "output": {"created": True}}
    (request,) = server.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {"name": '{{ 7 * 7 }}"; drop', "tags": ["a", "b"], "fixed": 1}  # data is never rendered


def test_parse_text_and_an_empty_json_body(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(200, body=b"plain words"), Reply(204, body=b""))
    text = run(write_machine(tmp_path, {"http": server.url + "/t", "parse": "text"}, {}))
    empty = run(write_machine(tmp_path, {"http": server.url + "/e", "method": "DELETE"}, {}))
    assert text.output == {"status": 200, "output": "plain words"}
    assert empty.output == {"status": 204, "output": None}
    assert [r.method for r in server.requests] == ["GET", "DELETE"]


def test_a_header_from_the_environment_is_sent_and_never_shown(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(200, {"ok": True}), Reply(500, body=f"crashed handling Bearer {SECRET}".encode()))
    tool = {"http": server.url + "/me", "headers": {"Authorization": {"env": TOKEN_ENV}, "X-Team": "blue"}}
    path = write_machine(tmp_path, tool, {})
    env = environment_without_proxies()

    ok = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "--json"], capture_output=True,
                        text=True, timeout=60, cwd=tmp_path, env=env)
    failed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "--json"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env=env)

    assert ok.returncode == 0, ok.stderr
    assert server.requests[0].headers["authorization"] == SECRET
    assert server.requests[0].headers["x-team"] == "blue"
    assert failed.returncode == 1
    assert "[redacted]" in failed.stdout + failed.stderr  # the server echoed it back; the error quotes it redacted
    for completed in (ok, failed):
        assert SECRET not in completed.stdout and SECRET not in completed.stderr
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_an_unset_header_variable_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    tool = {"http": "http://127.0.0.1:9/x", "headers": {"Authorization": {"env": "AGENTFSM_TEST_NEVER_SET"}}}
    with pytest.raises(BindingError, match="tools.t.headers.Authorization: environment variable "
                                           "AGENTFSM_TEST_NEVER_SET is not set"):
        load_machine(write_machine(tmp_path, tool, {}))


def test_a_status_not_ok_is_a_tool_error_with_the_status_and_the_body(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(404, {"error": "no such item"}), Reply(404, {"error": "no such item"}))
    result = run(write_machine(tmp_path, {"http": server.url + "/items/{{ args.id }}"}, {"id": 5}))
    assert result.status == "failed"
    assert result.error["type"] == "tool.error"
    assert result.error["message"] == "HTTP 404 Not Found from GET 127.0.0.1:" + str(server.port)
    assert result.error["detail"]["status"] == 404
    assert "no such item" in result.error["detail"]["body"]

    accepted = run(write_machine(tmp_path, {"http": server.url + "/items/5", "ok_status": [200, 404]}, {}))
    assert accepted.output == {"status": 404, "output": {"error": "no such item"}}


def test_a_slow_reply_is_a_tool_timeout(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(200, {"late": True}, delay=3.0))
    started = time.monotonic()
    result = run(write_machine(tmp_path, {"http": server.url + "/slow", "timeout": "300ms"}, {}))
    assert time.monotonic() - started < 2.5
    assert result.error["type"] == "tool.timeout"
    assert "0.3s" in result.error["message"]


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "gzip-bomb"])
def test_a_response_over_max_response_is_a_tool_error(server: LLMServer, tmp_path: Path, announced: bool) -> None:
    if announced:
        server.script(Reply(200, body=b"x" * 500_000))  # Content-Length: 500000
    else:  # 20 MB of zeros in 20 KB of gzip: what counts is the decoded size, and reading stops at the cap
        server.script(Reply(200, body=gzip.compress(b"0" * 20_000_000), headers={"Content-Encoding": "gzip"}))
    tool = {"http": server.url + "/big", "parse": "text", "max_response": 100_000}
    result = run(write_machine(tmp_path, tool, {}))
    assert result.error["type"] == "tool.error"
    how = "announces 500000 bytes, more" if announced else "is longer"
    assert result.error["message"] == f"the response {how} than max_response (100000 bytes); not read further"


def test_a_refused_connection_and_a_non_json_body_are_tool_errors(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(200, body=b"<html>not json</html>"))
    not_json = run(write_machine(tmp_path, {"http": server.url + "/html"}, {}))
    assert not_json.error["type"] == "tool.error" and "not JSON" in not_json.error["message"]

    refused = run(write_machine(tmp_path, {"http": "http://127.0.0.1:9/x"}, {}))
    assert refused.error["type"] == "tool.error" and "cannot reach 127.0.0.1:9" in refused.error["message"]


def test_a_url_template_rendering_a_mapping_is_refused(server: LLMServer, tmp_path: Path) -> None:
    result = run(write_machine(tmp_path, {"http": server.url + "/items/{{ args.id }}"}, {"id": {"a": 1}}))
    assert result.error["type"] == "tool.bad_arguments"
    assert server.requests == []


@pytest.mark.parametrize(("url", "message"), [
    ("https://api.example.com{{ args.host }}/x", "scheme and host must be written literally"),
    ("{{ args.url }}", "scheme and host must be written literally"),
    ("https://{{ args.host }}/x", "scheme and host must be written literally"),
    ("https://api.example.com/{% if args.x %}a{% endif %}", "only {{ expression }} templates"),
    ("ftp://example.com/x", "is not an http(s) URL"),
])
def test_the_scheme_and_host_must_be_literal(tmp_path: Path, url: str, message: str) -> None:
    report = agentfsm.validate_file(write_machine(tmp_path, {"http": url}, {}))
    assert not report.ok
    assert any(message in str(problem) for problem in report.problems), [str(p) for p in report.problems]


def test_json_with_get_and_the_declared_parameters(tmp_path: Path) -> None:
    report = agentfsm.validate_file(write_machine(tmp_path, {"http": "https://a.example/x", "json": {"a": 1}}, {}))
    assert any("a GET request has no body" in str(p) for p in report.problems)

    tool = {"http": "https://a.example/items/{{ args.id }}", "description": "Fetch an item.",
            "parameters": {"id": {"type": "integer", "description": "The item's id."}}}
    machine = load_machine(write_machine(tmp_path, tool, {"id": 1}))
    client = machine.states["call"].client
    assert client.description == "Fetch an item."
    assert client.parameters == {"type": "object", "properties": {"id": {"type": "integer",
                                                                         "description": "The item's id."}},
                                 "required": ["id"]}


# -- found in the security review ----------------------------------------------------------------


def test_credentials_in_a_url_are_refused_without_being_shown(tmp_path: Path) -> None:
    path = write_machine(tmp_path, {"http": "https://alice:hunter2pw@api.example.com/x"}, {})
    problems = agentfsm.validate_file(path).errors
    assert [p.code for p in problems] == ["invalid-value"]
    assert "credentials in a URL" in problems[0].message
    assert "hunter2pw" not in problems[0].message


def test_a_secret_echoed_in_a_successful_reply_is_redacted_before_it_reaches_the_context(
    server: LLMServer, tmp_path: Path
) -> None:
    server.script(Reply(json={"echo": f"Bearer {SECRET}"}))
    tool = {"http": f"{server.url}/echo", "headers": {"Authorization": {"env": TOKEN_ENV}}}
    result = run(write_machine(tmp_path, tool, {}))
    assert result.status == "succeeded", result.error
    assert SECRET not in json.dumps(result_json(result))
    assert "[redacted]" in json.dumps(result.output)


@pytest.mark.parametrize(
    ("reply", "args", "kind"),
    [
        (Reply(body=b'{"a": 1}', headers={"Content-Type": "application/json; charset=rot13"}), {}, None),
        (Reply(body=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"}), {}, "tool.error"),
        (Reply(json={}), {"v": "{{ x }}"}, "tool.bad_arguments"),
    ],
    ids=["odd-charset", "deep-json", "nan-body"],
)
def test_odd_replies_and_values_are_tool_errors_not_crashes(server: LLMServer, tmp_path: Path, reply: Reply,
                                                            args: dict[str, Any], kind: str | None) -> None:
    server.script(reply)
    tool: dict[str, Any] = {"http": f"{server.url}/x", "max_response": 10_000_000}
    if args:
        tool |= {"method": "POST", "json": {"v": "{{ args.v }}"}}
    result = run(write_machine(tmp_path, tool, args), float("nan"))
    if kind is None:
        assert result.status == "succeeded", result.error
        assert result.output == {"status": 200, "output": {"a": 1}}
    else:
        assert result.status == "failed"
        assert result.error["type"] == kind


def test_a_status_listed_in_ok_status_can_be_routed_as_an_event(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(404, json={"detail": "no such item"}))
    path = tmp_path / "route.yaml"
    path.write_text(
        "agentfsm: 1\nname: route\n"
        f"tools:\n  items: {json.dumps({'http': server.url + '/items/{{ args.id }}', 'ok_status': [200, 404]})}\n"
        "initial: fetch\nstates:\n"
        "  fetch:\n    type: tool\n    tool: items\n    args: {id: '7'}\n    save: item\n"
        "    emit: \"{{ 'missing' if result.status == 404 else 'found' }}\"\n"
        "    transitions:\n      - {event: found, to: found}\n      - {event: missing, to: missing}\n"
        "  found: {type: final, output: found}\n  missing: {type: final, output: missing}\n",
        encoding="utf-8",
    )
    result = asyncio.run(agentfsm.run(path))
    assert (result.status, result.output) == ("succeeded", "missing")
    assert [t.to_state for t in result.context.history][:1] == ["missing"]
