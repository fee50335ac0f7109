"""The `openai` and `anthropic` providers against a real HTTP server on 127.0.0.1 (tests/llm_server.py).

Machines are YAML files run through `agentfsm.run` (or the CLI, for what users see):
request bodies and headers, usage, provider-level retries, the `llm.*` error types,
catch rules, event loops, and that the API key never leaks.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentfsm
from agentfsm import BindingError, load_machine
from agentfsm.bindings import http_errors
from agentfsm.bindings.http_errors import error_type_for_status, retry_after_seconds
from tests.helpers import CallRecorder, environment_without_proxies
from tests.llm_server import LLMServer, Reply

SECRET = "sk-test-SECRET-1234567890"
HEADER_SECRET = "hdr-SECRET-0987654321"
KEY_ENV = "AGENTFSM_TEST_LLM_KEY"


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key in the environment, and backoff waits in milliseconds."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setattr(http_errors, "BACKOFF_INITIAL", 0.001)


def openai_reply(text: str, prompt_tokens: int = 7, completion_tokens: int = 3, **extra: Any) -> Reply:
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    return Reply(json=body, **extra)


def anthropic_reply(text: str, input_tokens: int = 11, output_tokens: int = 5, stop: str = "end_turn") -> Reply:
    body = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1",
        "content": [{"type": "text", "text": text}], "stop_reason": stop,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return Reply(json=body)


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "error"}}, headers=headers or {})


def openai_binding(server: LLMServer, **settings: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-test", "base_url": server.url + "/v1", "api_key_env": KEY_ENV,
            **settings}


def anthropic_binding(server: LLMServer, **settings: Any) -> dict[str, Any]:
    return {"provider": "anthropic", "model": "claude-test", "base_url": server.url, "api_key_env": KEY_ENV,
            **settings}


def write_machine(folder: Path, llms: dict[str, Any], states: dict[str, Any] | None = None,
                  initial: str = "ask") -> Path:
    """A machine asking `brain` one question (or running `states`), saved as YAML in `folder`."""
    document = {
        "agentfsm": 1, "name": "provider-test", "context": {"who": "Ada"}, "llms": llms, "initial": initial,
        "states": states or {
            "ask": {"type": "llm", "llm": "brain", "system": "Be brief.", "prompt": "Greet {{ who }}.",
                    "save": "answer", "next": "done"},
            "done": {"type": "final", "output": "{{ answer }}"},
        },
    }
    path = folder / "machine.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run(path: Path | agentfsm.StateMachine, observers: tuple[object, ...] = ()) -> agentfsm.RunResult:
    return asyncio.run(agentfsm.run(path, observers=observers))


# -- plain replies ---------------------------------------------------------------------------


def test_openai_request_and_reply(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("Hello, Ada!"))
    path = write_machine(tmp_path, {"brain": openai_binding(server, temperature=0.2, max_tokens=64)})
    recorder = CallRecorder()

    result = run(path, (recorder,))

    assert result.status == "succeeded", result.error
    assert result.output == "Hello, Ada!"
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["user-agent"].startswith("agentfsm/")
    assert request.json == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet Ada."}],
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert result.usage == {"brain": {"calls": 1, "prompt_tokens": 7, "completion_tokens": 3}}
    [call] = recorder.calls
    assert call.model == "gpt-test-2024"  # the model that answered, as the server names it
    assert call.finish_reason == "stop"
    assert call.retries == 0
    assert call.duration >= 0


def test_openai_leaves_out_unset_options(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("hi"))
    states = {
        "ask": {"type": "llm", "llm": "brain", "prompt": "Hi", "next": "done"},
        "done": {"type": "final"},
    }
    run(write_machine(tmp_path, {"brain": openai_binding(server)}, states))
    assert server.requests[0].json == {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}


def test_anthropic_request_and_reply(server: LLMServer, tmp_path: Path) -> None:
    server.script(anthropic_reply("Hi Ada", stop="max_tokens"))
    path = write_machine(tmp_path, {"brain": anthropic_binding(server, temperature=0.5)})
    recorder = CallRecorder()

    result = run(path, (recorder,))

    assert result.status == "succeeded", result.error
    assert result.output == "Hi Ada"
    [request] = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == SECRET
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.json == {
        "model": "claude-test",
        "max_tokens": 1024,  # required by the API: the default when the binding sets none
        "messages": [{"role": "user", "content": "Greet Ada."}],
        "system": "Be brief.",
        "temperature": 0.5,
    }
    assert result.usage == {"brain": {"calls": 1, "prompt_tokens": 11, "completion_tokens": 5}}
    assert recorder.calls[0].finish_reason == "length"  # Anthropic's max_tokens, in the common words
    assert recorder.calls[0].model == "claude-test-1"


def test_usage_is_summed_per_binding(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("one", 10, 1), anthropic_reply("two", 20, 2), openai_reply("three", 30, 3))
    states = {
        "a": {"type": "llm", "llm": "gpt", "prompt": "1", "next": "b"},
        "b": {"type": "llm", "llm": "claude", "prompt": "2", "next": "c"},
        "c": {"type": "llm", "llm": "gpt", "prompt": "3", "save": "last", "next": "done"},
        "done": {"type": "final", "output": "{{ last }}"},
    }
    llms = {"gpt": openai_binding(server), "claude": anthropic_binding(server)}
    result = run(write_machine(tmp_path, llms, states, initial="a"))

    assert result.output == "three"
    assert result.usage == {
        "gpt": {"calls": 2, "prompt_tokens": 40, "completion_tokens": 4},
        "claude": {"calls": 1, "prompt_tokens": 20, "completion_tokens": 2},
    }
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/messages", "/v1/chat/completions"]


def test_a_local_server_without_api_key_env_gets_no_key(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("ok"), anthropic_reply("ok"))
    binding = openai_binding(server)
    del binding["api_key_env"]
    claude = anthropic_binding(server)
    del claude["api_key_env"]
    states = {
        "ask": {"type": "llm", "llm": "brain", "prompt": "x", "next": "more"},
        "more": {"type": "llm", "llm": "claude", "prompt": "y", "next": "done"},
        "done": {"type": "final"},
    }
    result = run(write_machine(tmp_path, {"brain": binding, "claude": claude}, states))
    assert result.status == "succeeded", result.error
    assert all("authorization" not in r.headers and "x-api-key" not in r.headers for r in server.requests)


def test_extra_headers_are_sent_with_env_values(server: LLMServer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFSM_TEST_HEADER", HEADER_SECRET)
    server.script(error_reply(401, f"bad org {HEADER_SECRET}"))
    headers = {"X-Team": "blue", "X-Org-Token": {"env": "AGENTFSM_TEST_HEADER"}}
    result = run(write_machine(tmp_path, {"brain": openai_binding(server, headers=headers)}))
    assert server.requests[0].headers["x-team"] == "blue"
    assert server.requests[0].headers["x-org-token"] == HEADER_SECRET
    assert result.error is not None and HEADER_SECRET not in str(result.error)  # echoed back, then redacted
    assert "[redacted]" in result.error["message"]


# -- failures and provider-level retries -----------------------------------------------------


def test_429_with_retry_after_is_retried_by_the_binding(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(429, "slow down", {"Retry-After": "0"}), openai_reply("made it"))
    recorder = CallRecorder()
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}), (recorder,))
    assert result.output == "made it"
    assert len(server.requests) == 2
    assert recorder.calls[0].retries == 1
    assert result.usage["brain"]["calls"] == 1  # one call of the state; the retry is the binding's


def test_500_is_retried_with_backoff(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(500, "oops"), anthropic_reply("fine"))
    result = run(write_machine(tmp_path, {"brain": anthropic_binding(server)}))
    assert result.output == "fine"
    assert len(server.requests) == 2


def test_exhausting_max_retries_on_503(server: LLMServer, tmp_path: Path) -> None:
    server.script(*[error_reply(503, "overloaded", {"Retry-After": "0"})] * 3, openai_reply("too late"))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server, max_retries=2)}))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == "llm.unavailable"
    assert result.error["state"] == "ask"
    assert result.error["message"] == "HTTP 503: overloaded (binding 'brain')"
    assert result.error["detail"] == {"status": 503, "binding": "brain", "retry_after": 0.0, "provider_retries": 2}
    assert len(server.requests) == 3
    assert server.unused == 1


def test_a_long_retry_after_goes_up_to_the_state_at_once(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(429, "quota", {"Retry-After": "120"}), openai_reply("unused"))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}))
    assert result.error is not None
    assert result.error["type"] == "llm.rate_limit"
    assert result.error["detail"]["retry_after"] == 120.0
    assert len(server.requests) == 1


@pytest.mark.parametrize(("status", "kind"), [(401, "llm.auth"), (403, "llm.auth"), (400, "llm.bad_request"),
                                              (404, "llm.bad_request"), (422, "llm.bad_request")])
def test_client_errors_are_never_retried(server: LLMServer, tmp_path: Path, status: int, kind: str) -> None:
    server.script(error_reply(status, "no " + "x" * 500), openai_reply("unused"))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == kind
    assert result.error["message"].startswith(f"HTTP {status}: no xxx")
    assert len(result.error["message"]) < 260  # the provider's message, truncated
    assert result.error["detail"] == {"status": status, "binding": "brain"}
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>not json</html>"),
        Reply(json={"choices": []}),
        Reply(json={"choices": [{"message": "hi"}]}),
        Reply(json=["not", "an", "object"]),
    ],
    ids=["not-json", "no-choices", "message-not-object", "a-list"],
)
def test_a_malformed_200_is_llm_parse(server: LLMServer, tmp_path: Path, reply: Reply) -> None:
    server.script(reply, openai_reply("unused"))
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}))
    assert result.error is not None
    assert result.error["type"] == "llm.parse"
    assert result.error["detail"] == {"status": 200, "binding": "brain"}
    assert len(server.requests) == 1


def test_a_slow_reply_is_llm_timeout(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("too slow", delay=5), openai_reply("also slow", delay=5))
    binding = openai_binding(server, timeout="200ms", max_retries=1)
    result = run(write_machine(tmp_path, {"brain": binding}))
    assert result.error is not None
    assert result.error["type"] == "llm.timeout"
    assert result.error["message"] == "no reply within 0.2s (binding 'brain')"
    assert result.error["detail"] == {"status": None, "binding": "brain", "provider_retries": 1}
    assert len(server.requests) == 2


def test_a_refused_connection_is_llm_unavailable(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binding = {"provider": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0}
    result = run(write_machine(tmp_path, {"brain": binding}))
    assert result.error is not None
    assert result.error["type"] == "llm.unavailable"
    assert result.error["message"].startswith(f"cannot reach 127.0.0.1:{port}: ConnectError")


def test_a_catch_rule_on_llm_routes_the_failure(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(401, "bad key"))
    states = {
        "ask": {"type": "llm", "llm": "brain", "prompt": "x", "next": "done",
                "catch": [{"errors": ["llm"], "to": "recover", "as": "problem"}]},
        "recover": {"type": "final", "output": "{{ problem.type }} {{ problem.detail.status }}"},
        "done": {"type": "final"},
    }
    result = run(write_machine(tmp_path, {"brain": openai_binding(server)}, states))
    assert result.status == "succeeded"
    assert result.output == "llm.auth 401"


def test_the_states_retry_comes_after_the_bindings(server: LLMServer, tmp_path: Path) -> None:
    server.script(error_reply(503, "a", {"Retry-After": "0"}), error_reply(503, "b", {"Retry-After": "0"}),
                  openai_reply("third time"))
    states = {
        "ask": {"type": "llm", "llm": "brain", "prompt": "x", "save": "answer", "next": "done",
                "retry": {"errors": ["llm.unavailable"], "interval": 0, "max_attempts": 1}},
        "done": {"type": "final", "output": "{{ answer }}"},
    }
    recorder = CallRecorder()
    result = run(write_machine(tmp_path, {"brain": openai_binding(server, max_retries=1)}, states), (recorder,))
    assert result.output == "third time"
    assert [call.retries for call in recorder.calls] == [1, 0]  # the failed attempt is recorded too
    assert recorder.calls[0].error["type"] == "llm.unavailable"


# -- event loops and the connection pool -----------------------------------------------------


def test_calls_in_one_run_share_a_connection(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("one"), openai_reply("two"))
    states = {
        "ask": {"type": "llm", "llm": "brain", "prompt": "1", "next": "again"},
        "again": {"type": "llm", "llm": "brain", "prompt": "2", "next": "done"},
        "done": {"type": "final"},
    }
    run(write_machine(tmp_path, {"brain": openai_binding(server)}, states))
    first, second = server.requests
    assert first.client_port == second.client_port  # the pooled connection was kept alive and reused


def test_one_compiled_machine_runs_under_two_event_loops(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply("first"), openai_reply("second"))
    machine = load_machine(write_machine(tmp_path, {"brain": openai_binding(server)}))
    client = machine.states["ask"].client  # type: ignore[attr-defined]

    open_during: list[int] = []
    open_after: list[int] = []

    class Watch:
        def on_run_ended(self, *, event: Any) -> None:
            open_during.append(client.open_pools)

    for _ in range(2):
        result = asyncio.run(machine.run(observers=[Watch()]))
        assert result.status == "succeeded", result.error
        open_after.append(client.open_pools)

    assert len(server.requests) == 2
    assert open_during == [1, 1]  # a client for the running loop (the first one's was not reused)...
    assert open_after == [0, 0]  # ...closed as its loop shut down


def test_concurrent_runs_in_one_loop_share_the_pool(server: LLMServer, tmp_path: Path) -> None:
    server.script(*[openai_reply("same")] * 3)
    machine = load_machine(write_machine(tmp_path, {"brain": openai_binding(server)}))
    client = machine.states["ask"].client  # type: ignore[attr-defined]

    async def three_runs() -> list[agentfsm.RunResult]:
        results = await asyncio.gather(*(machine.run() for _ in range(3)))
        assert client.open_pools == 1
        return list(results)

    assert [r.output for r in asyncio.run(three_runs())] == ["same"] * 3
    assert client.open_pools == 0


# -- API keys: read at run start, never shown ------------------------------------------------


def test_an_unset_api_key_variable_fails_at_run_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFSM_TEST_UNSET", raising=False)
    binding = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
               "api_key_env": "AGENTFSM_TEST_UNSET"}
    with pytest.raises(BindingError, match=r"llms\.brain\.api_key_env: environment variable AGENTFSM_TEST_UNSET"):
        load_machine(write_machine(tmp_path, {"brain": binding}))


@pytest.mark.parametrize(("provider", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_the_providers_own_server_needs_its_default_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        provider: str, variable: str) -> None:
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(BindingError, match=f"environment variable {variable} is not set"):
        load_machine(write_machine(tmp_path, {"brain": {"provider": provider, "model": "m"}}))


def test_an_unset_header_variable_fails_at_run_start(server: LLMServer, tmp_path: Path) -> None:
    binding = openai_binding(server, headers={"X-Token": {"env": "AGENTFSM_TEST_UNSET_HEADER"}})
    with pytest.raises(BindingError, match=r"llms\.brain\.headers\.X-Token: .*AGENTFSM_TEST_UNSET_HEADER"):
        load_machine(write_machine(tmp_path, {"brain": binding}))


def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET + "\n")
    binding = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": KEY_ENV}
    with pytest.raises(BindingError, match=f"environment variable {KEY_ENV} holds characters") as caught:
        load_machine(write_machine(tmp_path, {"brain": binding}))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("headers", "message"), [({"X-A": "one\ntwo"}, r"headers\.X-A: an HTTP header value"),
                                                ({"bad name": "x"}, "'bad name' is not an HTTP header name")])
def test_bad_literal_headers_are_refused_at_run_start(tmp_path: Path, headers: dict[str, str], message: str) -> None:
    binding = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "headers": headers}
    with pytest.raises(BindingError, match=message):
        load_machine(write_machine(tmp_path, {"brain": binding}))


def cli_run(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = environment_without_proxies()
    return subprocess.run(
        [sys.executable, "-m", "agentfsm", "run", str(path), *extra], capture_output=True, text=True,
        timeout=60, cwd=path.parent, env=env,
    )


def assert_secret_nowhere(completed: subprocess.CompletedProcess[str], folder: Path) -> None:
    assert SECRET not in completed.stdout
    assert SECRET not in completed.stderr
    for file in folder.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


@pytest.mark.parametrize("outcome", ["success", "401", "500"])
def test_the_key_never_leaks_from_the_cli(server: LLMServer, tmp_path: Path, outcome: str) -> None:
    replies = {
        "success": [openai_reply("hello")],
        "401": [error_reply(401, f"Incorrect API key provided: {SECRET}")] * 2,  # a server echoing the key
        "500": [error_reply(500, f"crashed while handling {SECRET}")],
    }[outcome]
    server.script(*replies)
    path = write_machine(tmp_path, {"brain": openai_binding(server, max_retries=0)})

    completed = cli_run(path, "--json")
    shown = cli_run(path) if outcome == "401" else None  # and the one-line error of a plain run

    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was sent, though
    assert_secret_nowhere(completed, tmp_path)
    assert "Traceback" not in completed.stderr
    assert completed.returncode == (0 if outcome == "success" else 1), completed.stderr
    if shown is not None:
        assert_secret_nowhere(shown, tmp_path)
        assert shown.returncode == 1
        assert shown.stderr.strip().splitlines()[-1] == (
            "error: state 'ask': llm.auth: HTTP 401: Incorrect API key provided: [redacted] (binding 'brain')"
        )


def test_the_cli_names_an_unset_key_variable_with_exit_2(tmp_path: Path) -> None:
    binding = {"provider": "anthropic", "model": "m", "api_key_env": "AGENTFSM_TEST_NEVER_SET"}
    completed = cli_run(write_machine(tmp_path, {"brain": binding}))
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip() == (
        "error: llms.brain.api_key_env: environment variable AGENTFSM_TEST_NEVER_SET is not set"
    )


# -- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "llm.auth"), (403, "llm.auth"), (429, "llm.rate_limit"), (408, "llm.timeout"), (400, "llm.bad_request"),
     (404, "llm.bad_request"), (422, "llm.bad_request"), (301, "llm.bad_request"), (500, "llm.unavailable"),
     (503, "llm.unavailable"), (529, "llm.unavailable")],
)
def test_status_codes_map_to_error_types(status: int, kind: str) -> None:
    assert error_type_for_status(status) == kind


def test_retry_after_in_its_three_forms() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "3"}, now) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}, now) == 0.25
    assert retry_after_seconds({"retry-after": format_datetime(now + timedelta(seconds=30), usegmt=True)}, now) == 30
    assert retry_after_seconds({"retry-after": format_datetime(now - timedelta(seconds=30), usegmt=True)}, now) == 0
    assert retry_after_seconds({"retry-after": "soon"}, now) is None
    assert retry_after_seconds({"retry-after": "nan"}, now) is None
    assert retry_after_seconds({}, now) is None


@pytest.mark.parametrize("streamed", [False, True])
def test_a_reply_larger_than_the_cap_is_not_read(server: LLMServer, tmp_path: Path, streamed: bool) -> None:
    from agentfsm.bindings.http_body import MAX_REPLY_BYTES

    big = b"data: " + b"x" * (MAX_REPLY_BYTES + 10) + b"\n\n" if streamed else b"{" + b" " * (MAX_REPLY_BYTES + 10)
    headers = {"Content-Type": "text/event-stream"} if streamed else {"Content-Type": "application/json"}
    server.script(Reply(body=big, headers=headers))
    path = write_machine(tmp_path, {"brain": openai_binding(server)})
    machine = agentfsm.load_machine(path)
    observers: tuple[object, ...] = ()
    if streamed:
        class Stream:
            def on_token(self, *, event: Any) -> None:
                pass

        observers = (Stream(),)
    result = run(machine, observers)
    assert result.status == "failed"
    assert result.error["type"] == "llm.error"
    assert "larger than 16 MB" in result.error["message"]
