"""The errors a front end shows a person as one line (with a documented exit code), gathered in one place.

Everything else that escapes an operation is a bug in agentfsm. Importing this module is cheap (no
pydantic, no Jinja2, no database): a front end catches these before it knows which command runs.
"""

from __future__ import annotations

from agentfsm.bindings.imports import BindingError
from agentfsm.history.errors import RunRefused
from agentfsm.runtime.errors import MachineDefinitionError
from agentfsm.spec.problems import InputError, MachineFileError, Problem
from agentfsm.store.base import Conflict, LeaseHeld, RunMoved, RunNotFound, StoreError

__all__ = [
    "USER_ERRORS", "BindingError", "Conflict", "InputError", "LeaseHeld", "MachineDefinitionError",
    "MachineFileError", "Problem", "RunMoved", "RunNotFound", "RunRefused", "StoreError",
]

USER_ERRORS: tuple[type[Exception], ...] = (InputError, BindingError, MachineDefinitionError, StoreError)
"""Bad input of any kind: a machine or inputs that do not fit, a binding that cannot be set up, a store
that cannot be used, a request the run refuses (RunRefused, Conflict and RunNotFound are StoreErrors)."""
