"""`--llm NAME=PROVIDER:MODEL` switches a binding without editing the machine file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentfsm import InputError
from agentfsm.spec.loader import load_spec
from agentfsm.spec.models import AnthropicLLM, OpenAILLM
from agentfsm.spec.overrides import apply_llm_overrides, binding_from_text, parse_llm_options
from tests.helpers import environment_without_proxies

ROOT = Path(__file__).resolve().parent.parent
REACT = ROOT / "machines" / "react_agent.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openai:gpt-4o-mini", {"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}),
        ("anthropic:claude-x", {"provider": "anthropic", "model": "claude-x", "api_key_env": "ANTHROPIC_API_KEY"}),
        ("ollama:llama3.1", {"provider": "openai", "model": "llama3.1", "base_url": "http://localhost:11434/v1"}),
        ("lmstudio:qwen", {"provider": "openai", "model": "qwen", "base_url": "http://localhost:1234/v1"}),
        ("openai:m@http://127.0.0.1:9/v1", {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}),
    ],
)
def test_provider_shorthands(text: str, expected: dict[str, str]) -> None:
    assert binding_from_text(text) == expected


def test_an_override_replaces_only_the_named_binding() -> None:
    spec = load_spec(REACT).spec
    switched = apply_llm_overrides(spec, {"brain": "openai:gpt-4o-mini"})
    assert isinstance(switched.llms["brain"], OpenAILLM)
    assert switched.llms["brain"].model == "gpt-4o-mini"
    assert switched.states == spec.states
    assert spec.llms["brain"].provider == "scripted"  # the loaded spec itself is untouched
    assert isinstance(apply_llm_overrides(spec, {"brain": "anthropic:claude-x"}).llms["brain"], AnthropicLLM)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["brain"], "--llm expects NAME=PROVIDER:MODEL"),
        (["brain=gpt-4o"], "--llm expects NAME=PROVIDER:MODEL"),
        (["brain=foo:x"], "unknown provider 'foo'"),
        (["mind=openai:x"], "no LLM binding named 'mind' (this machine's: brain)"),
        (["brain=ollama:x@ftp://h"], "base_url: 'ftp://h' is not an http(s) URL"),
    ],
)
def test_bad_overrides_are_refused_with_one_line(pairs: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_llm_overrides(load_spec(REACT).spec, parse_llm_options(pairs))


def test_the_cli_refuses_a_bad_override_with_exit_2() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "agentfsm", "run", str(REACT), "-i", "task=x", "--llm", "mind=openai:x"],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == "error: --llm: no LLM binding named 'mind' (this machine's: brain)"


def run_with_server_model(machine: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`agentfsm run MACHINE --llm brain=openai:test-model@URL/v1 --json` on the 17 * 23 task."""
    return subprocess.run(
        [sys.executable, "-m", "agentfsm", "run", str(machine), "-i", "task=What is 17 * 23?", "--json", "-q",
         "--llm", f"brain=openai:test-model@{url}/v1"],
        capture_output=True, text=True, timeout=60, env=environment_without_proxies(),
    )


def test_the_shipped_react_agent_runs_against_a_real_server_with_one_flag() -> None:
    """`--llm brain=openai:MODEL@URL` is the only change: same file, a real OpenAI-compatible server."""
    import json

    from tests.llm_server import serve
    from tests.test_llm_providers import openai_reply

    with serve() as server:
        server.script(
            openai_reply(json.dumps({"thought": "compute", "action": {"tool": "calculator", "input": "17 * 23"}})),
            openai_reply("```json\n" + json.dumps({"thought": "done", "final_answer": "391"}) + "\n```"),
        )
        completed = run_with_server_model(REACT, server.url)
        requests = list(server.requests)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert (result["status"], result["output"]) == ("succeeded", "391")
    assert result["usage"]["brain"]["calls"] == 2
    assert [r.path for r in requests] == ["/v1/chat/completions"] * 2
    first = requests[0].json
    assert first["model"] == "test-model"
    assert first["messages"][0]["role"] == "system"
    assert "Task: What is 17 * 23?" in first["messages"][1]["content"]
    assert "Observation: 391" in requests[1].json["messages"][1]["content"]


def test_the_native_tools_agent_calls_tools_through_a_real_server_with_one_flag() -> None:
    import json

    from tests.llm_server import Reply, serve

    tool_call = {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_a", "type": "function",
                            "function": {"name": "calculator", "arguments": '{"expression": "17 * 23"}'}}]}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49},
    }
    answer = {
        "id": "chatcmpl-2", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "391"}}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 1, "total_tokens": 61},
    }
    machine = ROOT / "machines" / "react_native_tools.yaml"
    with serve() as server:
        server.script(Reply(json=tool_call), Reply(json=answer))
        completed = run_with_server_model(machine, server.url)
        requests = list(server.requests)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert (result["status"], result["output"]) == ("succeeded", "391")
    assert result["usage"]["brain"] == {"calls": 2, "prompt_tokens": 100, "completion_tokens": 10}
    offered = requests[0].json["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["calculator"]
    assert offered[0]["function"]["parameters"]["properties"]["expression"]["type"] == "string"
    second = requests[1].json["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_a"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_a", "content": "391"}
