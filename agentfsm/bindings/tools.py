"""Tool bindings: the interface, the builtins (`builtins.py`), Python functions, programs (`command.py`), HTTP.

Every client has `parameters` (the JSON Schema, an object, of its arguments) and
`description`, which describe it to a model calling tools natively. Builtins and Python
functions check their arguments against the function's signature before the call
(`arguments.py`): a missing, unknown or mistyped one is `tool.bad_arguments`.
"""

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

from agentfsm.bindings.arguments import Arguments
from agentfsm.bindings.builtins import FileReader, json_query, now, resolve_root
from agentfsm.bindings.calculator import CalculatorError, evaluate
from agentfsm.bindings.imports import BindingError, import_reference
from agentfsm.limits import DataRefused, check_data
from agentfsm.runtime.errors import StateError, describe_exception
from agentfsm.spec.models import BuiltinTool, CommandTool, HttpTool, PythonTool, UnboundTool


class ToolClient(Protocol):
    """A tool bound to a name under `tools:`. Failures raise StateError with a `tool.*` type."""

    name: str
    description: str | None

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema (an object) of the tool's arguments."""
        ...

    async def call(self, args: Mapping[str, Any]) -> Any: ...


def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression such as `17 * 23` or `sqrt(2) / 2` (safe parser, no eval)."""
    try:
        value = evaluate(expression)
    except CalculatorError as exc:
        raise StateError("tool.error", f"calculator: {exc}") from None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


class BuiltinFunctionTool:
    """A builtin: a typed function; the quick ones run on the event loop, `read_file` in a worker thread."""

    def __init__(self, name: str, function: Callable[..., Any], description: str | None, *,
                 blocking: bool = False) -> None:
        self.name = name
        self.function = function
        self.blocking = blocking  # reads files: run in a worker thread, off the event loop
        self.arguments = Arguments(name, function, f"tools.{name}")
        self.description = description or self.arguments.description

    @property
    def parameters(self) -> dict[str, Any]:
        return self.arguments.parameters

    async def call(self, args: Mapping[str, Any]) -> Any:
        keywords = self.arguments.check(args)
        try:
            if self.blocking:
                return await asyncio.to_thread(self.function, **keywords)
            return self.function(**keywords)
        except StateError as error:
            error.detail = {"tool": self.name, **(error.detail or {})}
            raise
        except Exception as exc:  # noqa: BLE001 - a builtin's own bug still gets a taxonomy type
            raise StateError("tool.error", describe_exception(exc), detail={"tool": self.name}) from None


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

    def __init__(self, name: str, function: Callable[..., Any], description: str | None = None) -> None:
        self.name = name
        self.function = function
        self.is_async = inspect.iscoroutinefunction(function)
        self.arguments = Arguments(name, function, f"tools.{name}.python")  # built once, at run start
        self.description = description or self.arguments.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments, from the function's signature and type hints."""
        return self.arguments.parameters

    async def call(self, args: Mapping[str, Any]) -> Any:
        keywords = self.arguments.check(args)
        try:
            if self.is_async:
                value = await self.function(**keywords)
            else:
                value = await _in_daemon_thread(self.function, keywords)
        except StateError:
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling() > 0:  # cancelled by a timeout or the caller
                raise
            raise StateError("tool.error", describe_exception(exc), detail={"tool": self.name}) from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's tool failed: a taxonomy error
            raise StateError("tool.error", describe_exception(exc), detail={"tool": self.name}) from None
        return checked_result(value, self.name)


def checked_result(value: Any, tool: str) -> Any:
    """A Python tool's result as JSON-able data, refused (`tool.error`) when it is nested too deeply or is not
    Unicode text: what the store and the terminal could not hold."""
    try:
        check_data(value)  # first: pydantic's own walk would stop at its recursion limit, saying less
        value = to_jsonable_python(value, fallback=str)
        check_data(value)
    except (DataRefused, ValueError, RecursionError) as exc:
        message = f"the result {exc}" if isinstance(exc, DataRefused) else "the result cannot be read as data"
        raise StateError("tool.error", message, detail={"tool": tool}) from None
    return value


class UnboundToolClient:
    """`unbound:`: a placeholder; every call fails with `tool.unbound` naming what the tool stands for."""

    parameters: dict[str, Any] = {"type": "object"}

    def __init__(self, name: str, binding: UnboundTool) -> None:
        self.name = name
        self.resource = binding.unbound
        self.description = binding.description

    async def call(self, args: Mapping[str, Any]) -> Any:
        raise StateError("tool.unbound", f"tool '{self.name}' is not bound to an implementation: it stands for "
                         f"{self.resource}; bind it under tools.{self.name} (python:, http:, command:) or with "
                         "agentfsm import --bind", detail={"tool": self.name, "resource": self.resource})


def make_tool(
    name: str, binding: BuiltinTool | PythonTool | CommandTool | HttpTool | UnboundTool, base_dir: Path | None
) -> ToolClient:
    """The client for one binding, set up at run start; raises BindingError when it cannot be."""
    if isinstance(binding, UnboundTool):
        return UnboundToolClient(name, binding)
    if isinstance(binding, BuiltinTool):
        return _builtin(name, binding, base_dir)
    if isinstance(binding, CommandTool):
        from agentfsm.bindings.command import CommandToolClient  # imported by the machines that run programs

        return CommandToolClient(name, binding, base_dir)
    if isinstance(binding, HttpTool):
        from agentfsm.bindings.http_tool import HttpToolClient  # httpx: only for machines that call HTTP tools

        return HttpToolClient(name, binding)
    function = import_reference(binding.python, base_dir, f"tools.{name}.python")
    if not callable(function):
        raise BindingError(f"tools.{name}.python: '{binding.python}' is not a function")
    return PythonFunctionTool(name, function, binding.description)


def _builtin(name: str, binding: BuiltinTool, base_dir: Path | None) -> ToolClient:
    function: Callable[..., Any]
    if binding.builtin == "read_file":
        assert binding.root is not None  # the model requires it
        function = FileReader(resolve_root(name, binding.root, base_dir), binding.max_bytes)
        return BuiltinFunctionTool(name, _read_file_function(function), binding.description, blocking=True)
    function = {"calculator": calculator, "now": now, "json_query": json_query}[binding.builtin]
    return BuiltinFunctionTool(name, function, binding.description)


def _read_file_function(reader: FileReader) -> Callable[..., Any]:
    def read_file(path: str) -> str:
        """Read a UTF-8 text file; `path` is relative to the tool's root folder."""
        return reader(path)

    return read_file
