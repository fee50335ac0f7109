"""The YAML machine language (v1) as pydantic models.

These models are the single source of truth for the language: the loader validates
with them, `schemas/machine.schema.json` is generated from them, and so are the
field tables in `docs/reference.md`. Field descriptions are written for users.
"""

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Literal,
    NamedTuple,
    Protocol,
    Union,
)

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from agentfsm.spec.binding_models import (  # noqa: F401 - the language's models are all found here
    BUILTINS,
    HTTP_METHODS,
    PROVIDERS,
    AnthropicLLM,
    BuiltinTool,
    CommandTool,
    EnvValue,
    HostedLLM,
    HttpTool,
    LLMBinding,
    OpenAILLM,
    PythonTool,
    ScriptedLLM,
    ScriptedReply,
    ScriptedToolCall,
    ToolBinding,
    ToolParameters,
    UnboundTool,
)
from agentfsm.spec.budget import BUDGET_HELP, BudgetSpec
from agentfsm.spec.fields import (  # noqa: F401
    GUARD,
    IDENTIFIER_PATTERN,
    LANGUAGE_VERSION,
    PYTHON_REF_PATTERN,
    TEMPLATE_KEY,
    TEXT_TEMPLATE,
    VALUE_TEMPLATE,
    Duration,
    EventNames,
    Identifier,
    LanguageModel,
    PositiveDuration,
    PythonRef,
    StateName,
    Timer,
    as_list,
)

# -- inputs ----------------------------------------------------------------------------------

InputType = Literal["string", "integer", "number", "boolean", "array", "object", "any"]


class InputSpec(LanguageModel):
    """An input of the machine, checked before the run starts."""

    type: InputType = Field("any", description="JSON type the value must have.")
    required: bool = Field(False, description="The run refuses to start without it.")
    default: Any = Field(None, description="Value used when the input is not given.")
    description: str | None = Field(None, description="What the input means, for people reading the machine.")
    enum: list[Any] | None = Field(None, description="The value must be one of these.")


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


RetryList = Annotated[list[RetrySpec], BeforeValidator(as_list)]


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
    succeeds: ClassVar[bool] = False
    """A state of this kind ends the run successfully (a `final` state)."""
    assigns_freely: ClassVar[bool] = False
    """A state of this kind runs the user's code, which may assign any context key."""
    suspends: ClassVar[bool] = False
    """A state of this kind may suspend the run until an outside event (so a cycle through it is bounded by people)."""

    description: str | None = Field(None, description="What the state is for, for people reading the machine.")
    on_enter: list[SetAction] = Field(default_factory=list, description="Actions run when the state is entered.")
    on_exit: list[SetAction] = Field(default_factory=list, description="Actions run when the state is left.")
    checkpoint: bool = Field(False, description="Name a checkpoint just before this state runs, on each visit: NAME, then NAME#2...")
    max_visits: int | None = Field(None, ge=1, description="Fail the run if the state is entered more often.")

    diagram_choice: ClassVar[bool] = False
    """A diagram draws a state of this kind as a choice node (it only routes)."""

    @property
    def is_terminal(self) -> bool:
        return self.terminal

    def diagram_label(self, name: str) -> str:
        """How a diagram names the state (a kind may add to its name: a map its concurrency)."""
        return name

    def diagram_notes(self) -> list[str]:
        """What a diagram shows under the state's name: what the kind binds or waits for (`llm: brain`)."""
        return []

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

    timeout: Timer | None = Field(
        None, description="Cancel the state's work after this long (error `timeout`); a template is rendered when "
        "the state starts and gives seconds or a duration text.", json_schema_extra={TEMPLATE_KEY: "value"},
    )
    retry: RetryList = Field(
        default_factory=list, description="Retry rules, tried in order.", json_schema_extra=_one_or_many
    )
    catch: list[CatchSpec] = Field(default_factory=list, description="Catch rules, tried in order.")
    output: Any = Field(
        None, description="Value template of the state's output (sees `result`, and `run.data`, the whole context): "
        "after the state's work its value replaces the whole context (as Amazon States Language's "
        "`ResultPath`/`OutputPath` do); a value that is not an object is kept as the key `$`, and `run.data` "
        "shows it. Omitted: the context is kept, with what the state saved.",
        json_schema_extra=VALUE_TEMPLATE,
    )

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
        extra_inputs: bool = Field(
            False, description="Accept inputs `inputs:` does not declare (any JSON object, as Step Functions' "
            "StartExecution does); they enter the context as given, and templates read them through `run.data`.",
        )
        context: dict[Identifier, Any] = Field(default_factory=dict,
                                               description="Initial data, merged with the inputs.")
        llms: dict[Identifier, LLMBinding] = Field(default_factory=dict, description="LLM bindings by name.")
        tools: dict[Identifier, ToolBinding] = Field(default_factory=dict, description="Tool bindings by name.")
        initial: StateName = Field(description="The state a run starts in.")
        max_steps: int = Field(1000, ge=1, description="Loop guard: the run fails when it takes more steps.")
        budget: BudgetSpec | None = Field(None, description=BUDGET_HELP)
        breakpoints: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
            default_factory=list, description="Pause every run before it enters these states: `STATE`, or "
            "`STATE:GUARD` to pause only when the guard (an expression over the context) holds; the run is left "
            "`paused` for `agentfsm resume` (see docs/observability.md).",
        )
        inline_wait: Duration = Field(
            60.0, description="A `wait` that is only a timer sleeps in the run's process when it is due within "
            "this long; a longer one suspends the run durably and `agentfsm worker` resumes it when due.",
        )
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
        extra_inputs: bool
        context: dict[str, Any]
        llms: dict[str, LLMBinding]
        tools: dict[str, ToolBinding]
        initial: str
        max_steps: int
        budget: BudgetSpec | None
        breakpoints: list[str]
        inline_wait: float
        states: dict[str, StateSpec]

    AnyStateSpec = StateSpec


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the language, as `agentfsm schema` prints it."""
    schema = __getattr__("MachineSpec").model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "agentfsm/machine/v1", **schema}
