"""The seed's Python vocabulary: the names the mission's code and tests use, over agentfsm's runtime.

`from agentfsm.seed import ...` gives the runtime's object model (`State`, `StateMachine`,
`StateContext`, `StateType`, `StateTransition`), the agent states and
`create_agent_state_machine`, and the persistence and history names (`StatePersistence`,
`AutoSaveStateMachine`, `VersionedStateMachine`, `StateHistory`, `StateSnapshot`,
`DiffTracker`), the debugger (`StateDebugger`), thin shells over the runtime and the store. Nothing here is a second
runtime: these are the same objects a YAML machine compiles into, and the same runs
`agentfsm history` reads.
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
from agentfsm.seed.debugging import StateDebugger
from agentfsm.seed.coordination import (
    AgentMessage,
    CoordinatedAgent,
    CoordinationStrategy,
    MessageBus,
    MultiAgentCoordinator,
    SharedMemory,
    SharedResource,
)
from agentfsm.seed.diffs import DiffTracker
from agentfsm.seed.snapshots import StateHistory, StateSnapshot
from agentfsm.seed.versioned import VersionedStateMachine

__all__ = [
    "ActingState",
    "Agent",
    "AgentMessage",
    "CoordinatedAgent",
    "CoordinationStrategy",
    "MessageBus",
    "MultiAgentCoordinator",
    "SharedMemory",
    "SharedResource",
    "StateDebugger",
    "AgentState",
    "AutoSaveStateMachine",
    "DiffTracker",
    "ErrorRecoveryState",
    "ErrorState",
    "FinalizingState",
    "InitialState",
    "ObservingState",
    "PlanningState",
    "ReflectingState",
    "State",
    "StateContext",
    "StateHistory",
    "StateMachine",
    "StatePersistence",
    "StateSnapshot",
    "StateTransition",
    "StateType",
    "ThinkingState",
    "VersionedStateMachine",
    "create_agent_state_machine",
]
