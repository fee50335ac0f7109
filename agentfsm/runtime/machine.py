"""`StateMachine`: states, transitions and callbacks, assembled in Python or compiled from YAML."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentfsm.runtime.errors import MachineDefinitionError
from agentfsm.runtime.model import Action, Callback, Guard, State, StateContext, StateType, Transition

__all__ = ["MachineDefinitionError", "StateMachine"]

if TYPE_CHECKING:
    from agentfsm.runtime.budget import Budget, Pricer
    from agentfsm.runtime.loop import RunResult
    from agentfsm.runtime.plan import Plan


class StateMachine:
    """A state machine: add states and transitions, then `await start()` or `await run()`.

    >>> machine = StateMachine("greeter")
    >>> _ = machine.add_state(State("hello"), initial=True)
    >>> _ = machine.add_state(State("bye"), final=True)
    >>> _ = machine.add_transition("hello", "bye")
    """

    def __init__(self, name: str = "machine", *, description: str | None = None, max_steps: int = 1000) -> None:
        self.name = name
        self.description = description
        self.max_steps = max_steps
        self.states: dict[str, State] = {}
        self.initial: str | None = None
        self.current_state: str | None = None
        """The seed's convenience: the state the most recent run driven by `start()` was last in.
        The loop never reads it: each run's position belongs to its own context."""
        self.observers: list[object] = []
        """Observers attached to every run of this machine (see `agentfsm.runtime.observers`)."""
        self.initial_data: dict[str, Any] = {}
        """Context data every run starts from (a YAML machine's `context:`); copied per run."""
        self.prepare_inputs: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
        """Checks run inputs and fills defaults (set by the YAML compiler); None accepts any inputs."""
        self.budget: Budget | None = None
        """Limits on what a run of this machine spends on LLM calls (see `agentfsm.runtime.budget`)."""
        self.pricer: Pricer | None = None
        """What one LLM call of this machine costs in USD (set by the YAML compiler from the price table)."""
        self.source: Any = None
        """What the machine was compiled from (a `LoadedSpec` for a YAML file), for diagrams and the store."""
        self._rules: dict[str, list[Transition]] = {}
        self._entry: dict[str, list[Callback]] = {}
        self._exit: dict[str, list[Callback]] = {}
        self._on_transition: list[Callback] = []
        self._plan: Plan | None = None
        self._context: StateContext | None = None

    # -- building -------------------------------------------------------------------------

    def add_state(self, state: State, initial: bool = False, final: bool = False) -> State:
        if state.name in self.states:
            raise MachineDefinitionError(f"state '{state.name}' is already defined")
        if final and state.state_type not in (StateType.FINAL, StateType.ERROR):
            state.state_type = StateType.FINAL
        if initial:
            if self.initial is not None and self.initial != state.name:
                raise MachineDefinitionError(f"initial state is already '{self.initial}'")
            self.initial = state.name
            if state.state_type is StateType.PROCESSING:
                state.state_type = StateType.INITIAL
        self.states[state.name] = state
        self._plan = None
        return state

    def add_transition(
        self,
        from_state: str,
        to_state: str,
        trigger: str | Iterable[str] | None = None,
        *,
        guard: Guard | None = None,
        action: Action | None = None,
        label: str | None = None,
    ) -> Transition:
        """Add a rule; rules from one state are tried in the order they were added.

        `trigger` None accepts any event; `guard(context, event)` must return true for the rule to be taken.
        """
        normalized = trigger if trigger is None or isinstance(trigger, str) else tuple(trigger)
        rule = Transition(from_state, to_state, normalized, guard, action, label)
        self._rules.setdefault(from_state, []).append(rule)
        self._plan = None
        return rule

    def add_entry_callback(self, state: str, callback: Callback) -> None:
        """`callback(state_name, context)` runs when `state` is entered (sync or async)."""
        self._entry.setdefault(state, []).append(callback)

    def add_exit_callback(self, state: str, callback: Callback) -> None:
        """`callback(state_name, context)` runs when `state` is left (sync or async)."""
        self._exit.setdefault(state, []).append(callback)

    def add_transition_callback(self, callback: Callback) -> None:
        """`callback(transition: StateTransition, context)` runs after every transition (sync or async)."""
        self._on_transition.append(callback)

    def add_observer(self, observer: object) -> None:
        """Attach an observer to every run of this machine (see `agentfsm.runtime.observers`)."""
        self.observers.append(observer)

    # -- reading --------------------------------------------------------------------------

    def transitions_from(self, state: str) -> tuple[Transition, ...]:
        return tuple(self._rules.get(state, ()))

    def rules_by_state(self) -> dict[str, tuple[Transition, ...]]:
        return {name: tuple(rules) for name, rules in self._rules.items()}

    def callbacks(self) -> tuple[dict[str, list[Callback]], dict[str, list[Callback]], list[Callback]]:
        return self._entry, self._exit, self._on_transition

    def get_possible_transitions(self, state: str | None = None) -> list[Transition]:
        """The rules leading out of `state` (default: the current state, else the initial one)."""
        name = state or self.current_state or self.initial
        return list(self._rules.get(name or "", ()))

    def can_transition_to(self, target: str, from_state: str | None = None) -> bool:
        return any(rule.target == target for rule in self.get_possible_transitions(from_state))

    def check(self) -> None:
        """Raise MachineDefinitionError if the machine cannot run."""
        self.plan()

    def plan(self) -> Plan:
        """What a run needs to know about this machine, checked and computed once (until the machine changes)."""
        if self._plan is None:
            from agentfsm.runtime.plan import Plan

            self._plan = Plan(self)
        return self._plan

    def definition_problem(self) -> str | None:
        """Why the machine cannot run, or None."""
        if not self.states:
            return f"machine '{self.name}' has no states"
        if self.initial is None:
            return f"machine '{self.name}' has no initial state (add_state(..., initial=True))"
        for source, rules in self._rules.items():
            if source not in self.states:
                return f"transition from unknown state '{source}'"
            for rule in rules:
                if rule.target not in self.states:
                    return f"transition from '{source}' to unknown state '{rule.target}'"
        for state in self.states.values():
            for catch in state.catch:
                if catch.target not in self.states:
                    return f"catch of '{state.name}' goes to unknown state '{catch.target}'"
        return None

    # -- running --------------------------------------------------------------------------

    def new_context(self, inputs: Mapping[str, Any] | None = None) -> StateContext:
        """A fresh context: the machine's initial data, with checked inputs on top."""
        data = copy.deepcopy(self.initial_data)
        if self.prepare_inputs is not None:
            data.update(self.prepare_inputs(inputs or {}))
        elif inputs:
            data.update(inputs)
        return StateContext(data, metadata={"machine": self.name})

    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        context: StateContext | None = None,
        observers: Iterable[object] = (),
        run_id: str | None = None,
    ) -> RunResult:
        """Run to the end and report how it ended (status, output, error, usage).

        Any number of runs of one machine may go on at once: each run's position is its context's.
        """
        from agentfsm.runtime.loop import run_machine

        if context is None:
            context = self.new_context(inputs)
        elif inputs:
            context.update(self.prepare_inputs(inputs) if self.prepare_inputs is not None else inputs)
        return await run_machine(self, context, observers=observers, run_id=run_id)

    @property
    def context(self) -> StateContext:
        """The seed's convenience: the context `start()` runs next, then the one the most recent `start()` ran."""
        if self._context is None:
            self._context = StateContext(copy.deepcopy(self.initial_data), metadata={"machine": self.name})
        return self._context

    @context.setter
    def context(self, value: StateContext) -> None:
        self._context = value

    async def start(self, context: StateContext | Mapping[str, Any] | None = None) -> StateContext:
        """Run to the end and return the final context (its `metadata` says `status` and `error`).

        Without an argument it runs `machine.context` when that has not run yet (data a caller
        set on it is kept), else a fresh context. Afterwards `machine.context` is the context
        it ran and `machine.current_state` the state the run was last in.
        """
        if isinstance(context, StateContext):
            chosen = context
        elif context is not None:
            chosen = self.new_context(context)
        elif self._context is not None and self._context.state is None and self._context.step == 0:
            chosen = self._context
        else:
            chosen = self.new_context()
        result = await self.run(context=chosen)
        self._context = result.context
        self.current_state = result.context.state
        return result.context

    def visualize(self, **options: Any) -> str:
        """Mermaid stateDiagram-v2 source for this machine."""
        from agentfsm.diagram.mermaid import render
        from agentfsm.runtime.diagram import graph_from_machine

        return render(graph_from_machine(self), **options)

    def __repr__(self) -> str:
        return f"StateMachine({self.name!r}, states={len(self.states)}, initial={self.initial!r})"
