"""The YAML machine language (v1) as pydantic models.

These models are the single source of truth for the language: the loader validates
with them, `schemas/machine.schema.json` is generated from them, and so are the
field tables in `docs/reference.md`. Field descriptions are written for users.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, Protocol, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agentfsm.spec.durations import parse_duration, parse_positive_duration
from agentfsm.spec.expressions import is_template

LANGUAGE_VERSION = 1

TEMPLATE_KEY = "x-agentfsm-template"
"""Marks a field holding templates: `value` (strings anywhere inside are value templates), `text`
(one template rendered to text) or `guard` (one Jinja2 expression). Checks and the compiler read it."""
VALUE_TEMPLATE = {TEMPLATE_KEY: "value"}
TEXT_TEMPLATE = {TEMPLATE_KEY: "text"}
GUARD = {TEMPLATE_KEY: "guard"}

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
"""A name templates can use: context keys, inputs, `save`, `set` keys, `as`."""

PYTHON_REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
PythonRef = Annotated[str, StringConstraints(pattern=PYTHON_REF_PATTERN)]

StateName = Annotated[str, StringConstraints(min_length=1)]

_DURATION_TEXT = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"}


def _duration_type(parse: Any, number: dict[str, Any], description: str) -> Any:
    """A duration field: seconds as a number, or text such as `30s`, parsed by `parse`."""
    return Annotated[
        float,
        BeforeValidator(parse),
        WithJsonSchema({"anyOf": [{"type": "number", **number}, _DURATION_TEXT], "description": description}),
    ]


Duration = _duration_type(
    parse_duration, {"minimum": 0}, "Seconds as a number, or a string such as 500ms, 30s, 5m, 24h, 7d."
)
PositiveDuration = _duration_type(
    parse_positive_duration,
    {"exclusiveMinimum": 0},
    "Seconds (more than 0) as a number, or a string such as 500ms, 30s, 5m, 24h.",
)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


EventNames = Annotated[
    list[Annotated[str, StringConstraints(min_length=1)]],
    BeforeValidator(_as_list),
    Field(min_length=1),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    ),
]


class LanguageModel(BaseModel):
    """Base of every model of the language: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# -- inputs ----------------------------------------------------------------------------------

InputType = Literal["string", "integer", "number", "boolean", "array", "object", "any"]


class InputSpec(LanguageModel):
    """An input of the machine, checked before the run starts."""

    type: InputType = Field("any", description="JSON type the value must have.")
    required: bool = Field(False, description="The run refuses to start without it.")
    default: Any = Field(None, description="Value used when the input is not given.")
    description: str | None = Field(None, description="What the input means, for people reading the machine.")
    enum: list[Any] | None = Field(None, description="The value must be one of these.")


# -- bindings --------------------------------------------------------------------------------

ReplyValue = str | dict[str, Any] | list[Any]


class ScriptedToolCall(LanguageModel):
    """A tool call a scripted model makes: the tool's name and its arguments."""

    name: str = Field(description=r"The tool's name (as under the state's `tools:`); `\1` inserts a group of `match`.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description=r"The arguments, a mapping; `\1` or `\g<name>` in its texts insert groups "
        "of `match`.",
    )


class ScriptedReply(LanguageModel):
    """A scripted reply chosen by rule: by the calling state's name and/or a regex searched in the prompt."""

    reply: ReplyValue | None = Field(
        None,
        description="The reply: text, or a mapping/list sent as JSON text. "
        r"`\1` or `\g<name>` insert groups of `match`. Optional with `tool_calls`.",
    )
    tool_calls: list[ScriptedToolCall] = Field(
        default_factory=list,
        description="Tools the model calls natively in this reply (an `llm` state with `tools:` runs them and calls "
        "the model again with their results). Give `times: 1` or a `match:` so the rule does not fire forever.",
    )
    state: str | None = Field(None, description="Use only for calls from this state.")
    match: str | None = Field(
        None,
        description="Use only when this regular expression is found in the prompt: the latest user message, or after "
        "tool calls their results, one line each, `Result of NAME: JSON` or `Error from NAME: "
        '{"error": {"type": ..., "message": ...}}`.',
    )
    times: int | None = Field(None, ge=1, description="Use at most this many times (default: unlimited).")

    @field_validator("match")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _reply_expands(self) -> ScriptedReply:
        """At least a reply or a tool call; with `match`, every text is a re template: `\\1` must name a group."""
        if self.reply is None and not self.tool_calls:
            raise ValueError("a scripted reply needs 'reply', 'tool_calls' or both")
        if self.match is not None:
            pattern = re.compile(self.match)
            texts = _texts(self.reply) + [t for call in self.tool_calls for t in [call.name, *_texts(call.arguments)]]
            for text in texts:
                try:
                    pattern.sub(text, "")
                except re.error as exc:
                    raise ValueError(f"reply: {exc} (write \\\\ for a backslash)") from None
        return self


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


class ScriptedLLM(LanguageModel):
    """Deterministic, offline replies: for examples, tests and demos."""

    provider: Literal["scripted"] = Field(description="The provider; `scripted` replays listed replies.")
    model: str = Field("scripted", description="Recorded as the model name on each call.")
    replies: list[str | ScriptedReply] = Field(
        default_factory=list,
        description="Plain strings are used in order; rules (mappings with `reply:`) are tried first, in order.",
    )
    replies_file: str | None = Field(
        None, description="A YAML or JSON file (relative to the machine file) holding more `replies`."
    )


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
"""The name of an environment variable (never its value: secrets stay out of machine files)."""


class EnvValue(LanguageModel):
    """A value read from an environment variable when the run starts."""

    env: EnvName = Field(description="Name of the environment variable.")


def _http_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if "@" in parsed.netloc:  # never echo the URL: it holds a password
        raise ValueError("credentials in a URL (user:password@host) are not allowed; send them in `headers:` "
                         "with {env: NAME} so they stay out of the file, logs and errors")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class HostedLLM(LanguageModel):
    """Fields shared by providers reached over HTTP."""

    model: Annotated[str, StringConstraints(min_length=1)] = Field(description="The model's name at the provider.")
    base_url: HttpUrl | None = Field(None, description="The server's base URL; default: the provider's own.")
    api_key_env: EnvName | None = Field(
        None, description="Environment variable holding the API key (never the key itself)."
    )
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(None, ge=1, description="Upper bound on the reply's tokens.")
    timeout: PositiveDuration = Field(60.0, description="Give up on one HTTP call after this long (`llm.timeout`).")
    headers: dict[str, str | EnvValue] = Field(
        default_factory=dict, description="Extra HTTP headers; a value may be `{env: NAME}`."
    )
    max_retries: int = Field(
        2, ge=0, le=10,
        description="Retries of rate-limited (429), unavailable (5xx) or timed-out calls, before the state's `retry`.",
    )


class OpenAILLM(HostedLLM):
    """Any OpenAI-compatible chat-completions server: OpenAI, Ollama, vLLM, llama.cpp, LM Studio."""

    provider: Literal["openai"] = Field(description="`openai`: the chat-completions protocol.")
    json_mode: bool | None = Field(
        None,
        description="Whether `parse: json` states send `response_format` (JSON mode, or structured output with the "
        "state's `schema`). Default: only to OpenAI's own API, since many compatible servers refuse it; `true` "
        "for a server that supports it (vLLM, Ollama, llama.cpp...), `false` never.",
    )


class AnthropicLLM(HostedLLM):
    """Anthropic's Messages API."""

    provider: Literal["anthropic"] = Field(description="`anthropic`: the Messages API.")


LLMBinding = Annotated[ScriptedLLM | OpenAILLM | AnthropicLLM, Field(discriminator="provider")]
PROVIDERS = ("scripted", "openai", "anthropic")


BUILTINS = ("calculator", "now", "json_query", "read_file")


class BuiltinTool(LanguageModel):
    """A tool that ships with agentfsm; safe by construction (no eval, no shell, no network)."""

    builtin: Literal["calculator", "now", "json_query", "read_file"] = Field(
        description="Which builtin: `calculator` (args `expression`: safe arithmetic, no eval); "
        "`now` (args `timezone`, an optional IANA name such as `Europe/Paris`, default UTC: the current time "
        "as ISO 8601 text); `json_query` (args `data`, any JSON value, and `path` such as `a.b[0].c`: "
        "the value there, `tool.error` when there is none); `read_file` (args `path`, relative to `root`: "
        "the file's text, confined to `root` with symlinks resolved, at most `max_bytes`)."
    )
    root: str | None = Field(
        None, description="`read_file` only, and required there: the folder files are read from, relative to the "
        "machine file's folder and inside it. Nothing outside it can be read, by `..` or by a symlink."
    )
    max_bytes: int = Field(
        1_000_000, ge=1, description="`read_file` only: a larger file is a `tool.error` (it is not read)."
    )
    description: str | None = Field(None, description="What the tool does, for people and for models calling it.")

    @model_validator(mode="after")
    def _read_file_options(self) -> BuiltinTool:
        if self.builtin == "read_file":
            if self.root is None:
                raise ValueError("builtin read_file needs root: the folder (relative to the machine file) "
                                 "it may read from")
        else:
            for option in ("root", "max_bytes"):
                if option in self.model_fields_set:
                    raise ValueError(f"{option}: only builtin read_file takes it, not {self.builtin}")
        return self


class PythonTool(LanguageModel):
    """A Python function `module:function`, sync or async, called with the rendered `args` as keywords.

    The args are checked against the function's signature and type hints (with pydantic) before the
    call; a missing, unknown or mistyped argument is `tool.bad_arguments`.
    """

    python: PythonRef = Field(description="`module:function`; the machine file's folder is searched first.")
    description: str | None = Field(
        None, description="What the tool does; default: the first line of the function's docstring."
    )


ToolParameters = dict[Identifier, dict[str, Any]]
"""Argument name -> JSON Schema of that argument."""

_PARAMETERS_DESCRIPTION = (
    "The tool's arguments: name -> JSON Schema of the value (such as `{type: string}`), each required; "
    "describes the tool to models that call tools natively."
)


def _argv_item(value: Any) -> Any:
    """A number in a command list (`[head, -n, 5]`) is that argument's text; anything else is left to the type."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _argv_list(value: Any) -> Any:
    if isinstance(value, str):  # a command line would need a shell to split it, and no shell is ever used
        raise ValueError("write the command as a list of arguments, such as [ls, -1, '{{ args.path }}'] "
                         "(it never goes through a shell)")
    if value == []:
        raise ValueError("the command is empty; it needs at least the program to run")
    return value


ArgvItem = Annotated[str, BeforeValidator(_argv_item)]


class CommandTool(LanguageModel):
    """A program run with an argv list, no shell; result: `{output, exit_code, stderr, truncated, stderr_truncated}`.

    `output` is stdout as `parse:` asks; `truncated` / `stderr_truncated` are true when that
    stream was longer than `max_output` and was cut there.
    """

    command: Annotated[list[ArgvItem], BeforeValidator(_argv_list)] = Field(
        min_length=1,
        description="The program, then its arguments. Each item is one value template rendered to exactly one "
        "argument; templates see only `args` (the tool state's rendered `args`). The program is written literally.",
        json_schema_extra=VALUE_TEMPLATE,
    )
    timeout: PositiveDuration = Field(
        30.0, description="Stop the program (and every process it started) after this long (`tool.timeout`)."
    )
    max_output: int = Field(
        1_000_000, ge=1,
        description="Bytes of stdout, and separately of stderr, that are kept; the rest is read and dropped.",
    )
    env: list[EnvName] = Field(
        default_factory=list,
        description="Environment variables passed through by name; nothing else is inherited. "
        "PATH is a safe default unless listed.",
    )
    cwd: str | None = Field(
        None, description="Working folder, relative to the machine file's folder and inside it; default: that folder."
    )
    ok_exit_codes: list[int] = Field(
        default_factory=lambda: [0], min_length=1,
        description="Exit codes that count as success; any other is `tool.error` with the stderr tail.",
    )
    parse: Literal["text", "json", "lines"] = Field(
        "text",
        description="How stdout becomes `output`: `text` (trailing newlines removed), `json` (one JSON value) "
        "or `lines` (the non-empty lines).",
    )
    parameters: ToolParameters | None = Field(None, description=_PARAMETERS_DESCRIPTION)
    description: str | None = Field(None, description="What the tool does, for people and for models calling it.")

    @field_validator("command")
    @classmethod
    def _literal_program(cls, value: list[str]) -> list[str]:
        """The program is the author's choice, never data's: a template there could run anything."""
        program = value[0]
        if not program:
            raise ValueError("the program (the first item) is empty")
        if is_template(program):
            raise ValueError(f"the program (the first item) must be written literally, not a template: {program!r}")
        return value


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_URL_HEAD = re.compile(r"^https?://[^/?#{}\s]+[/?#]")


def _http_url_template(value: str) -> str:
    """Scheme and host are the author's: the text before the first template must be `scheme://host/`."""
    if "{%" in value or "{#" in value:
        raise ValueError("only {{ expression }} templates may appear in the URL, not {% %} or {# #}")
    start = value.find("{{")
    if start < 0:
        return _http_url(value)
    if not _URL_HEAD.match(value[:start]):
        raise ValueError(f"{value!r}: the scheme and host must be written literally, followed by /, ? or #, "
                         "before any template (such as https://api.example.com/items/{{ args.id }})")
    _http_url(value[:start])
    return value


class HttpTool(LanguageModel):
    """An HTTP request; result: `{status, output}`, `output` being the body as `parse:` asks.

    Data from `args` reaches the URL only through its templates, each value percent-encoded as one
    path or query component (`../` or `?x=` in data cannot change the URL's structure); scheme and
    host are written literally. Redirects are not followed.
    """

    http: Annotated[str, AfterValidator(_http_url_template)] = Field(
        description="The URL. Templates see only `args`; each `{{ }}` renders to one percent-encoded component "
        "(a string, a number or a boolean). The text before the first template must hold `scheme://host/`.",
        json_schema_extra=TEXT_TEMPLATE,
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field("GET", description="The HTTP method.")
    headers: dict[str, str | EnvValue] = Field(
        default_factory=dict,
        description="HTTP headers, written literally; a value may be `{env: NAME}`, read when the run starts "
        "and kept out of every error and record.",
    )
    json_body: Any = Field(
        None, alias="json", description="The request body, sent as JSON (not with GET).",
        json_schema_extra=VALUE_TEMPLATE,
    )
    timeout: PositiveDuration = Field(30.0, description="Give up on the whole exchange after this long "
                                      "(`tool.timeout`).")
    max_response: int = Field(
        1_000_000, ge=1, description="Bytes of response body accepted; a longer body is a `tool.error` "
        "(reading stops at the cap)."
    )
    ok_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        None, min_length=1,
        description="Statuses that count as success; default: any 2xx. Any other is a `tool.error` whose "
        "`detail` has `status` and the start of the body.",
    )
    parse: Literal["json", "text"] = Field(
        "json", description="How the body becomes `output`: `json` (an empty body is null) or `text`."
    )
    parameters: ToolParameters | None = Field(None, description=_PARAMETERS_DESCRIPTION)
    description: str | None = Field(None, description="What the tool does, for people and for models calling it.")

    @model_validator(mode="after")
    def _no_body_with_get(self) -> HttpTool:
        if self.method == "GET" and "json_body" in self.model_fields_set:
            raise ValueError("json: a GET request has no body; use POST, PUT, PATCH or DELETE")
        return self


def _tool_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in ("builtin", "python", "command", "http"):
            if kind in value:
                return kind
        return None
    return getattr(value, "kind", None)


ToolBinding = Annotated[
    Annotated[BuiltinTool, Tag("builtin")] | Annotated[PythonTool, Tag("python")]
    | Annotated[CommandTool, Tag("command")] | Annotated[HttpTool, Tag("http")],
    Discriminator(
        _tool_kind,
        custom_error_type="tool_kind",
        custom_error_message="a tool needs one of the keys builtin:, python:, command:, http:",
    ),
]


# -- transitions, actions, retry, catch ------------------------------------------------------


class TransitionRule(LanguageModel):
    """A rule: the first whose `event` matches and whose `when` guard is true is taken."""

    event: EventNames | None = Field(None, description="Event name(s) this rule answers; omitted: any event.")
    when: str | None = Field(
        None, description="A Jinja2 expression (no braces), e.g. `attempts < 3`.", json_schema_extra=GUARD
    )
    to: StateName = Field(description="The state to go to.")
    set: dict[Identifier, Any] | None = Field(
        None, description="Context values assigned when taking the rule.", json_schema_extra=VALUE_TEMPLATE
    )


    @property
    def label(self) -> str:
        """How the rule reads on a diagram arrow: `approved`, `[attempts < 3]`, `done [x > 1]`."""
        events = " | ".join(self.event) if self.event else ""
        guard = f"[{self.when}]" if self.when is not None else ""
        return " ".join(part for part in (events, guard) if part)


class Edge(NamedTuple):
    """A way out of a state: where it goes, where the reference is written, how it reads."""

    target: str
    path: tuple[str | int, ...]
    label: str
    is_error: bool = False


class SetAction(LanguageModel):
    """Assign templated values into the context."""

    set: dict[Identifier, Any] = Field(description="Context key -> value template.", json_schema_extra=VALUE_TEMPLATE)


class RetrySpec(LanguageModel):
    """Retry the state's work on matching errors (Step Functions' Retry semantics)."""

    errors: EventNames = Field(default_factory=lambda: ["*"], description="Error types, by prefix; `*` for all.")
    interval: Duration = Field(1.0, description="Wait before the first retry.")
    max_attempts: int = Field(3, ge=0, description="Retries after the first attempt; 0 never retries.")
    backoff_rate: float = Field(2.0, ge=1.0, description="Each wait is this many times the previous one.")
    max_delay: Duration | None = Field(None, description="Upper bound of any single wait.")
    jitter: Literal["full", "none"] = Field("none", description="`full`: wait a random time up to the delay.")


def _one_or_many(schema: dict[str, Any]) -> None:
    """JSON Schema for a list field that also accepts a single item (wrapped by `_as_list`)."""
    items = schema.pop("items")
    schema.pop("type", None)
    schema["anyOf"] = [items, {"type": "array", "items": items}]


RetryList = Annotated[list[RetrySpec], BeforeValidator(_as_list)]


class CatchSpec(LanguageModel):
    """On a matching error, go to another state (Step Functions' Catch semantics)."""

    errors: EventNames = Field(description="Error types, by prefix; `*` for all (only in the last rule).")
    to: StateName = Field(description="The state to go to.")
    as_: Identifier | None = Field(None, alias="as", description="Context key the error object is saved under.")


# -- states ----------------------------------------------------------------------------------


class Reporter(Protocol):
    """Where a kind's checks report what they find: the place in the file (a path from the document's root,
    `("states", name, ...)`), a stable code (`agentfsm.spec.problems.CODES`) and a message."""

    def report(self, path: tuple[str | int, ...], code: str, message: str, *, key: bool = False) -> None: ...


class StateSpec(LanguageModel):
    """Fields every state has. A kind's model (`agentfsm.kinds`) adds its own, and says how it is checked."""

    terminal: ClassVar[bool] = False
    """A state of this kind ends the run."""
    routes_itself: ClassVar[bool] = False
    """A state of this kind names its next state itself when it runs, so it may go to any state."""

    description: str | None = Field(None, description="What the state is for, for people reading the machine.")
    on_enter: list[SetAction] = Field(default_factory=list, description="Actions run when the state is entered.")
    on_exit: list[SetAction] = Field(default_factory=list, description="Actions run when the state is left.")
    checkpoint: bool = Field(False, description="Name a checkpoint just before this state runs, on each visit: NAME, then NAME#2...")
    max_visits: int | None = Field(None, ge=1, description="Fail the run if the state is entered more often.")

    @property
    def is_terminal(self) -> bool:
        return self.terminal

    @property
    def next_label(self) -> str:
        """How `next:` reads on a diagram arrow: the event that takes it."""
        return "done"

    def edges(self) -> list[Edge]:
        """Every way out of the state: `next`, then the transition rules, then the catch rules."""
        edges = []
        next_state = getattr(self, "next", None)
        if next_state is not None:
            edges.append(Edge(next_state, ("next",), self.next_label))
        for index, rule in enumerate(getattr(self, "transitions", ())):
            edges.append(Edge(rule.to, ("transitions", index, "to"), rule.label or "otherwise"))
        for index, catch in enumerate(getattr(self, "catch", ())):
            edges.append(Edge(catch.to, ("catch", index, "to"), "error: " + ", ".join(catch.errors), True))
        return edges

    def check(self, name: str, reporter: Reporter) -> None:
        """The rules of this kind that need the whole (valid) state; references and templates are checked for
        every kind alike (`agentfsm.spec.checks`)."""


class RoutedStateSpec(StateSpec):
    """Fields of states that move on by `next:` or by transition rules."""

    next: StateName | None = Field(None, description="The unconditional next state.")
    transitions: list[TransitionRule] = Field(default_factory=list, description="Ordered rules; first match wins.")

    @property
    def lacks_route(self) -> bool:
        """No `next:` and no rules, in a state that does not name its next state itself."""
        return not self.routes_itself and self.next is None and not self.transitions

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        where = ("states", name)
        if self.next is not None and self.transitions:
            reporter.report((*where, "next"), "next-and-transitions",
                            f"states.{name}: has both next: and transitions:; use one", key=True)
        if self.lacks_route:
            reporter.report(where, "no-transition",
                            f"states.{name}: no next: or transitions:; say where the run goes after this state",
                            key=True)


class ActiveStateSpec(RoutedStateSpec):
    """Fields of states that do work and then move on."""

    timeout: PositiveDuration | None = Field(
        None, description="Cancel the state's work after this long (error `timeout`)."
    )
    retry: RetryList = Field(
        default_factory=list, description="Retry rules, tried in order.", json_schema_extra=_one_or_many
    )
    catch: list[CatchSpec] = Field(default_factory=list, description="Catch rules, tried in order.")

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        for field, rules in (("retry", self.retry), ("catch", self.catch)):
            for index, rule in enumerate(rules[:-1]):
                if "*" in rule.errors:
                    reporter.report(("states", name, field, index, "errors"), "catch-all-not-last",
                                    f"states.{name}.{field}[{index}]: matches every error ('*'), so the rules after "
                                    "it never apply; move it last")


# -- the machine -----------------------------------------------------------------------------


def _exact_int(value: Any) -> Any:
    """`agentfsm: 1` only: `true` and `1.0` would otherwise pass as 1."""
    return value if type(value) is int else str(value)


def _machine_model() -> tuple[Any, type[LanguageModel]]:
    """The union of every kind's state model, and the machine model holding them (built once kinds are loaded)."""
    from agentfsm.spec.kinds import state_models

    models = tuple(state_models().values())
    any_state = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - a union built at run time

    class MachineSpec(LanguageModel):
        """A machine file."""

        model_config = ConfigDict(title="agentfsm machine")

        agentfsm: Annotated[Literal[1], BeforeValidator(_exact_int)] = Field(
            description="Language version; this release reads 1."
        )
        name: Annotated[str, StringConstraints(min_length=1)] = Field(description="The machine's name.")
        description: str | None = Field(None, description="What the machine does.")
        inputs: dict[Identifier, InputSpec] = Field(default_factory=dict, description="Inputs, checked before a run.")
        context: dict[Identifier, Any] = Field(default_factory=dict,
                                               description="Initial data, merged with the inputs.")
        llms: dict[Identifier, LLMBinding] = Field(default_factory=dict, description="LLM bindings by name.")
        tools: dict[Identifier, ToolBinding] = Field(default_factory=dict, description="Tool bindings by name.")
        initial: StateName = Field(description="The state a run starts in.")
        max_steps: int = Field(1000, ge=1, description="Loop guard: the run fails when it takes more steps.")
        states: dict[StateName, any_state] = Field(  # type: ignore[valid-type]
            min_length=1, description="The states, by name; any text is a valid name."
        )

    MachineSpec.__module__ = __name__
    MachineSpec.__qualname__ = "MachineSpec"
    return any_state, MachineSpec


_LANGUAGE: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`MachineSpec` and `AnyStateSpec` are made on first use: they hold every state kind, and the kinds' modules
    build on this one."""
    if name in ("MachineSpec", "AnyStateSpec"):
        if not _LANGUAGE:
            _LANGUAGE["AnyStateSpec"], _LANGUAGE["MachineSpec"] = _machine_model()
        return _LANGUAGE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    class MachineSpec(LanguageModel):
        """A machine file (the real class is made by `_machine_model`)."""

        agentfsm: int
        name: str
        description: str | None
        inputs: dict[str, InputSpec]
        context: dict[str, Any]
        llms: dict[str, LLMBinding]
        tools: dict[str, ToolBinding]
        initial: str
        max_steps: int
        states: dict[str, StateSpec]

    AnyStateSpec = StateSpec


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the language, as `agentfsm schema` prints it."""
    schema = __getattr__("MachineSpec").model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "agentfsm/machine/v1", **schema}
