"""Compile a validated machine spec into a runtime `StateMachine`; bindings are resolved here, at run start.

Everything kind-specific is the kind's own (`agentfsm.kinds`): this module makes the
bindings, asks each state's kind for its runtime `State`, and adds what every state has
(enter and exit actions, a checkpoint flag, `next:` and transition rules).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any

from agentfsm.bindings.llm import LLMClient
from agentfsm.bindings.llms import make_llm
from agentfsm.bindings.prices import binding_pricer, unpriced_bindings
from agentfsm.bindings.tools import ToolClient, make_tool
from agentfsm.compiler.env import CompileEnv
from agentfsm.compiler.scope import BOXED, CONTEXT_OBJECT, compile_assignments, compile_value, make_scope, rendered
from agentfsm.runtime.budget import Budget
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.loop import before_deadline
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import Event, State, StateContext, StateType
from agentfsm.spec.durations import parse_positive_duration
from agentfsm.spec.expressions import compile_guard
from agentfsm.spec.inputs import check_inputs
from agentfsm.spec.kinds import kinds
from agentfsm.spec.loader import LoadedSpec
from agentfsm.spec.nesting import Including
from agentfsm.spec.overrides import apply_llm_overrides
from agentfsm.spec.models import ActiveStateSpec, RoutedStateSpec, SetAction, StateSpec, TransitionRule

logger = logging.getLogger("agentfsm")


def compile_machine(loaded: LoadedSpec, overrides: Mapping[str, str] | None = None,
                    used: set[str] | None = None, *, llm_clients: Mapping[str, LLMClient] | None = None,
                    tool_clients: Mapping[str, ToolClient] | None = None) -> StateMachine:
    """A runnable machine. Raises BindingError when a binding cannot be set up (a module that does not import).

    `overrides` (`--llm`) switch the LLM bindings of that name here and in every nested machine; `used`
    collects the names some machine has. `llm_clients` and `tool_clients` stand in for this machine's bindings
    of those names (test stubs, a replayed recording): the file's configuration of those is not used, so
    nothing it names is imported or called.
    """
    used = set() if used is None else used
    if overrides:
        known = {name: text for name, text in overrides.items() if name in loaded.spec.llms}
        used.update(known)
        loaded = dataclasses.replace(loaded, spec=apply_llm_overrides(loaded.spec, known))
    spec = loaded.spec
    base_dir = loaded.base_dir
    given_llms = llm_clients or {}
    given_tools = tool_clients or {}
    env = CompileEnv(
        llms={name: given_llms[name] if name in given_llms else make_llm(name, config, base_dir)
              for name, config in spec.llms.items()},
        tools={name: given_tools[name] if name in given_tools else make_tool(name, config, base_dir)
               for name, config in spec.tools.items()},
        base_dir=base_dir, loaded=loaded, overrides=dict(overrides or {}), used=used,
        inline_wait=spec.inline_wait,
    )
    machine = StateMachine(spec.name, description=spec.description, max_steps=spec.max_steps)
    machine.initial_data = copy.deepcopy(spec.context)
    machine.prepare_inputs = functools.partial(check_inputs, spec.inputs, extra=spec.extra_inputs)
    machine.source = loaded
    machine.pricer = binding_pricer(spec.llms)
    if spec.budget is not None:
        machine.budget = Budget(spec.budget.tokens, spec.budget.cost, spec.budget.llm_calls, f"machine '{spec.name}'")
        _warn_unpriced(spec)
    registry = kinds()
    with Including(loaded.path):  # a nested machine including this file again is refused, not compiled for ever
        for name, state_spec in spec.states.items():
            state = registry[state_spec.type].compile(name, state_spec, env)  # type: ignore[attr-defined]
            _add_common(state, name, state_spec)
            machine.add_state(state, initial=name == spec.initial)
            _add_rules(machine, name, state_spec)
    return machine


def _warn_unpriced(spec: Any) -> None:
    """A cost budget cannot count calls it has no price for: say so when the run starts, rather than let the
    budget look enforced."""
    if spec.budget.cost is None:
        return
    for name in unpriced_bindings(spec.llms):
        logger.warning("budget.cost of machine '%s': LLM binding '%s' (model %s) has no price, so its calls count "
                       "as free; give it `price: {input: USD, output: USD}` or add the model to a price file",
                       spec.name, name, getattr(spec.llms[name], "model", None))


def _add_common(state: State, name: str, spec: StateSpec) -> None:
    """What every state has, whatever its kind: the checkpoint flag's type, enter and exit actions."""
    if spec.checkpoint and state.state_type is StateType.PROCESSING:
        state.state_type = StateType.CHECKPOINT
    state.enter_action = _actions(spec.on_enter, f"states.{name}.on_enter")
    state.exit_action = _actions(spec.on_exit, f"states.{name}.on_exit")
    if isinstance(spec, ActiveStateSpec) and spec.output is not None:
        _replace_context_after(state, compile_value(spec.output), f"states.{name}.output")
    if isinstance(spec, ActiveStateSpec) and isinstance(spec.timeout, str):
        _timeout_rendered(state, compile_value(spec.timeout), f"states.{name}.timeout")


def _timeout_rendered(state: State, render: Any, where: str) -> None:
    """A `timeout:` template: rendered at each attempt, the attempt's work (and output) fails with `timeout`
    after that long, as a fixed timeout does."""
    execute = state.execute

    async def execute_before_rendered_deadline(context: StateContext) -> Any:
        value = rendered(render, make_scope(context), where)
        try:
            seconds = parse_positive_duration(value)
        except ValueError as exc:
            raise StateError("template.error", f"{where}: {exc}") from None
        return await before_deadline(execute, state.name, context, seconds)

    state.execute = execute_before_rendered_deadline  # type: ignore[method-assign]


def _replace_context_after(state: State, render: Any, where: str) -> None:
    """`output:`: once the state's work is done, the rendered output becomes the whole context.

    It runs inside the state's attempt, so a failing output is retried and caught like the work.
    """
    execute = state.execute

    async def execute_then_replace(context: StateContext) -> Any:
        outcome = await execute(context)
        result = outcome.result if isinstance(outcome, Event) else None
        value = rendered(render, make_scope(context, result=result), where)
        # plain values: none may stay shared with the context it replaces; a value that is not an object is
        # kept as the context's only key `$` (templates see it as `run.data`)
        value = copy.deepcopy(value) if isinstance(value, dict) else {BOXED: copy.deepcopy(value)}
        if CONTEXT_OBJECT in context.data:  # kept apart from the data the output replaces
            value[CONTEXT_OBJECT] = context.data[CONTEXT_OBJECT]
        context.data.clear()
        context.data.update(value)
        return outcome

    state.execute = execute_then_replace  # type: ignore[method-assign]


def _actions(actions: list[SetAction], where: str) -> Any:
    if not actions:
        return None
    assigners = [compile_assignments(action.set) for action in actions]

    def run_actions(context: StateContext) -> None:
        for assign in assigners:
            context.data.update(rendered(assign, make_scope(context), where))

    return run_actions


def _add_rules(machine: StateMachine, name: str, spec: StateSpec) -> None:
    """`next:` as a rule taking any event (labelled as the kind reads it), then the transition rules in order."""
    if isinstance(spec, RoutedStateSpec) and spec.next is not None:
        machine.add_transition(name, spec.next, label=spec.next_label)
    rules: list[TransitionRule] = getattr(spec, "transitions", [])
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
