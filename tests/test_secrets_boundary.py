"""Secrets: taken out of everything that enters a run, sent only where they belong, never too short to hide
(issue 9). A real HTTP server on 127.0.0.1 plays the model server (tests/llm_server.py) and a proxy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentfsm
from agentfsm import BindingError, Runs, load_machine
from agentfsm.bindings.known_secrets import forget_secrets
from tests.helpers import environment_without_proxies
from tests.llm_server import LLMServer, Reply

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-test-ECHOED-1234567890"
HEADER_SECRET = "hdr-ECHOED-0987654321"
KEY_ENV = "AGENTFSM_TEST_ECHO_KEY"


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setenv("AGENTFSM_TEST_ECHO_HEADER", HEADER_SECRET)
    forget_secrets()


def echo(text: str) -> Reply:
    """What a model server that echoes the request's headers answers."""
    return Reply(json={"id": "c1", "object": "chat.completion", "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def write(folder: Path, document: dict[str, Any]) -> Path:
    path = folder / "machine.yaml"
    path.write_text(yaml.safe_dump({"agentfsm": 1, "name": "secrets", **document}, sort_keys=False),
                    encoding="utf-8")
    return path


def echoing_machine(server: LLMServer, folder: Path) -> Path:
    (folder / "echo_tools.py").write_text(
        "import os\ndef env(name):\n    return {'value': os.environ[name]}\n", encoding="utf-8")
    return write(folder, {
        "llms": {"brain": {"provider": "openai", "model": "m", "base_url": server.url + "/v1",
                           "api_key_env": KEY_ENV, "headers": {"X-Token": {"env": "AGENTFSM_TEST_ECHO_HEADER"}}}},
        "tools": {"env": {"python": "echo_tools:env"}},
        "initial": "ask",
        "states": {
            "ask": {"type": "llm", "llm": "brain", "prompt": "hi", "save": "reply", "next": "look"},
            "look": {"type": "tool", "tool": "env", "args": {"name": KEY_ENV}, "save": "found", "next": "hold"},
            "hold": {"type": "wait", "event": "go", "save": "sent", "next": "done"},
            "done": {"type": "final", "output": {"reply": "{{ reply }}", "found": "{{ found.value }}",
                                                 "sent": "{{ sent }}"}},
        },
    })


def test_an_echoed_key_is_redacted_where_it_enters_so_live_and_stored_agree(server: LLMServer,
                                                                            tmp_path: Path) -> None:
    """The live context held the raw key while the store held `Bearer [redacted]`."""
    server.script(echo(f"authorization: Bearer {SECRET}; x-token: {HEADER_SECRET}"))
    path = echoing_machine(server, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        async def go() -> tuple[Any, Any, Any]:
            async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
                waiting = await runs.start(path)
                live = dict(waiting.context.data)
                done = await runs.send(waiting.run_id, "go", {"note": f"the key is {SECRET}"})
                assert done is not None
                stored = await runs.summary(waiting.run_id)
                return live, done.output, stored
        live, output, stored = asyncio.run(go())
    finally:
        sys.path.remove(str(tmp_path))
    assert live["reply"] == "authorization: Bearer [redacted]; x-token: [redacted]"
    assert live["found"] == {"value": "[redacted]"}
    assert output == {"reply": live["reply"], "found": "[redacted]", "sent": {"note": "the key is [redacted]"}}
    assert SECRET not in json.dumps(stored) and HEADER_SECRET not in json.dumps(stored)


def test_the_cli_prints_no_echoed_key(server: LLMServer, tmp_path: Path) -> None:
    server.script(echo(f"you sent Bearer {SECRET}"))
    path = write(tmp_path, {
        "llms": {"brain": {"provider": "openai", "model": "m", "base_url": server.url + "/v1",
                           "api_key_env": KEY_ENV}},
        "initial": "ask",
        "states": {"ask": {"type": "llm", "llm": "brain", "prompt": "hi", "save": "r", "next": "done"},
                   "done": {"type": "final", "output": "{{ r }}"}},
    })
    env = {**environment_without_proxies(), KEY_ENV: SECRET}
    done = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "--json", "--store",
                           str(tmp_path / "runs.db")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == "you sent Bearer [redacted]"
    assert SECRET not in done.stdout + done.stderr


def test_the_default_key_is_not_sent_over_plain_http_even_to_the_providers_host(
        server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`http://api.openai.com/v1` counted as OpenAI's own server: a proxy received `Authorization: Bearer`."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the test server plays the proxy on the way
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.script(echo("hello"))
    path = write(tmp_path, {
        "llms": {"brain": {"provider": "openai", "model": "m", "base_url": "http://api.openai.com/v1",
                           "max_retries": 0}},
        "initial": "ask",
        "states": {"ask": {"type": "llm", "llm": "brain", "prompt": "hi", "next": "done"},
                   "done": {"type": "final"}},
    })
    asyncio.run(agentfsm.run(path))
    assert server.requests, "the request went through the proxy"
    assert all("authorization" not in request.headers for request in server.requests)
    assert all(SECRET not in request.raw.decode() for request in server.requests)


def test_a_key_named_for_a_public_host_over_plain_http_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "llms": {"brain": {"provider": "openai", "model": "m", "base_url": "http://llm.example.com/v1",
                           "api_key_env": KEY_ENV}},
        "initial": "ask",
        "states": {"ask": {"type": "llm", "llm": "brain", "prompt": "hi", "next": "done"},
                   "done": {"type": "final"}},
    })
    with pytest.raises(BindingError, match=r"llms\.brain\.base_url: refusing to send an API key or secret header "
                                            r"over plain http to llm\.example\.com") as caught:
        load_machine(path)
    assert SECRET not in str(caught.value)
    checked = subprocess.run([sys.executable, "-m", "agentfsm", "validate", str(path)], capture_output=True,
                             text=True, env=environment_without_proxies(), cwd=ROOT, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{path}:7:" in checked.stdout and "warning insecure-url" in checked.stdout, checked.stdout


def test_plain_http_to_a_local_server_is_fine(server: LLMServer, tmp_path: Path) -> None:
    server.script(echo("hello"))
    path = write(tmp_path, {
        "llms": {"brain": {"provider": "openai", "model": "m", "base_url": server.url + "/v1",
                           "api_key_env": KEY_ENV}},
        "initial": "ask",
        "states": {"ask": {"type": "llm", "llm": "brain", "prompt": "hi", "next": "done"},
                   "done": {"type": "final"}},
    })
    assert asyncio.run(agentfsm.run(path)).status == "succeeded"
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_a_key_too_short_to_redact_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3-character key was never redacted: it showed in stdout, the store, `runs --json` and `diff`."""
    monkeypatch.setenv(KEY_ENV, "k3y")
    path = write(tmp_path, {
        "llms": {"brain": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                           "api_key_env": KEY_ENV}},
        "initial": "ask",
        "states": {"ask": {"type": "llm", "llm": "brain", "prompt": "hi", "next": "done"},
                   "done": {"type": "final"}},
    })
    with pytest.raises(BindingError) as caught:
        load_machine(path)
    assert str(caught.value) == (f"llms.brain.api_key_env: environment variable {KEY_ENV} holds fewer than 4 "
                                 "characters, too short to be kept out of output; a secret must be longer")


@pytest.mark.parametrize("url", [
    "mysql://root:hunter22secret@db.example.com/agentfsm",
    "postgresql://root:hunter22secret@127.0.0.1:9/agentfsm",
])
def test_a_store_urls_password_is_never_shown(url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "agentfsm", "runs", "--store", url], capture_output=True,
                          text=True, env=environment_without_proxies(), cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "hunter22secret" not in done.stdout + done.stderr
    assert "***" in done.stderr, done.stderr
