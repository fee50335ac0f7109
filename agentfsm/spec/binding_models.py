"""LLM and tool bindings as the language writes them (`llms:` and `tools:` of a machine file)."""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from agentfsm.spec.expressions import is_template
from agentfsm.spec.fields import (
    TEXT_TEMPLATE,
    VALUE_TEMPLATE,
    Identifier,
    LanguageModel,
    PositiveDuration,
    PythonRef,
)

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


class PriceSpec(LanguageModel):
    """What a binding's calls cost, in USD per million tokens (over the shipped price table)."""

    input: float = Field(ge=0, description="USD per million input (prompt) tokens.")
    output: float = Field(ge=0, description="USD per million output (completion) tokens.")


PRICE_HELP = ("USD per million input and output tokens of this binding's calls, over the price table "
              "(docs/observability.md, Metrics and cost); without it and without a listed model, tokens are shown "
              "without cost.")


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
    price: PriceSpec | None = Field(None, description=PRICE_HELP)


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
    price: PriceSpec | None = Field(None, description=PRICE_HELP)


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
    options: list[int] = Field(
        default_factory=list,
        description="Positions in `command:` (0 is the program) of the templates whose value may start with `-`. "
        "Any other templated item whose value starts with `-` is refused (`tool.bad_arguments`), unless it "
        "comes after a literal `--`: data must not choose a program's options (`-oFILE` makes `sort` write a file).",
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

    @model_validator(mode="after")
    def _options_name_templates(self) -> CommandTool:
        for position in self.options:
            if not 0 < position < len(self.command) or not is_template(self.command[position]):
                raise ValueError(f"options: {position} is not the position of a template in command "
                                 f"(1 to {len(self.command) - 1})")
        return self


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


class UnboundTool(LanguageModel):
    """A tool that stands for something with no local meaning yet (such as a Step Functions task's `Resource`,
    written by `agentfsm import`): calling it fails with `tool.unbound`, naming what to bind it to."""

    unbound: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="What the tool stands for (an ARN, a function name); shown in the `tool.unbound` error."
    )
    description: str | None = Field(None, description="What the tool does.")


def _tool_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in ("builtin", "python", "command", "http", "unbound"):
            if kind in value:
                return kind
        return None
    return getattr(value, "kind", None)


ToolBinding = Annotated[
    Annotated[BuiltinTool, Tag("builtin")] | Annotated[PythonTool, Tag("python")]
    | Annotated[CommandTool, Tag("command")] | Annotated[HttpTool, Tag("http")]
    | Annotated[UnboundTool, Tag("unbound")],
    Discriminator(
        _tool_kind,
        custom_error_type="tool_kind",
        custom_error_message="a tool needs one of the keys builtin:, python:, command:, http:, unbound:",
    ),
]
