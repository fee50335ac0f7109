"""Native tool calling: an `llm` state with `tools:` loops model -> tool calls -> results -> model.

Scripted models exercise the loop offline (their rules see tool results as
`Result of NAME: JSON` lines); the loopback HTTP server (tests/llm_server.py) checks the
OpenAI and Anthropic wire formats of a whole round trip.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentfsm
from agentfsm.bindings.llm import LLMRequest, Message, ToolCall, ToolResult, tool_results_text
from agentfsm.runtime.errors import ERROR_TYPES
from agentfsm.spec.models import ScriptedReply
from tests.helpers import CallRecorder
from tests.llm_server import LLMServer, Reply

KEY_ENV = "AGENTFSM_TEST_LLM_KEY"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-key")


def machine(folder: Path, llm: dict[str, Any], *, tools: dict[str, Any] | None = None,
            ask: dict[str, Any] | None = None) -> Path:
    document = {
        "agentfsm": 1, "name": "tooling", "context": {"question": "What is 17 * 23?"},
        "llms": {"brain": llm},
        "tools": tools if tools is not None else {"calc": {"builtin": "calculator"}},
        "initial": "ask",
        "states": {
            "ask": {"type": "llm", "llm": "brain", "prompt": "{{ question }}", "tools": ["calc"],
                    "save": "answer", "next": "done", **(ask or {}),
                    "catch": [{"errors": ["llm"], "to": "broken", "as": "err"}]},
            "done": {"type": "final", "output": "{{ answer }}"},
            "broken": {"type": "fail", "error": "{{ err.type }}: {{ err.message }}"},
        },
    }
    path = folder / "machine.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run(path: Path, *observers: object) -> agentfsm.RunResult:
    return asyncio.run(agentfsm.run(path, observers=observers))


CALC_RULES = [
    {"match": r"Result of calc: (\d+)", "reply": r"\1"},
    {"match": "What is", "tool_calls": [{"name": "calc", "arguments": {"expression": "17 * 23"}}]},
]


# -- scripted --------------------------------------------------------------------------------


def test_a_scripted_model_calls_the_calculator_then_answers_with_its_result(tmp_path: Path) -> None:
    recorder = CallRecorder()
    result = run(machine(tmp_path, {"provider": "scripted", "replies": CALC_RULES}), recorder)

    assert result.status == "succeeded", result.error
    assert str(result.output) == "391"
    assert result.usage["brain"]["calls"] == 2
    [call] = recorder.tools()
    assert call.binding == "calc" and call.via == "llm"
    assert call.args == {"expression": "17 * 23"}
    assert call.result == 391
    assert call.error is None
    assert call.duration >= 0
    assert [c.kind for c in recorder.calls] == ["llm", "tool", "llm"]
    assert [c.finish_reason for c in recorder.calls if c.kind == "llm"] == ["tool_calls", "stop"]


def test_the_scripted_model_sees_tool_results_as_result_lines() -> None:
    results = (ToolResult("call_1", "calc", "391"),
               ToolResult("call_2", "search", json.dumps({"error": {"type": "tool.error", "message": "down"}}), True))
    assert tool_results_text(results) == (
        'Result of calc: 391\nError from search: {"error": {"type": "tool.error", "message": "down"}}'
    )


PARALLEL_TOOLS = '''\
import asyncio

ORDER = []
_EVENT = []


def _started() -> asyncio.Event:
    if not _EVENT:
        _EVENT.append(asyncio.Event())
    return _EVENT[0]


async def slow(x: str) -> list:
    """Waits until `fast` has started: it can only finish when both run at once."""
    ORDER.append("slow start")
    await asyncio.wait_for(_started().wait(), 10)
    ORDER.append("slow end")
    return list(ORDER)


async def fast(x: str) -> str:
    """Lets `slow` go on."""
    ORDER.append("fast start")
    _started().set()
    ORDER.append("fast end")
    return "fast " + x
'''


def test_two_tool_calls_in_one_reply_run_concurrently(tmp_path: Path) -> None:
    (tmp_path / "parallel_tools_handshake.py").write_text(PARALLEL_TOOLS, encoding="utf-8")
    tools = {"calc": {"python": "parallel_tools_handshake:slow"},
             "fast": {"python": "parallel_tools_handshake:fast"}}
    llm = {"provider": "scripted", "replies": [
        {"match": "Result of calc", "reply": "both done"},
        {"times": 1, "tool_calls": [{"name": "calc", "arguments": {"x": "a"}},
                                    {"name": "fast", "arguments": {"x": "b"}}]},
    ]}
    recorder = CallRecorder()
    result = run(machine(tmp_path, llm, tools=tools, ask={"tools": ["calc", "fast"]}), recorder)

    assert result.status == "succeeded", result.error
    assert result.output == "both done"
    slow, fast = sorted(recorder.tools(), key=lambda call: call.call_id)
    assert slow.error is None and fast.error is None
    # slow started first, and fast ran to its end before slow could finish: they overlapped
    assert slow.result == ["slow start", "fast start", "fast end", "slow end"]
    assert fast.result == "fast b"


def test_a_model_that_keeps_calling_tools_is_llm_tool_loop(tmp_path: Path) -> None:
    llm = {"provider": "scripted",
           "replies": [{"tool_calls": [{"name": "calc", "arguments": {"expression": "1 + 1"}}]}]}
    recorder = CallRecorder()
    result = run(machine(tmp_path, llm, ask={"max_tool_rounds": 3}), recorder)

    assert result.status == "failed"
    error = result.context.get("err")
    assert error["type"] == "llm.tool_loop"
    assert "3 rounds" in error["message"]
    assert len(recorder.tools()) == 3  # the fourth reply's calls are not run
    assert result.usage["brain"]["calls"] == 4
    assert "llm.tool_loop" in ERROR_TYPES


def test_max_tool_rounds_defaults_to_8(tmp_path: Path) -> None:
    llm = {"provider": "scripted", "replies": [{"tool_calls": [{"name": "calc", "arguments": {"expression": "2"}}]}]}
    recorder = CallRecorder()
    result = run(machine(tmp_path, llm), recorder)
    assert result.context.get("err")["type"] == "llm.tool_loop"
    assert len(recorder.tools()) == 8


def test_an_unknown_tool_and_bad_arguments_are_fed_back_not_raised(tmp_path: Path) -> None:
    llm = {"provider": "scripted", "replies": [
        {"match": r"Error from nope: .*\n.*Error from calc: .*tool.bad_arguments", "reply": "recovered"},
        {"times": 1, "tool_calls": [{"name": "nope", "arguments": {}},
                                    {"name": "calc", "arguments": {"expr": "1"}}]},
    ]}
    recorder = CallRecorder()
    result = run(machine(tmp_path, llm), recorder)

    assert result.status == "succeeded", result.error
    assert result.output == "recovered"
    unknown, bad = recorder.tools()
    assert unknown.binding == "nope" and unknown.error["type"] == "tool.error"
    assert "no tool named 'nope'" in unknown.error["message"] and "calc" in unknown.error["message"]
    assert bad.binding == "calc" and bad.error["type"] == "tool.bad_arguments"


def test_a_failing_tool_is_fed_back_as_an_error_result(tmp_path: Path) -> None:
    llm = {"provider": "scripted", "replies": [
        {"match": r'Error from calc: \{"error": \{"type": "tool.error"', "reply": "the calculator failed"},
        {"times": 1, "tool_calls": [{"name": "calc", "arguments": {"expression": "1 / 0"}}]},
    ]}
    result = run(machine(tmp_path, llm))
    assert result.status == "succeeded", result.error
    assert result.output == "the calculator failed"


def test_tool_calls_and_the_schema_feedback_share_one_conversation(tmp_path: Path) -> None:
    llm = {"provider": "scripted", "replies": [
        {"match": r"^The reply is not valid", "reply": "{\"value\": 391}"},
        {"match": r"Result of calc: (\d+)", "reply": "It is \\1", "times": 1},
        {"match": "What is", "tool_calls": [{"name": "calc", "arguments": {"expression": "17 * 23"}}]},
    ]}
    schema = {"type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}
    seen: list[LLMRequest] = []
    path = machine(tmp_path, llm, ask={"parse": "json", "schema": schema})
    compiled = agentfsm.load_machine(path)
    client = compiled.states["ask"].client
    original = client.complete

    async def spy(request: LLMRequest) -> Any:
        seen.append(request)
        return await original(request)

    client.complete = spy
    result = asyncio.run(agentfsm.run(compiled))
    assert result.status == "succeeded", result.error
    assert result.context.get("answer") == {"value": 391}
    last = seen[-1].messages()
    assert [m.role for m in last] == ["user", "assistant", "tool", "assistant", "user"]
    assert last[1].tool_calls[0].name == "calc"
    assert last[2].content == "Result of calc: 391"
    assert last[3].content == "It is 391"


def test_a_scripted_reply_needs_a_reply_or_tool_calls() -> None:
    with pytest.raises(ValueError, match="needs 'reply', 'tool_calls' or both"):
        ScriptedReply.model_validate({"match": "x"})
    with pytest.raises(ValueError, match="bad escape"):
        ScriptedReply.model_validate({"match": "x", "tool_calls": [{"name": "calc", "arguments": {"e": r"\d"}}]})
    rule = ScriptedReply.model_validate({"tool_calls": [{"name": "calc"}]})
    assert rule.reply is None and rule.tool_calls[0].arguments == {}


def test_history_accepts_plain_mappings() -> None:
    request = LLMRequest("b", "s", "again", history=({"role": "user", "content": "hi"},))
    assert request.messages() == [Message("user", "hi"), Message("user", "again")]


# -- validation ------------------------------------------------------------------------------


def test_an_unknown_tool_under_tools_is_reported_at_its_item(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: t
        llms:
          brain: {provider: scripted, replies: [hi]}
        tools:
          calc: {builtin: calculator}
        initial: a
        states:
          a:
            type: llm
            llm: brain
            prompt: hi
            tools:
              - calc
              - nope
            next: b
          b: {type: final}
        """), encoding="utf-8")
    problems = agentfsm.validate_file(path).problems
    [problem] = [p for p in problems if p.code == "unknown-tool"]
    assert (problem.line, problem.column) == (15, 9)  # the item, `nope`
    assert "states.a.tools[1]" in problem.message and "'nope'" in problem.message


def test_max_tool_rounds_must_be_at_least_1(tmp_path: Path) -> None:
    path = machine(tmp_path, {"provider": "scripted", "replies": ["x"]}, ask={"max_tool_rounds": 0})
    assert agentfsm.validate_file(path).errors


# -- the wire formats, against a loopback server ---------------------------------------------


def openai_tool_reply(*calls: tuple[str, str, str]) -> Reply:
    return Reply(json={
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                           for i, n, a in calls]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    })


def openai_text_reply(text: str) -> Reply:
    return Reply(json={
        "id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2},
    })


def openai(server: LLMServer) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-test", "base_url": server.url + "/v1", "api_key_env": KEY_ENV}


def anthropic(server: LLMServer) -> dict[str, Any]:
    return {"provider": "anthropic", "model": "claude-test", "base_url": server.url, "api_key_env": KEY_ENV}


def test_openai_tool_calls_round_trip(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_tool_reply(("call_a", "calc", '{"expression": "17 * 23"}')), openai_text_reply("391"))
    recorder = CallRecorder()
    result = run(machine(tmp_path, openai(server)), recorder)

    assert result.status == "succeeded", result.error
    assert result.output == "391"
    first, second = (request.json for request in server.requests)
    [tool] = first["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "calc"
    assert tool["function"]["parameters"]["properties"]["expression"]["type"] == "string"
    assert tool["function"]["description"]
    assert first["messages"] == [{"role": "user", "content": "What is 17 * 23?"}]
    assert second["tools"] == first["tools"]
    assert second["messages"] == [
        {"role": "user", "content": "What is 17 * 23?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "calc", "arguments": '{"expression": "17 * 23"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "391"},
    ]
    [call] = recorder.tools()
    assert call.result == 391 and call.call_id == "call_a"


def test_openai_arguments_that_are_not_json_are_fed_back(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_tool_reply(("call_a", "calc", '{"expression": 17 *'),
                                    ("call_b", "calc", '{"expression": "2 + 2"}')),
                  openai_text_reply("sorry"))
    recorder = CallRecorder()
    result = run(machine(tmp_path, openai(server)), recorder)

    assert result.status == "succeeded", result.error
    messages = server.requests[1].json["messages"]
    # the model's text is sent back as it was
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"expression": 17 *'
    bad, good = messages[2], messages[3]
    assert bad["tool_call_id"] == "call_a"
    error = json.loads(bad["content"])["error"]
    assert error["type"] == "tool.bad_arguments" and "not valid JSON" in error["message"]
    assert good == {"role": "tool", "tool_call_id": "call_b", "content": "4"}
    assert [(c.error or {}).get("type") for c in recorder.tools()] == ["tool.bad_arguments", None]


def anthropic_body(content: list[dict[str, Any]], stop: str) -> Reply:
    return Reply(json={"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
                       "content": content, "stop_reason": stop, "usage": {"input_tokens": 10, "output_tokens": 3}})


def test_anthropic_tool_use_round_trip(server: LLMServer, tmp_path: Path) -> None:
    server.script(
        anthropic_body([{"type": "text", "text": "Let me compute."},
                        {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"expression": "17 * 23"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "calc", "input": {"expression": "1 / 0"}}],
                       "tool_use"),
        anthropic_body([{"type": "text", "text": "391"}], "end_turn"),
    )
    recorder = CallRecorder()
    result = run(machine(tmp_path, anthropic(server)), recorder)

    assert result.status == "succeeded", result.error
    assert result.output == "391"
    first, second = (request.json for request in server.requests)
    [tool] = first["tools"]
    assert tool["name"] == "calc" and tool["input_schema"]["type"] == "object" and tool["description"]
    assert second["messages"][:2] == [
        {"role": "user", "content": "What is 17 * 23?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me compute."},
            {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"expression": "17 * 23"}},
            {"type": "tool_use", "id": "toolu_2", "name": "calc", "input": {"expression": "1 / 0"}}]},
    ]
    results = second["messages"][2]
    assert results["role"] == "user"
    ok, failed = results["content"]
    assert ok == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "391"}
    assert failed["tool_use_id"] == "toolu_2" and failed["is_error"] is True
    assert json.loads(failed["content"])["error"]["type"] == "tool.error"
    assert [c.finish_reason for c in recorder.calls if c.kind == "llm"] == ["tool_calls", "stop"]


def test_a_state_without_tools_sends_none(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_text_reply("hi"))
    result = run(machine(tmp_path, openai(server), ask={"tools": []}))
    assert result.status == "succeeded", result.error
    assert "tools" not in server.requests[0].json


def test_tool_call_objects_are_typed() -> None:
    call = ToolCall("id", "calc", {"expression": "1"})
    assert call.invalid is None and call.raw is None


# -- found in the security review ----------------------------------------------------------------


GREEDY = """
import asyncio

in_flight = 0
most = 0
runs = 0

async def work(n: int) -> int:
    global in_flight, most, runs
    in_flight += 1
    runs += 1
    most = max(most, in_flight)
    await asyncio.sleep(0.01)
    in_flight -= 1
    return n

async def explode() -> int:
    raise KeyError("boom")
"""


def test_one_reply_cannot_start_unbounded_tool_calls(tmp_path: Path) -> None:
    import importlib
    import sys

    (tmp_path / "greedy.py").write_text(GREEDY)
    calls = [{"name": "calc", "arguments": {"n": n}} for n in range(40)]
    path = machine(tmp_path, {"provider": "scripted", "replies": [
        {"match": "Result of", "reply": "done"}, {"match": "What is", "tool_calls": calls}]},
        tools={"calc": {"python": "greedy:work"}})
    recorder = CallRecorder()
    result = run(path, recorder)
    greedy = importlib.import_module("greedy")
    sys.modules.pop("greedy", None)
    assert result.status == "succeeded", result.error
    assert greedy.runs == 16
    assert 1 < greedy.most <= 4
    assert len(recorder.tools()) == 16  # the other 24 calls were answered with an error, not run


def test_a_tool_raising_a_plain_exception_is_fed_back_not_fatal(tmp_path: Path) -> None:
    import sys

    (tmp_path / "greedy.py").write_text(GREEDY)
    path = machine(tmp_path, {"provider": "scripted", "replies": [
        {"match": "Error from calc: .*KeyError", "reply": "the tool failed"},
        {"match": "What is", "tool_calls": [{"name": "calc", "arguments": {}}]}]},
        tools={"calc": {"python": "greedy:explode"}})
    result = run(path)
    sys.modules.pop("greedy", None)
    assert (result.status, result.output) == ("succeeded", "the tool failed")
