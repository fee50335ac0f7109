"""A machine as the loop reads it: checked once, then only looked up, shared by every run of the machine.

A plan holds nothing about any run, so many runs of one machine can use it at once. It holds the
machine's rules, not what a state says of itself (its retry, catch or timeout), which the loop
reads from the state at each step: a state changed after a first run is run as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfsm.runtime.errors import MachineDefinitionError, StateError, as_state_error
from agentfsm.runtime.model import Event, StateContext, Transition

if TYPE_CHECKING:
    from agentfsm.runtime.machine import StateMachine


@dataclass(slots=True)
class Route:
    """Where a successful step leads: its event, the next state, and the index of the rule that matched."""

    event: Event
    target: str
    rule: int | None


class Plan:
    """States, rules and callbacks of a machine, arranged for the loop."""

    __slots__ = ("states", "rules", "targets", "entry", "exit", "on_transition")

    def __init__(self, machine: StateMachine) -> None:
        problem = machine.definition_problem()
        if problem is not None:
            raise MachineDefinitionError(problem)
        self.states = machine.states
        self.rules = machine.rules_by_state()
        self.targets = {source: frozenset(rule.target for rule in rules) for source, rules in self.rules.items()}
        self.entry, self.exit, self.on_transition = machine.callbacks()

    def route(self, name: str, context: StateContext, outcome: str | Event | None) -> Route:
        """The event a successful step produced and where it leads; raises StateError when it leads nowhere."""
        if isinstance(outcome, str):
            if outcome not in self.states:
                raise StateError("transition.invalid", f"returned '{outcome}', which is not a state of this machine")
            if name in self.targets and outcome not in self.targets[name]:
                raise StateError("transition.invalid", f"has no transition to '{outcome}'")
            return Route(Event("done"), outcome, None)
        event = outcome if isinstance(outcome, Event) else Event("done", result=outcome)
        rules = self.rules.get(name, ())
        try:
            index = select_rule(rules, context, event)
            if index is not None and rules[index].action is not None:
                rules[index].action(context, event)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - a guard or a rule's `set` failed
            raise as_state_error(exc, name) from None
        if index is None:
            raise StateError("transition.none", f"no transition matches event '{event.name}'")
        return Route(event, rules[index].target, index)


def select_rule(rules: tuple[Transition, ...], context: StateContext, event: Event) -> int | None:
    """The index of the first rule whose trigger accepts the event and whose guard holds."""
    for index, rule in enumerate(rules):
        if rule.accepts(event.name) and (rule.guard is None or rule.guard(context, event)):
            return index
    return None
