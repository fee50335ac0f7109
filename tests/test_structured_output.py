"""`parse: json` with `schema:`: validation, the feedback turn (`parse_retries`), and JSON mode requests.

Scripted machines and the loopback HTTP server (tests/llm_server.py) stand in for models;
OpenAI's own host cannot be reached from tests, so its request body is checked through
the provider's request builder.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentfsm
from agentfsm import BindingError
from agentfsm.bindings.llm import LLMRequest
from agentfsm.bindings.openai_chat import OpenAIClient
from agentfsm.spec.models import OpenAILLM
from tests.helpers import CallRecorder
from tests.llm_server import LLMServer, Reply

KEY_ENV = "AGENTFSM_TEST_LLM_KEY"

SCHEMA = {
    "type": "object",
    "properties": {"category": {"enum": ["billing", "bug", "other"]}, "priority": {"type": "integer"}},
    "required": ["category", "priority"],
}
GOOD = '{"category": "bug", "priority": 2}'
BAD = '{"category": "weather", "priority": 2}'


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-key")


def machine(folder: Path, llm: dict[str, Any], ask: dict[str, Any], name: str = "machine.yaml") -> Path:
    document = {
        "agentfsm": 1, "name": "structured", "context": {"ticket": "The app crashes"}, "llms": {"brain": llm},
        "initial": "ask",
        "states": {
            "ask": {"type": "llm", "llm": "brain", "prompt": "Classify: {{ ticket }}", "parse": "json",
                    "save": "triage", "next": "done", **ask,
                    "catch": [{"errors": ["llm.parse"], "to": "broken", "as": "err"}]},
            "done": {"type": "final", "output": "{{ triage }}"},
            "broken": {"type": "fail", "error": "{{ err.message }}"},
        },
    }
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def scripted(*replies: Any) -> dict[str, Any]:
    return {"provider": "scripted", "replies": list(replies)}


def run(path: Path, *observers: object) -> agentfsm.RunResult:
    return asyncio.run(agentfsm.run(path, observers=observers))


def openai_reply(text: str, prompt_tokens: int = 7, completion_tokens: int = 3) -> Reply:
    return Reply(json={
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    })


def anthropic_reply(text: str) -> Reply:
    return Reply(json={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 11, "output_tokens": 5},
    })


# -- inline JSON Schema ----------------------------------------------------------------------


def test_a_reply_matching_the_schema_is_saved(tmp_path: Path) -> None:
    result = run(machine(tmp_path, scripted(GOOD), {"schema": SCHEMA}))
    assert result.status == "succeeded", result.error
    assert result.context.get("triage") == {"category": "bug", "priority": 2}
    assert result.usage["brain"]["calls"] == 1


def test_an_invalid_reply_is_fed_back_once_then_the_corrected_one_is_saved(tmp_path: Path) -> None:
    # the rule answers only the feedback turn: scripted rules see it as the prompt
    llm = scripted({"match": r"^The reply is not valid: \$\.category: 'weather' is not one of", "reply": GOOD}, BAD)
    recorder = CallRecorder()
    result = run(machine(tmp_path, llm, {"schema": SCHEMA}), recorder)

    assert result.status == "succeeded", result.error
    assert result.context.get("triage") == {"category": "bug", "priority": 2}
    assert result.usage["brain"]["calls"] == 2
    assert len(recorder.calls) == 2 and all(call.error is None for call in recorder.calls)


def test_an_unparseable_reply_is_fed_back_too(tmp_path: Path) -> None:
    llm = scripted({"match": "is not valid: the reply is not a JSON object or list", "reply": GOOD}, "Sure! bug, 2")
    result = run(machine(tmp_path, llm, {"schema": SCHEMA}))
    assert result.status == "succeeded", result.error
    assert result.usage["brain"]["calls"] == 2


def test_still_invalid_after_the_feedback_is_llm_parse_caught_by_a_catch_rule(tmp_path: Path) -> None:
    result = run(machine(tmp_path, scripted(BAD, '{"category": "bug"}'), {"schema": SCHEMA}))

    assert result.status == "failed"
    error = result.context.get("err")
    assert error["type"] == "llm.parse"
    assert error["state"] == "ask"
    assert "does not match the schema" in error["message"]
    assert "'priority' is a required property" in error["message"]  # the last reply's error
    assert error["detail"] == {"reply": '{"category": "bug"}', "attempts": 2}
    assert "triage" not in result.context.data
    assert result.usage["brain"]["calls"] == 2


def test_parse_retries_sets_how_many_feedback_turns(tmp_path: Path) -> None:
    none = run(machine(tmp_path, scripted(BAD, GOOD), {"schema": SCHEMA, "parse_retries": 0}, "none.yaml"))
    assert none.context.get("err")["type"] == "llm.parse"
    assert none.usage["brain"]["calls"] == 1

    three = run(machine(tmp_path, scripted(BAD, BAD, BAD, GOOD), {"schema": SCHEMA, "parse_retries": 3}, "3.yaml"))
    assert three.status == "succeeded", three.error
    assert three.usage["brain"]["calls"] == 4


def test_without_a_schema_json_is_not_retried_unless_asked(tmp_path: Path) -> None:
    default = run(machine(tmp_path, scripted("not json", "[1]"), {}, "default.yaml"))
    assert default.context.get("err")["type"] == "llm.parse"
    assert default.usage["brain"]["calls"] == 1

    asked = run(machine(tmp_path, scripted("not json", "[1]"), {"parse_retries": 1}, "asked.yaml"))
    assert asked.status == "succeeded", asked.error
    assert asked.context.get("triage") == [1]


def test_an_inline_schema_honours_its_declared_draft(tmp_path: Path) -> None:
    # Draft 4 reads exclusiveMaximum as a boolean; Draft 2020-12 would refuse this schema
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": True}}}
    path = machine(tmp_path, scripted('{"n": 5}', '{"n": 4}'), {"schema": schema})
    assert agentfsm.validate_file(path).ok
    result = run(path)
    assert result.status == "succeeded", result.error
    assert result.context.get("triage") == {"n": 4}
    assert result.usage["brain"]["calls"] == 2


# -- the feedback turn over HTTP -------------------------------------------------------------


def test_openai_feedback_turn_carries_the_conversation_and_the_error(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply(BAD, 10, 4), openai_reply(GOOD, 30, 5))
    llm = {"provider": "openai", "model": "gpt-test", "base_url": server.url + "/v1", "api_key_env": KEY_ENV}
    result = run(machine(tmp_path, llm, {"schema": SCHEMA, "system": "Reply with JSON."}))

    assert result.status == "succeeded", result.error
    assert result.context.get("triage") == {"category": "bug", "priority": 2}
    assert result.usage == {"brain": {"calls": 2, "prompt_tokens": 40, "completion_tokens": 9}}
    first, second = (request.json for request in server.requests)
    assert first["messages"] == [{"role": "system", "content": "Reply with JSON."},
                                 {"role": "user", "content": "Classify: The app crashes"}]
    assert second["messages"][:3] == [*first["messages"], {"role": "assistant", "content": BAD}]
    feedback = second["messages"][3]
    assert feedback["role"] == "user"
    assert feedback["content"].startswith("The reply is not valid: $.category: 'weather' is not one of")
    assert "corrected JSON" in feedback["content"]
    assert len(second["messages"]) == 4
    # a compatible server (not api.openai.com) is not sent a response_format by default
    assert "response_format" not in first and "response_format" not in second


def test_openai_compatible_server_gets_json_mode_when_the_binding_asks(server: LLMServer, tmp_path: Path) -> None:
    server.script(openai_reply(GOOD))
    llm = {"provider": "openai", "model": "gpt-test", "base_url": server.url + "/v1", "api_key_env": KEY_ENV,
           "json_mode": True}
    result = run(machine(tmp_path, llm, {"schema": SCHEMA}))
    assert result.status == "succeeded", result.error
    assert server.requests[0].json["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "ask", "schema": SCHEMA, "strict": False},
    }


def test_anthropic_feedback_turn_has_no_json_mode(server: LLMServer, tmp_path: Path) -> None:
    server.script(anthropic_reply("no idea"), anthropic_reply(GOOD))
    llm = {"provider": "anthropic", "model": "claude-test", "base_url": server.url, "api_key_env": KEY_ENV}
    result = run(machine(tmp_path, llm, {"schema": SCHEMA}))

    assert result.status == "succeeded", result.error
    first, second = (request.json for request in server.requests)
    assert set(first) == {"model", "max_tokens", "messages"}
    messages = second["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "no idea"
    assert messages[2]["content"].startswith("The reply is not valid: the reply is not a JSON object or list")


# -- OpenAI's request builder ----------------------------------------------------------------


def openai_client(**settings: Any) -> OpenAIClient:
    return OpenAIClient("brain", OpenAILLM(provider="openai", model="gpt-4o-mini", api_key_env=KEY_ENV, **settings))


def test_openai_own_host_is_asked_for_structured_output() -> None:
    client = openai_client()
    assert client.is_providers_own_server
    with_schema = LLMRequest("brain", "classify ticket!", "hi", json_mode=True, json_schema=SCHEMA)
    assert client._body(with_schema)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "classify_ticket_", "schema": SCHEMA, "strict": False},
    }
    json_only = LLMRequest("brain", "s", "hi", system="Reply with JSON.", json_mode=True)
    assert client._body(json_only)["response_format"] == {"type": "json_object"}
    # OpenAI refuses JSON mode unless a message mentions JSON: then it is not asked for
    assert "response_format" not in client._body(LLMRequest("brain", "s", "hi", json_mode=True))
    assert "response_format" not in client._body(LLMRequest("brain", "s", "hi"))  # parse: text or lines


def test_json_mode_false_turns_it_off_even_on_openai() -> None:
    request = LLMRequest("brain", "s", "hi", json_mode=True, json_schema=SCHEMA)
    assert "response_format" not in openai_client(json_mode=False)._body(request)
    assert "response_format" not in openai_client(base_url="http://127.0.0.1:9/v1")._body(request)


# -- a pydantic model as the schema ----------------------------------------------------------

MODELS = textwrap.dedent("""\
    from datetime import date
    from pydantic import BaseModel, Field

    class Triage(BaseModel):
        category: str
        priority: int = Field(ge=1, le=5)
        due: date
        tags: list[str] = []

    def not_a_model():
        pass
""")


def test_a_pydantic_model_validates_and_its_dump_is_saved(tmp_path: Path) -> None:
    (tmp_path / "triage_models.py").write_text(MODELS, encoding="utf-8")
    llm = scripted({"match": r"^The reply is not valid: priority: Input should be less than or equal to 5",
                    "reply": '{"category": "bug", "priority": "3", "due": "2024-05-01"}'},
                   '{"category": "bug", "priority": 9, "due": "2024-05-01"}')
    result = run(machine(tmp_path, llm, {"schema": {"python": "triage_models:Triage"}}))

    assert result.status == "succeeded", result.error
    # validated (the string "3" became 3, the default filled in), then dumped as JSON data
    assert result.context.get("triage") == {"category": "bug", "priority": 3, "due": "2024-05-01", "tags": []}
    assert result.usage["brain"]["calls"] == 2


def test_a_python_schema_must_be_a_pydantic_model(tmp_path: Path) -> None:
    (tmp_path / "triage_models.py").write_text(MODELS, encoding="utf-8")
    path = machine(tmp_path, scripted(GOOD), {"schema": {"python": "triage_models:not_a_model"}})
    assert agentfsm.validate_file(path).ok  # `validate` never imports
    with pytest.raises(BindingError, match=r"states\.ask\.schema: 'triage_models:not_a_model' is not a pydantic"):
        agentfsm.load_machine(path)


# -- validation ------------------------------------------------------------------------------


def problems(tmp_path: Path, text: str) -> list[tuple[int, str, str]]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return [(p.line, p.code, p.message) for p in agentfsm.validate_file(path).problems]


HEAD = textwrap.dedent("""\
    agentfsm: 1
    name: bad
    llms: {brain: {provider: scripted}}
    initial: ask
    states:
      done: {type: final}
      ask:
        type: llm
        llm: brain
        prompt: hi
        next: done
""")


def test_an_inline_schema_that_is_not_json_schema_is_an_error_at_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "    parse: json\n    schema: {type: objekt}\n")
    assert found == [(13, "invalid-value", "states.ask.schema.type: not a valid JSON Schema: 'objekt' is not a JSON "
                                           "Schema type (array, boolean, integer, null, number, object, string)")]

    nested = problems(tmp_path, HEAD + "    parse: json\n    schema:\n      type: object\n"
                                       "      required: name\n")
    assert [(line, code) for line, code, _ in nested] == [(15, "invalid-value")]
    assert "states.ask.schema.required: not a valid JSON Schema: 'name' is not of type 'array'" in nested[0][2]


def test_schema_and_parse_retries_need_parse_json(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "    schema: {type: object}\n    parse_retries: 2\n")
    assert found == [
        (12, "invalid-value", "states.ask.schema: needs 'parse: json' (this state parses 'text')"),
        (13, "invalid-value", "states.ask.parse_retries: needs 'parse: json' (this state parses 'text')"),
    ]


def test_a_bad_python_schema_reference_is_located(tmp_path: Path) -> None:
    [(line, code, message)] = problems(tmp_path, HEAD + "    parse: json\n    schema: {python: not-a-ref}\n")
    assert (line, code) == (13, "invalid-value")
    assert message.startswith("states.ask.schema.python: ")
