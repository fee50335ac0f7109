"""The async runtime: the object model and the step loop. Knows nothing of YAML or storage."""

from agentfsm.runtime.errors import ERROR_TYPES, StateError
from agentfsm.runtime.hooks import StepRecord
from agentfsm.runtime.loop import RunResult, run_machine
from agentfsm.runtime.machine import MachineDefinitionError, StateMachine
from agentfsm.runtime.model import (
    CatchRule,
    Event,
    RetryRule,
    State,
    StateContext,
    StateTransition,
    StateType,
    Transition,
)

__all__ = [
    "ERROR_TYPES", "CatchRule", "Event", "MachineDefinitionError", "RetryRule", "RunResult", "State",
    "StateContext", "StateError", "StateMachine", "StateTransition", "StateType", "StepRecord", "Transition",
    "run_machine",
]
