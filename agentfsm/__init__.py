"""agentfsm: declarative YAML state machines for LLM agents.

    >>> import asyncio, agentfsm
    >>> result = asyncio.run(agentfsm.run("machines/hello.yaml", {"name": "Ada"}))
    >>> result.output
    'Hello, Ada!'

Names are imported on first use, so `agentfsm --help` and `agentfsm validate` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "StateMachine": "agentfsm.runtime.machine",
    "MachineDefinitionError": "agentfsm.runtime.machine",
    "State": "agentfsm.runtime.model",
    "StateContext": "agentfsm.runtime.model",
    "StateTransition": "agentfsm.runtime.model",
    "StateType": "agentfsm.runtime.model",
    "Event": "agentfsm.runtime.model",
    "RetryRule": "agentfsm.runtime.model",
    "CatchRule": "agentfsm.runtime.model",
    "StateError": "agentfsm.runtime.errors",
    "RunResult": "agentfsm.runtime.loop",
    "Observers": "agentfsm.runtime.observers",
    "RunEvent": "agentfsm.runtime.events",
    "RunStarted": "agentfsm.runtime.events",
    "StepStarted": "agentfsm.runtime.events",
    "StepEnded": "agentfsm.runtime.events",
    "TransitionTaken": "agentfsm.runtime.events",
    "ErrorRaised": "agentfsm.runtime.events",
    "RetryScheduled": "agentfsm.runtime.events",
    "LLMCallStarted": "agentfsm.runtime.events",
    "LLMCallEnded": "agentfsm.runtime.events",
    "ToolCallStarted": "agentfsm.runtime.events",
    "ToolCallEnded": "agentfsm.runtime.events",
    "TokenReceived": "agentfsm.runtime.events",
    "WaitStarted": "agentfsm.runtime.events",
    "RunPaused": "agentfsm.runtime.events",
    "RunEnded": "agentfsm.runtime.events",
    "LLMCallRecord": "agentfsm.runtime.calls",
    "ToolCallRecord": "agentfsm.runtime.calls",
    "load_machine": "agentfsm.service.machines",
    "run": "agentfsm.api",
    "validate_file": "agentfsm.spec.loader",
    "MachineFileError": "agentfsm.spec.problems",
    "Problem": "agentfsm.spec.problems",
    "InputError": "agentfsm.spec.problems",
    "BindingError": "agentfsm.bindings.imports",
    "Runs": "agentfsm.service.runs",
    "StateDebugger": "agentfsm.seed.debugging",
    "RunHandle": "agentfsm.service.handle",
    "RunRefused": "agentfsm.history.errors",
    "Rollback": "agentfsm.history.rewrite",
    "StatePersistence": "agentfsm.history.persistence",
    "open_store": "agentfsm.store",
    "StoreError": "agentfsm.store.base",
    "Store": "agentfsm.store.core",
    "LeaseHeld": "agentfsm.store.base",
    "RunMoved": "agentfsm.store.base",
    "Conflict": "agentfsm.store.base",
    "RunNotFound": "agentfsm.store.base",
    "Delivery": "agentfsm.runtime.waiting",
    "StateMonitor": "agentfsm.service.monitor",
    "StateMetrics": "agentfsm.observability.metrics",
    "Budget": "agentfsm.runtime.budget",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentfsm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from agentfsm.api import run
    from agentfsm.bindings.imports import BindingError
    from agentfsm.history.persistence import StatePersistence
    from agentfsm.service.machines import load_machine
    from agentfsm.history.errors import RunRefused
    from agentfsm.history.rewrite import Rollback
    from agentfsm.service.handle import RunHandle
    from agentfsm.service.monitor import StateMonitor
    from agentfsm.service.runs import Runs
    from agentfsm.seed.debugging import StateDebugger
    from agentfsm.runtime.errors import StateError
    from agentfsm.runtime.calls import LLMCallRecord, ToolCallRecord
    from agentfsm.runtime.events import (
        ErrorRaised,
        LLMCallEnded,
        LLMCallStarted,
        RetryScheduled,
        RunEnded,
        RunEvent,
        RunPaused,
        RunStarted,
        StepEnded,
        StepStarted,
        TokenReceived,
        ToolCallEnded,
        ToolCallStarted,
        TransitionTaken,
        WaitStarted,
    )
    from agentfsm.runtime.observers import Observers
    from agentfsm.runtime.loop import RunResult
    from agentfsm.runtime.machine import MachineDefinitionError, StateMachine
    from agentfsm.runtime.model import (
        CatchRule,
        Event,
        RetryRule,
        State,
        StateContext,
        StateTransition,
        StateType,
    )
    from agentfsm.spec.loader import validate_file
    from agentfsm.runtime.waiting import Delivery
    from agentfsm.spec.problems import InputError, MachineFileError, Problem
    from agentfsm.store import open_store
    from agentfsm.store.base import Conflict, LeaseHeld, RunMoved, RunNotFound, StoreError
    from agentfsm.store.core import Store
    from agentfsm.observability.metrics import StateMetrics
    from agentfsm.runtime.budget import Budget
