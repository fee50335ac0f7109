"""`type: llm`: render a prompt, call an LLM binding (with its tools, if any), parse, validate and save the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, WithJsonSchema

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_text, finish_step, make_scope, rendered
from agentfsm.runtime.calls import token_relay
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import (
    TEXT_TEMPLATE,
    ActiveStateSpec,
    Identifier,
    LanguageModel,
    PythonRef,
    Reporter,
)

if TYPE_CHECKING:
    from agentfsm.bindings.conversation import AnswerRules
    from agentfsm.bindings.llm import LLMClient

JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


class PythonSchema(LanguageModel):
    """A reply schema given by a pydantic model, imported when the run starts."""

    python: PythonRef = Field(
        description="`module:Model`, a pydantic `BaseModel` subclass; the machine file's folder is searched first."
    )


def _schema_kind(value: Any) -> str:
    if isinstance(value, PythonSchema) or (isinstance(value, dict) and "python" in value):
        return "python"
    return "inline"


ReplySchemaSpec = Annotated[
    Annotated[PythonSchema, Tag("python")]
    | Annotated[
        dict[str, Any],
        Tag("inline"),
        WithJsonSchema({
            "type": "object", "not": {"required": ["python"]},
            "description": "An inline JSON Schema the reply must match.",
        }),
    ],
    Discriminator(_schema_kind),
]


class LlmStateSpec(ActiveStateSpec):
    """Render a prompt, call an LLM binding, parse and save the reply."""

    type: Literal["llm"]
    llm: str = Field(description="Name of a binding under `llms:`.")
    system: str | None = Field(None, description="System prompt template.", json_schema_extra=TEXT_TEMPLATE)
    prompt: str = Field(description="User prompt template.", json_schema_extra=TEXT_TEMPLATE)
    parse: Literal["text", "json", "lines"] = Field(
        "text", description="`text` as is; `json` an object or list (code fences allowed); `lines` non-empty lines."
    )
    schema_: ReplySchemaSpec | None = Field(
        None, alias="schema",
        description="With `parse: json`, the shape the reply must have: an inline JSON Schema (Draft 2020-12 unless "
        "its `$schema` names another draft), or `{python: \"module:Model\"}` naming a pydantic model (the saved "
        "value is then the validated model, dumped as JSON data). A reply that does not match is fed back to the "
        "model (see `parse_retries`), then fails the state with `llm.parse`. OpenAI's own API is asked for "
        "structured output with this schema.",
    )
    parse_retries: int | None = Field(
        None, ge=0, le=5,
        description="With `parse: json`, how many more times the model is asked when its reply is not JSON or does "
        "not match `schema`: the conversation so far is sent again with a user message starting `The reply is not "
        "valid:` followed by the error, asking for corrected JSON only. Default: 1 with a `schema`, 0 without. "
        "Each call counts in the usage; after the last, the state fails with `llm.parse`.",
    )
    tools: list[str] = Field(
        default_factory=list,
        description="Names of bindings under `tools:` the model may call natively, with the JSON Schema of each "
        "tool's arguments. The state loops: the model's tool calls run (concurrently when it asks for several), "
        "their results go back to it, until it answers with text; each call is recorded in the step.",
    )
    max_tool_rounds: int = Field(
        8, ge=1,
        description="With `tools:`, how many replies with tool calls are run; one more fails the state with "
        "`llm.tool_loop`.",
    )
    save: Identifier | None = Field(None, description="Context key the parsed reply is saved under.")
    emit: str | None = Field(
        None, description="Template for the event name (sees `result`); default `done`.", json_schema_extra=TEXT_TEMPLATE
    )

    def diagram_notes(self) -> list[str]:
        return [f"llm: {self.llm}", *([f"tools: {', '.join(self.tools)}"] if self.tools else [])]

    def check(self, name: str, reporter: Reporter) -> None:
        """`schema:` and `parse_retries:` need `parse: json`; an inline schema must be a valid JSON Schema."""
        super().check(name, reporter)
        where = ("states", name)
        for field, value in (("schema", self.schema_), ("parse_retries", self.parse_retries)):
            if value is not None and self.parse != "json":
                reporter.report((*where, field), "invalid-value",
                                f"states.{name}.{field}: needs 'parse: json' (this state parses '{self.parse}')",
                                key=True)
        if isinstance(self.schema_, dict):
            _check_json_schema(name, self.schema_, reporter)

    @property
    def reply_retries(self) -> int:
        """The feedback calls allowed after a reply that does not parse or validate."""
        if self.parse_retries is not None:
            return self.parse_retries
        return 1 if self.schema_ is not None else 0


def _check_json_schema(name: str, schema: dict[str, Any], reporter: Reporter) -> None:
    from jsonschema import validators  # only machines with an inline schema pay for it
    from jsonschema.exceptions import SchemaError

    try:
        validators.validator_for(schema, default=validators.Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        inside = tuple(exc.path)
        message = exc.message
        if inside[-1:] == ("type",) and exc.validator == "anyOf" and not isinstance(exc.instance, list | dict):
            message = f"{exc.instance!r} is not a JSON Schema type ({', '.join(JSON_TYPES)})"
        place = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in inside)
        message = message if len(message) <= 200 else message[:197] + "..."
        reporter.report(("states", name, "schema", *inside), "invalid-value",
                        f"states.{name}.schema{place}: not a valid JSON Schema: {message}")


class LlmState(State):
    """Render the prompts, call the binding (its tool calls run, bad replies are fed back), save, emit."""

    def __init__(
        self, name: str, client: LLMClient, *, prompt: str, system: str | None, save: str | None,
        emit: str | None, rules: AnswerRules, **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.client = client
        self.prompt = compile_text(prompt)
        self.system = compile_text(system) if system is not None else None
        self.rules = rules
        self.save = save
        self.emit = compile_text(emit) if emit is not None else None

    async def execute(self, context: StateContext) -> Event:
        from agentfsm.bindings.conversation import converse  # what runs llm states; validate never needs it
        from agentfsm.bindings.llm import LLMRequest, ToolSpec

        scope = make_scope(context)
        prompt = rendered(self.prompt, scope, "prompt")
        system = rendered(self.system, scope, "system") if self.system is not None else None
        schema = self.rules.schema
        request = LLMRequest(
            self.client.name, self.name, prompt, system, context.run_id, json_mode=self.rules.parse == "json",
            json_schema=schema.json_schema if schema is not None else None,
            tools=tuple(ToolSpec(t.name, t.description, t.parameters) for t in self.rules.tools.values()),
            on_token=token_relay(context, self.name), session=context.bindings.setdefault(self.client.name, {}),
        )
        result = await converse(context, self.name, self.client, request, self.rules)
        return finish_step(context, result, self.save, self.emit)


def compile_llm(name: str, spec: LlmStateSpec, env: CompileEnv) -> State:
    from agentfsm.bindings.conversation import AnswerRules
    from agentfsm.bindings.llm import ReplySchema, make_reply_schema

    schema: ReplySchema | None = None
    if spec.schema_ is not None:
        schema = make_reply_schema(spec.schema_, env.base_dir, f"states.{name}.schema")
    rules = AnswerRules(spec.parse, schema, spec.reply_retries, {tool: env.tools[tool] for tool in spec.tools},
                        spec.max_tool_rounds)
    return LlmState(name, env.llms[spec.llm], prompt=spec.prompt, system=spec.system, save=spec.save,
                    emit=spec.emit, rules=rules, **state_options(spec))


KIND = register(Kind("llm", LlmStateSpec, compile_llm))
