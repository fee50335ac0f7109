"""Tool bindings: the interface, the builtins, Python functions, and programs (`command.py`)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import to_jsonable_python

from agentfsm.bindings.calculator import CalculatorError, evaluate
from agentfsm.bindings.command import CommandToolClient
from agentfsm.bindings.imports import BindingError, import_reference
from agentfsm.runtime.errors import StateError, describe_exception
from agentfsm.spec.models import BuiltinTool, CommandTool, PythonTool


class ToolClient(Protocol):
    """A tool bound to a name under `tools:`. Failures raise StateError with a `tool.*` type."""

    name: str

    async def call(self, args: Mapping[str, Any]) -> Any: ...


class CalculatorTool:
    """`builtin: calculator`: evaluates `expression` with a safe arithmetic parser (no eval)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def call(self, args: Mapping[str, Any]) -> Any:
        unexpected = set(args) - {"expression"}
        if "expression" not in args or unexpected:
            raise StateError("tool.error", "calculator takes exactly one argument, 'expression'",
                             detail={"tool": self.name, "args": sorted(args)})
        try:
            value = evaluate(args["expression"])
        except CalculatorError as exc:
            raise StateError("tool.error", f"calculator: {exc}", detail={"tool": self.name}) from None
        if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return int(value)
        return value


async def _in_daemon_thread(function: Callable[..., Any], args: Mapping[str, Any]) -> Any:
    """Call a sync function in its own daemon thread.

    Not `asyncio.to_thread`: the default executor's threads are joined when the loop and the
    interpreter shut down, so a call abandoned on `timeout` (Python cannot stop a thread) would
    keep the process alive until the function returned. A daemon thread is left behind instead.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled by a timeout: nobody waits for the result
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def work() -> None:
        value, error = None, None
        try:
            value = context.run(function, **args)
        except StopIteration as exc:  # a Future refuses StopIteration
            error = RuntimeError(f"StopIteration: {exc}")
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop is closed: the run has ended

    threading.Thread(target=work, name=f"agentfsm-tool-{getattr(function, '__name__', 'call')}", daemon=True).start()
    return await future


class PythonFunctionTool:
    """`python: module:function`: called with the args as keywords; sync functions run in a worker thread."""

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name = name
        self.function = function
        self.is_async = inspect.iscoroutinefunction(function)

    async def call(self, args: Mapping[str, Any]) -> Any:
        try:
            if self.is_async:
                value = await self.function(**args)
            else:
                value = await _in_daemon_thread(self.function, args)
        except StateError:
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling() > 0:  # cancelled by a timeout or the caller
                raise
            raise StateError("tool.error", describe_exception(exc), detail={"tool": self.name}) from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's tool failed: a taxonomy error
            raise StateError("tool.error", describe_exception(exc), detail={"tool": self.name}) from None
        return to_jsonable_python(value, fallback=str)


def make_tool(name: str, binding: BuiltinTool | PythonTool | CommandTool, base_dir: Path | None) -> ToolClient:
    """The client for one binding, set up at run start; raises BindingError when it cannot be."""
    if isinstance(binding, BuiltinTool):
        return CalculatorTool(name)
    if isinstance(binding, CommandTool):
        return CommandToolClient(name, binding, base_dir)
    function = import_reference(binding.python, base_dir, f"tools.{name}.python")
    if not callable(function):
        raise BindingError(f"tools.{name}.python: '{binding.python}' is not a function")
    return PythonFunctionTool(name, function)
