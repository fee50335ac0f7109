"""`type: python`: run a user's `State` subclass; its `execute` returns the next state's name, an Event, or None."""

from __future__ import annotations

import inspect
from typing import ClassVar, Literal

from pydantic import Field

from agentfsm.bindings.imports import BindingError, import_reference
from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.runtime.errors import describe_exception
from agentfsm.runtime.model import State
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import ActiveStateSpec, PythonRef


class PythonStateSpec(ActiveStateSpec):
    """Run a user's `State` subclass; its `execute` returns the next state's name, an Event, or None."""

    routes_itself: ClassVar[bool] = True
    assigns_freely: ClassVar[bool] = True

    type: Literal["python"]
    call: PythonRef = Field(description="`module:StateSubclass`; the machine file's folder is searched first.")

    def diagram_notes(self) -> list[str]:
        return [f"python: {self.call}"]


def compile_python(name: str, spec: PythonStateSpec, env: CompileEnv) -> State:
    """An instance of the user's class, with the options the YAML writes (others stay as the class made them)."""
    where = f"states.{name}.call"
    cls = import_reference(spec.call, env.base_dir, where)
    if not (isinstance(cls, type) and issubclass(cls, State)):
        raise BindingError(f"{where}: '{spec.call}' is not a subclass of agentfsm.State")
    if not inspect.iscoroutinefunction(cls.execute):
        raise BindingError(f"{where}: {spec.call}.execute must be 'async def'")
    try:
        state = cls(name)
    except Exception as exc:  # noqa: BLE001 - the user's constructor failed
        raise BindingError(f"{where}: {spec.call}({name!r}) raised {describe_exception(exc)}") from None
    written = spec.model_fields_set
    for key, value in state_options(spec).items():
        if key in written:
            setattr(state, key, tuple(value) if isinstance(value, list) else value)
    return state


KIND = register(Kind("python", PythonStateSpec, compile_python))
