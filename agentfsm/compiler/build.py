"""Compile a validated machine spec into a runtime `StateMachine`; bindings are resolved here, at run start."""

from __future__ import annotations

import copy
import functools
import inspect
from pathlib import Path
from typing import Any

from agentfsm.bindings.imports import BindingError, import_reference
from agentfsm.bindings.llm import LLMClient, make_reply_schema
from agentfsm.bindings.llms import make_llm
from agentfsm.bindings.tools import ToolClient, make_tool
from agentfsm.compiler.scope import compile_assignments, make_scope, rendered
from agentfsm.compiler.states import ChoiceState, FailState, FinalState, LlmState, SetState, ToolState, WaitState
from agentfsm.runtime.errors import describe_exception
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import CatchRule, Event, RetryRule, State, StateContext, StateType
from agentfsm.spec.expressions import compile_guard
from agentfsm.spec.inputs import check_inputs
from agentfsm.spec.loader import LoadedSpec
from agentfsm.spec.models import (
    ActiveStateSpec,
    ChoiceStateSpec,
    FailStateSpec,
    FinalStateSpec,
    LlmStateSpec,
    PythonStateSpec,
    RoutedStateSpec,
    SetStateSpec,
    StateSpec,
    ToolStateSpec,
    TransitionRule,
    WaitStateSpec,
)


def compile_machine(loaded: LoadedSpec) -> StateMachine:
    """A runnable machine. Raises BindingError when a binding cannot be set up (a module that does not import)."""
    spec = loaded.spec
    base_dir = loaded.base_dir
    llms: dict[str, LLMClient] = {name: make_llm(name, cfg, base_dir) for name, cfg in spec.llms.items()}
    tools: dict[str, ToolClient] = {name: make_tool(name, cfg, base_dir) for name, cfg in spec.tools.items()}

    machine = StateMachine(spec.name, description=spec.description, max_steps=spec.max_steps)
    machine.initial_data = copy.deepcopy(spec.context)
    machine.prepare_inputs = functools.partial(check_inputs, spec.inputs)
    machine.source = loaded
    for name, state_spec in spec.states.items():
        state = _build_state(name, state_spec, llms, tools, base_dir)
        machine.add_state(state, initial=name == spec.initial)
        _add_rules(machine, name, state_spec)
    return machine


def _common_options(spec: StateSpec) -> dict[str, Any]:
    options: dict[str, Any] = {"description": spec.description, "max_visits": spec.max_visits,
                               "checkpoint": spec.checkpoint}
    if isinstance(spec, ActiveStateSpec):
        options["timeout"] = spec.timeout
        options["retry"] = [
            RetryRule(tuple(r.errors), r.interval, r.max_attempts, r.backoff_rate, r.max_delay, r.jitter)
            for r in spec.retry
        ]
        options["catch"] = [CatchRule(tuple(c.errors), c.to, c.as_) for c in spec.catch]
    return options


def _build_state(
    name: str, spec: StateSpec, llms: dict[str, LLMClient], tools: dict[str, ToolClient], base_dir: Path
) -> State:
    options = _common_options(spec)
    state: State
    if isinstance(spec, SetStateSpec):
        state = SetState(name, spec.set, **options)
    elif isinstance(spec, ChoiceStateSpec):
        state = ChoiceState(name, **options)
    elif isinstance(spec, LlmStateSpec):
        schema = (make_reply_schema(spec.schema_, base_dir, f"states.{name}.schema")
                  if spec.schema_ is not None else None)
        state = LlmState(name, llms[spec.llm], prompt=spec.prompt, system=spec.system, parse=spec.parse,
                         save=spec.save, emit=spec.emit, schema=schema, parse_retries=spec.reply_retries,
                         tools=[tools[tool] for tool in spec.tools], max_tool_rounds=spec.max_tool_rounds,
                         **options)
    elif isinstance(spec, ToolStateSpec):
        state = ToolState(name, tools[spec.tool], args=spec.args, save=spec.save, emit=spec.emit, **options)
    elif isinstance(spec, PythonStateSpec):
        state = _user_state(name, spec, base_dir, options)
    elif isinstance(spec, WaitStateSpec):
        state = WaitState(name, events=spec.event, wait_timeout=spec.timeout, save=spec.save, **options)
    elif isinstance(spec, FinalStateSpec):
        state = FinalState(name, spec.output, **options)
    elif isinstance(spec, FailStateSpec):
        state = FailState(name, spec.error, **options)
    else:  # pragma: no cover - the models' union is closed
        raise TypeError(f"no compiler for {type(spec).__name__}")
    if spec.checkpoint and state.state_type is StateType.PROCESSING:
        state.state_type = StateType.CHECKPOINT
    state.enter_action = _actions(spec.on_enter, f"states.{name}.on_enter")
    state.exit_action = _actions(spec.on_exit, f"states.{name}.on_exit")
    return state


def _user_state(name: str, spec: PythonStateSpec, base_dir: Path, options: dict[str, Any]) -> State:
    where = f"states.{name}.call"
    cls = import_reference(spec.call, base_dir, where)
    if not (isinstance(cls, type) and issubclass(cls, State)):
        raise BindingError(f"{where}: '{spec.call}' is not a subclass of agentfsm.State")
    if not inspect.iscoroutinefunction(cls.execute):
        raise BindingError(f"{where}: {spec.call}.execute must be 'async def'")
    try:
        state = cls(name)
    except Exception as exc:  # noqa: BLE001 - the user's constructor failed
        raise BindingError(f"{where}: {spec.call}({name!r}) raised {describe_exception(exc)}") from None
    written = spec.model_fields_set  # settings the YAML leaves out stay as the class made them
    for key, value in options.items():
        if key in written:
            setattr(state, key, tuple(value) if isinstance(value, list) else value)
    return state


def _actions(actions: list[Any], where: str) -> Any:
    if not actions:
        return None
    assigners = [compile_assignments(action.set) for action in actions]

    def run_actions(context: StateContext) -> None:
        for assign in assigners:
            context.data.update(rendered(assign, make_scope(context), where))

    return run_actions


def _add_rules(machine: StateMachine, name: str, spec: StateSpec) -> None:
    if isinstance(spec, RoutedStateSpec) and spec.next is not None:
        label = spec.next_label if isinstance(spec, WaitStateSpec) else "done"
        machine.add_transition(name, spec.next, label=label)
    rules: list[TransitionRule] = spec.transitions if isinstance(spec, RoutedStateSpec | ChoiceStateSpec) else []
    for index, rule in enumerate(rules):
        where = f"states.{name}.transitions[{index}]"
        machine.add_transition(
            name,
            rule.to,
            tuple(rule.event) if rule.event else None,
            guard=_guard(rule.when, where) if rule.when is not None else None,
            action=_rule_action(rule.set, where) if rule.set else None,
            label=rule.label,
        )


def _guard(source: str, where: str) -> Any:
    expression = compile_guard(source)

    def guard(context: StateContext, event: Event) -> bool:
        return bool(rendered(expression.render, make_scope(context, event, event.result), f"{where}.when"))

    return guard


def _rule_action(values: dict[str, Any], where: str) -> Any:
    assign = compile_assignments(values)

    def action(context: StateContext, event: Event) -> None:
        context.data.update(rendered(assign, make_scope(context, event, event.result), f"{where}.set"))

    return action

