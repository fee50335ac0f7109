"""Streamed replies (SSE) from the `openai` and `anthropic` providers, against the real loopback server.

An observer with `on_token` (as the CLI's progress reporter has on a terminal) makes the
providers ask for a stream, hand each text delta to it in order, and assemble the same
reply as without streaming. Without such an observer nothing streams. Two observers see
the same deltas. The CLI streams onto a terminal only, and `--no-stream` turns it off.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm.bindings.http_llm import server_sent_events
from tests.helpers import CallRecorder, environment_without_proxies
from tests.llm_server import LLMServer, Reply
from tests.test_llm_providers import (  # noqa: F401 - the environment fixture
    anthropic_binding,
    anthropic_reply,
    environment,
    error_reply,
    openai_binding,
    openai_reply,
    write_machine,
)

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


# -- scripted streams ------------------------------------------------------------------------


def sse(*events: tuple[str | None, Any]) -> Reply:
    """A 200 with these (event name or None, data) server-sent events; data that is not text is sent as JSON."""
    parts = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        parts.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return Reply(body="".join(parts).encode(), headers=SSE_HEADERS)


def openai_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> tuple[None, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-test-2024",
                  "choices": choices, **extra}


def openai_stream(*pieces: str, prompt_tokens: int = 7, completion_tokens: int = 3) -> Reply:
    return sse(
        openai_chunk({"role": "assistant", "content": ""}),
        *(openai_chunk({"content": piece}) for piece in pieces),
        openai_chunk({}, "stop"),
        openai_chunk(None, usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                  "total_tokens": prompt_tokens + completion_tokens}),
        (None, "[DONE]"),
    )


def anthropic_stream(*pieces: str, input_tokens: int = 11, output_tokens: int = 5) -> Reply:
    return sse(
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1", "content": [],
            "stop_reason": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": piece}}) for piece in pieces),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": output_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    )


class Observer:
    """An observer of the reply's text as it arrives; it keeps (state, delta) pairs."""

    def __init__(self) -> None:
        self.deltas: list[tuple[str, str]] = []

    def on_token(self, *, event: agentfsm.TokenReceived) -> None:
        self.deltas.append((event.state, event.text))

    def text(self) -> str:
        return "".join(delta for _, delta in self.deltas)


def run(path: Path, *observers: object) -> agentfsm.RunResult:
    return asyncio.run(agentfsm.run(path, observers=observers))


def usage_of(recorder: CallRecorder) -> list[tuple[Any, ...]]:
    return [(c.model, c.prompt_tokens, c.completion_tokens, c.finish_reason, c.retries)
            for c in recorder.calls if c.kind == "llm"]


# -- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_streamed_reply_equals_the_plain_one(server: LLMServer, tmp_path: Path, provider: str) -> None:
    pieces = ("Hello", ", ", "Ada", "!")
    binding = (openai_binding if provider == "openai" else anthropic_binding)(server)
    plain = openai_reply("Hello, Ada!") if provider == "openai" else anthropic_reply("Hello, Ada!")
    streamed = openai_stream(*pieces) if provider == "openai" else anthropic_stream(*pieces)
    server.script(plain, streamed)
    path = write_machine(tmp_path, {"brain": binding})

    plain_calls, streamed_calls, observer = CallRecorder(), CallRecorder(), Observer()
    without = run(path, plain_calls)
    with_observer = run(path, streamed_calls, observer)

    assert observer.deltas == [("ask", piece) for piece in pieces]
    assert with_observer.output == without.output == "Hello, Ada!"
    assert usage_of(streamed_calls) == usage_of(plain_calls)
    expected = ("gpt-test-2024", 7, 3, "stop", 0) if provider == "openai" else ("claude-test-1", 11, 5, "stop", 0)
    assert usage_of(streamed_calls) == [expected]
    first, second = (request.json for request in server.requests)
    assert "stream" not in first and "stream_options" not in first
    assert second["stream"] is True
    if provider == "openai":
        assert second["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in second.items() if not k.startswith("stream")} == first


def test_an_openai_stream_without_usage_counts_zero_tokens(server: LLMServer, tmp_path: Path) -> None:
    server.script(sse(openai_chunk({"content": "hi"}), openai_chunk({}, "stop"), (None, "[DONE]")))
    recorder = CallRecorder()
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), recorder, Observer())
    assert result.output == "hi"
    assert usage_of(recorder) == [("gpt-test-2024", 0, 0, "stop", 0)]


def test_a_server_ignoring_stream_is_read_as_plain_json(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("whole reply"))
    observer = Observer()
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), observer)
    assert result.output == "whole reply"
    assert observer.deltas == [("ask", "whole reply")]


def test_the_scripted_provider_hands_over_its_whole_text(tmp_path: Path) -> None:
    path = write_machine(tmp_path, {"brain": {"provider": "scripted", "replies": ["Hi Ada"]}})
    observer = Observer()
    assert run(path, observer).output == "Hi Ada"
    assert observer.deltas == [("ask", "Hi Ada")]


# -- tool calls ------------------------------------------------------------------------------

TOOL_STATES = {
    "ask": {"type": "llm", "llm": "brain", "prompt": "What is 6 * 7?", "tools": ["calc"], "save": "answer",
            "next": "done"},
    "done": {"type": "final", "output": "{{ answer }}"},
}


def tool_machine(tmp_path: Path, binding: dict[str, Any]) -> Path:
    path = write_machine(tmp_path, {"brain": binding}, TOOL_STATES)
    text = path.read_text(encoding="utf-8").replace("states:", "tools:\n  calc: {builtin: calculator}\nstates:", 1)
    path.write_text(text, encoding="utf-8")
    return path


def test_an_openai_tool_call_split_across_chunks(server: LLMServer, tmp_path: Path) -> None:
    first_call = {"index": 0, "id": "call_abc", "type": "function",
                  "function": {"name": "calc", "arguments": ""}}
    server.script(
        sse(
            openai_chunk({"role": "assistant", "content": None, "tool_calls": [first_call]}),
            openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"expres'}}]}),
            openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'sion": "6 * 7"}'}}]}),
            openai_chunk({}, "tool_calls"),
            openai_chunk(None, usage={"prompt_tokens": 20, "completion_tokens": 9}),
            (None, "[DONE]"),
        ),
        openai_stream("It is ", "42."),
    )
    recorder, observer = CallRecorder(), Observer()
    result = run(tool_machine(tmp_path, openai_binding(server)), recorder, observer)

    assert result.succeeded, result.error
    assert result.output == "It is 42."
    assert observer.text() == "It is 42."
    tool_calls = [c for c in recorder.calls if c.kind == "tool"]
    assert [(c.binding, c.args, c.result, c.call_id) for c in tool_calls] == [
        ("calc", {"expression": "6 * 7"}, 42, "call_abc")]
    assert usage_of(recorder)[0] == ("gpt-test-2024", 20, 9, "tool_calls", 0)
    answer = server.requests[1].json["messages"]
    assert answer[-2]["tool_calls"] == [{"id": "call_abc", "type": "function", "function": {
        "name": "calc", "arguments": '{"expression": "6 * 7"}'}}]
    assert answer[-1] == {"role": "tool", "tool_call_id": "call_abc", "content": "42"}
    assert all(request.json["stream"] is True for request in server.requests)


def test_an_anthropic_tool_use_with_input_json_deltas(server: LLMServer, tmp_path: Path) -> None:
    def delta(index: int, **fields: Any) -> tuple[str, Any]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": fields}

    server.script(
        sse(
            ("message_start", {"type": "message_start", "message": {
                "model": "claude-test-1", "content": [], "usage": {"input_tokens": 30, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            delta(0, type="text_delta", text="Let me compute."),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_xyz", "name": "calc", "input": {}}}),
            delta(1, type="input_json_delta", partial_json=""),
            delta(1, type="input_json_delta", partial_json='{"expression": '),
            delta(1, type="input_json_delta", partial_json='"6 * 7"}'),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 12}}),
            ("message_stop", {"type": "message_stop"}),
        ),
        anthropic_stream("42", input_tokens=50, output_tokens=2),
    )
    recorder, observer = CallRecorder(), Observer()
    result = run(tool_machine(tmp_path, anthropic_binding(server)), recorder, observer)

    assert result.succeeded, result.error
    assert result.output == "42"
    assert observer.deltas == [("ask", "Let me compute."), ("ask", "42")]
    assert usage_of(recorder) == [("claude-test-1", 30, 12, "tool_calls", 0), ("claude-test-1", 50, 2, "stop", 0)]
    tool_calls = [c for c in recorder.calls if c.kind == "tool"]
    assert [(c.args, c.result, c.call_id) for c in tool_calls] == [({"expression": "6 * 7"}, 42, "toolu_xyz")]
    turns = server.requests[1].json["messages"]
    assert turns[-2]["content"] == [{"type": "text", "text": "Let me compute."},
                                    {"type": "tool_use", "id": "toolu_xyz", "name": "calc",
                                     "input": {"expression": "6 * 7"}}]
    assert turns[-1]["content"][0]["tool_use_id"] == "toolu_xyz"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("error_type", "kind"), [("overloaded_error", "llm.unavailable"),
                                                  ("rate_limit_error", "llm.rate_limit"),
                                                  ("invalid_request_error", "llm.bad_request"),
                                                  ("something_new", "llm.error")])
def test_an_anthropic_error_event_mid_stream(server: LLMServer, tmp_path: Path, error_type: str, kind: str) -> None:
    body = anthropic_stream("Hel").body or b""
    cut = body[: body.index(b"event: content_block_stop")]
    error = b'event: error\ndata: {"type": "error", "error": {"type": "%s", "message": "Overloaded"}}\n\n'
    server.script(Reply(body=cut + error % error_type.encode(), headers=SSE_HEADERS))
    observer = Observer()
    result = run(write_machine(tmp_path, {"brain": anthropic_binding(server)}), observer)

    assert not result.succeeded
    assert result.error["type"] == kind
    assert "Overloaded" in result.error["message"]
    assert observer.text() == "Hel"
    # a token was already shown: the binding does not retry, though the error is retryable
    assert len(server.requests) == 1


def test_an_openai_error_chunk_mid_stream(server: LLMServer, tmp_path: Path) -> None:
    server.script(sse(openai_chunk({"content": "par"}),
                      (None, {"error": {"message": "The server had an error", "type": "server_error"}})))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), Observer())
    assert result.error["type"] == "llm.error"
    assert "The server had an error" in result.error["message"]


def test_a_status_error_before_the_stream_is_retried_as_usual(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(503, "busy"), openai_stream("ok"))
    recorder, observer = CallRecorder(), Observer()
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), recorder, observer)
    assert result.output == "ok"
    assert usage_of(recorder)[0][-1] == 1
    assert [r.json.get("stream") for r in server.requests] == [True, True]


def test_a_status_error_has_the_same_type_streamed_or_not(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(401, "bad key"), error_reply(401, "bad key"))
    path = write_machine(tmp_path, {"brain": openai_binding(server)})
    plain, streamed = run(path), run(path, Observer())
    assert plain.error["type"] == streamed.error["type"] == "llm.auth"
    assert plain.error["message"] == streamed.error["message"]


def test_an_event_that_is_not_json_is_llm_parse(server: LLMServer, tmp_path: Path) -> None:
    server.script(Reply(body=b"data: {not json\n\n", headers=SSE_HEADERS))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), Observer())
    assert result.error["type"] == "llm.parse"


def test_an_observer_that_raises_does_not_end_the_call(server: LLMServer, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def on_token(self, *, event: agentfsm.TokenReceived) -> None:
            raise RuntimeError("display broke")

    watching = Observer()
    server.script(openai_stream("a", "b"))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), Broken(), watching)
    assert result.succeeded, result.error
    assert result.output == "ab" and watching.text() == "ab"  # the observer after it still sees every piece
    assert sum("display broke" in record.getMessage() for record in caplog.records) == 2  # logged, not fatal


def test_two_observers_receive_the_same_streamed_tokens(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_stream("one ", "two ", "three"))
    first, second = Observer(), Observer()
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), first, second)
    assert result.succeeded, result.error
    assert first.deltas == second.deltas == [("ask", "one "), ("ask", "two "), ("ask", "three")]
    assert server.requests[0].json.get("stream") is True


def test_server_sent_events_framing() -> None:
    async def events(text: str) -> list[tuple[str, str]]:
        async def lines() -> Any:
            for line in text.split("\n"):
                yield line
        return [event async for event in server_sent_events(lines())]

    text = ": keep-alive\n\nevent: a\ndata: one\ndata: two\n\ndata:three\n\ndata: last"
    assert asyncio.run(events(text)) == [("a", "one\ntwo"), ("message", "three"), ("message", "last")]


# -- the CLI on a terminal -------------------------------------------------------------------


def run_on_a_terminal(path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """`agentfsm run` with stderr on a pseudo-terminal (stdout a pipe): the result and what the terminal got."""
    controller, terminal = pty.openpty()
    env = environment_without_proxies()
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    received = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), *extra],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
                                   timeout=60, cwd=path.parent, env=env)
    finally:
        os.close(terminal)
    reader.join(timeout=10)
    os.close(controller)
    return completed, received.decode("utf-8", "replace")


def test_the_cli_streams_onto_a_terminal(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_stream("Streamed-words-here", " and more"))
    completed, terminal = run_on_a_terminal(write_machine(tmp_path, {"brain": openai_binding(server)}))
    assert completed.returncode == 0, terminal
    assert completed.stdout.decode().strip() == "Streamed-words-here and more"
    assert "Streamed-words-here" in terminal
    assert server.requests[0].json.get("stream") is True


def test_no_stream_keeps_the_terminal_request_plain(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("Plain-reply-text"))
    completed, terminal = run_on_a_terminal(write_machine(tmp_path, {"brain": openai_binding(server)}),
                                            "--no-stream")
    assert completed.returncode == 0, terminal
    assert completed.stdout.decode().strip() == "Plain-reply-text"
    assert "Plain-reply-text" not in terminal
    assert "stream" not in server.requests[0].json


def test_the_cli_does_not_stream_when_stderr_is_not_a_terminal(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("piped"))
    env = environment_without_proxies()
    completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(write_machine(
        tmp_path, {"brain": openai_binding(server)}))], capture_output=True, text=True, timeout=60, env=env)
    assert completed.returncode == 0, completed.stderr
    assert "stream" not in server.requests[0].json
    assert "piped" not in completed.stderr
