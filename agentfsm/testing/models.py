"""The test file language (`*.test.yaml`) as pydantic models: the single source of its JSON Schema
(`schemas/test.schema.json`), its reference (`docs/testing.md`) and its validation errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from agentfsm.spec.fields import GUARD, Identifier, LanguageModel, StateName
from agentfsm.spec.models import ScriptedReply

TEST_LANGUAGE_VERSION = 1
TEST_SUFFIX = ".test.yaml"


class ErrorStub(LanguageModel):
    """The error a stubbed tool call fails with."""

    type: Annotated[str, StringConstraints(min_length=1)] = Field(
        "tool.error", description="An error type of the taxonomy, such as `tool.unavailable` or `timeout`.")
    message: str = Field("stubbed error", description="The error's message.")


class ToolCallStub(LanguageModel):
    """What one call of a stubbed tool returns: a `result`, or an `error`."""

    result: Any = Field(None, description="The value the call returns (any JSON value).")
    error: ErrorStub | None = Field(None, description="Fail the call with this error instead.")


ToolStub = ToolCallStub | list[ToolCallStub]
"""A stub: one answer for every call, or a list answering the calls in order (one call more is a `tool.error`)."""


class ScriptedReplies(LanguageModel):
    """Replaces an LLM binding with scripted replies (the `scripted` provider's rules)."""

    replies: list[str | ScriptedReply] = Field(
        default_factory=list,
        description="Plain strings are used in order; rules (mappings with `reply:`) are tried first, in order.",
    )
    replies_file: str | None = Field(None, description="A YAML or JSON file (relative to the test file) of replies.")


class EventToSend(LanguageModel):
    """An event delivered when the run waits (`timeout` lets the wait's timer run out)."""

    name: Annotated[str, StringConstraints(min_length=1)] = Field(description="The event's name.")
    data: Any = Field(None, description="The event's data.")


class Expect(LanguageModel):
    """What the run must do. Only the fields given are checked."""

    status: Literal["succeeded", "failed", "waiting"] | None = Field(None, description="How the run ends.")
    output: Any = Field(None, description="The run's output, exactly (give `null` to expect none).")
    output_when: str | None = Field(
        None, description="A guard the output must satisfy, seeing `output` and the final context's keys, such as "
        "`output | int > 300`.", json_schema_extra=GUARD)
    path: list[StateName] | None = Field(None, description="The states the run passed, exactly, in order.")
    path_contains: list[StateName] | None = Field(
        None, description="States the run passed in this order, others possibly between them.")
    visits: dict[StateName, int] | None = Field(None, description="How often each named state was entered.")
    context: dict[Identifier, Any] | None = Field(None, description="Values of these context keys at the end.")
    error: str | None = Field(None, description="The error type of a failed run, by prefix (`llm` takes `llm.parse`).")
    steps_at_most: int | None = Field(None, ge=1, description="The run takes at most this many steps.")


class TestCase(LanguageModel):
    """One case: a run of the machine with its inputs, replies, stubs and events, and what it must do."""

    __test__ = False  # not a pytest class

    name: Annotated[str, StringConstraints(min_length=1)] = Field(description="The case's name, unique in the file.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The run's inputs.")
    llms: dict[Identifier, ScriptedReplies | list[str | ScriptedReply]] = Field(
        default_factory=dict, description="Scripted replies per LLM binding (a list is `replies:`); a binding not "
        "named keeps the machine's, which must be scripted.")
    tools: dict[Identifier, ToolStub] = Field(
        default_factory=dict, description="Tool stubs per tool binding: one `{result}`/`{error}` for every call, or "
        "a list for the calls in order; a binding not named is the machine's own.")
    events: list[EventToSend | Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, description="Events sent, one each time the run waits: a name, or `{name, data}`.")
    expect: Expect = Field(default_factory=Expect, description="What the run must do.")


class TestFile(LanguageModel):
    """A test file: a machine and its cases."""

    __test__ = False  # not a pytest class

    model_config = ConfigDict(title="agentfsm test file")

    agentfsm_test: Literal[1] = Field(description="Test language version; this release reads 1.")
    machine: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="The machine file, relative to the test file.")
    cases: list[TestCase] = Field(min_length=1, description="The cases.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of test files (`schemas/test.schema.json`)."""
    schema = TestFile.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "agentfsm/test/v1", **schema}


__all__ = ["Expect", "StateName", "TEST_SUFFIX", "TestCase", "TestFile", "ToolStub", "json_schema"]
