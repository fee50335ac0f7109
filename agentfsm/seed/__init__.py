"""The seed's Python vocabulary: the names the mission's code and tests use, over agentfsm's runtime.

`from agentfsm.seed import ...` gives the runtime's object model (`State`, `StateMachine`,
`StateContext`, `StateType`, `StateTransition`), the agent states and
`create_agent_state_machine`, and the persistence and history names (placeholders until
they land with the async store). Nothing here is a second runtime: these are the same
objects a YAML machine compiles into.
"""

from __future__ import annotations

from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import State, StateContext, StateTransition, StateType
from agentfsm.seed.agent_states import (
    ActingState,
    Agent,
    AgentState,
    ErrorRecoveryState,
    ErrorState,
    FinalizingState,
    InitialState,
    ObservingState,
    PlanningState,
    ReflectingState,
    ThinkingState,
    create_agent_state_machine,
)
from agentfsm.history.persistence import StatePersistence
from agentfsm.seed.autosave import AutoSaveStateMachine
from agentfsm.seed.pending import VersionedStateMachine

__all__ = [
    "ActingState",
    "Agent",
    "AgentState",
    "AutoSaveStateMachine",
    "ErrorRecoveryState",
    "ErrorState",
    "FinalizingState",
    "InitialState",
    "ObservingState",
    "PlanningState",
    "ReflectingState",
    "State",
    "StateContext",
    "StateMachine",
    "StatePersistence",
    "StateTransition",
    "StateType",
    "ThinkingState",
    "VersionedStateMachine",
    "create_agent_state_machine",
]
