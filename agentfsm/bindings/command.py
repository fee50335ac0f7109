"""`command:` tool bindings: a program run with an argument list, never through a shell.

Threat model (docs/architecture, DESIGN.md): the argv list is the author's, the values
rendered into it are data. Each item of `command:` is rendered to exactly one argv item
and handed to `exec` as is, so `; rm -rf /`, `$(id)` or a newline in the data is just
text inside one argument. The program itself must be written literally (the models
refuse a template there), so data can never choose what runs.

Lifetime: the program starts in a session (and process group) of its own. When it
exits, whatever it left running in that group is killed; on `timeout` the group gets
SIGTERM, then SIGKILL after a short grace; if the calling state is cancelled (its own
`timeout`), the group gets SIGKILL at once. A descendant that starts a session of its
own (`setsid`, a daemon) leaves the group and is out of reach: that takes cgroups.

Output: stdout and stderr are read as they arrive; the first `max_output` bytes of
each are kept and the rest is read and dropped, so memory stays bounded and the
program still runs to its own end (its exit code keeps its meaning; `timeout` bounds a
program that never stops writing).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentfsm.bindings.arguments import scalar_text
from agentfsm.bindings.imports import BindingError, confined_folder
from agentfsm.bindings.llm import loads_json
from agentfsm.runtime.errors import StateError
from agentfsm.spec.expressions import Expression, ExpressionError, base_scope, compile_template, is_template
from agentfsm.spec.models import CommandTool

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
"""The child's PATH unless the binding lists PATH in `env:` (then the parent's is passed through)."""

TERM_GRACE = 1.0
"""Seconds a timed-out program's group has between SIGTERM and SIGKILL."""

STDERR_TAIL = 2048
"""Bytes of stderr put in a failure's detail: the end is where programs say what went wrong."""

_REAP_WAIT = 5.0  # after SIGKILL the leader exits at once; this only bounds a wait on a stuck kernel call


@dataclass(slots=True)
class _Capture:
    """The first `limit` bytes of a stream, its last STDERR_TAIL bytes, and how many bytes were dropped."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    last: bytes = b""
    dropped: int = 0

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))
        self.last = (self.last + chunk[-STDERR_TAIL:])[-STDERR_TAIL:]  # the real end, even past the cap

    def text(self) -> str:
        # A cut can fall inside a UTF-8 sequence: leave that partial character out rather than show U+FFFD.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(bytes(self.data), final=not self.truncated)

    def tail(self) -> str:
        end = self.last
        start = 0
        while start < min(len(end), 3) and end[start] & 0xC0 == 0x80:  # skip a character cut in half
            start += 1
        return end[start:].decode("utf-8", errors="replace")


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the first bytes of stdout and stderr as they arrive, and tells when the program exits.

    A protocol rather than `asyncio.create_subprocess_exec`: its `Process.wait()` also waits
    for the pipes to close, which a grandchild holding them can delay forever, and the
    program's own exit is what has to end the call.
    """

    def __init__(self, limit: int) -> None:
        loop = asyncio.get_running_loop()
        self.stdout, self.stderr = _Capture(limit), _Capture(limit)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()  # both pipes at end of file
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        (self.stdout if fd == 1 else self.stderr).add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone (macOS says EPERM for a zombie group)
        pass


def resolve_cwd(name: str, cwd: str | None, base_dir: Path | None) -> Path:
    """The working folder, resolved once at run start: inside the machine file's folder, symlinks followed."""
    if cwd is None:
        return (base_dir or Path.cwd()).resolve()
    return confined_folder(cwd, base_dir, f"tools.{name}.cwd")


def child_environment(names: list[str]) -> dict[str, str]:
    """Only the listed variables, read at run start; secrets in the parent's environment stay there."""
    env = {name: os.environ[name] for name in names if name in os.environ}
    env.setdefault("PATH", SAFE_PATH)
    return env


def _argument(value: Any, where: str) -> str:
    """One rendered template as one argv item."""
    text = scalar_text(value)  # data comes from JSON: spell it as JSON does, not as Python's True
    if text is None:
        kind = "nothing (null)" if value is None else f"a {type(value).__name__}"
        raise StateError("tool.error", f"{where}: rendered to {kind}; each item of the command is exactly one "
                         "argument (a string or a number)")
    if "\0" in text:
        raise StateError("tool.error", f"{where}: contains a NUL character, which no program argument can carry")
    return text


def _option_checked(binding: CommandTool) -> frozenset[int]:
    """Positions of the templates whose value must not start with `-`: not listed under `options:`, and before
    any literal `--` (after it, programs take every argument as an operand)."""
    end = binding.command.index("--") if "--" in binding.command else len(binding.command)
    return frozenset(index for index, item in enumerate(binding.command[:end])
                     if index > 0 and is_template(item) and index not in binding.options)


def _clipped(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


class CommandToolClient:
    """`command: [program, arg, ...]`: runs the program with the rendered argv; see the module's docstring."""

    def __init__(self, name: str, binding: CommandTool, base_dir: Path | None) -> None:
        if os.name != "posix":
            raise BindingError(f"tools.{name}.command: command tools need a POSIX system (process groups)")
        self.name = name
        self.binding = binding
        self.program = binding.command[0]
        self.items: list[Expression] = [compile_template(item) for item in binding.command]
        self.option_checked = _option_checked(binding)
        self.cwd = resolve_cwd(name, binding.cwd, base_dir)
        self.env = child_environment(binding.env)
        self.description = binding.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments, from the binding's `parameters:` (each one required)."""
        properties = dict(self.binding.parameters or {})
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if properties:
            schema["required"] = list(properties)
        return schema

    async def call(self, args: Mapping[str, Any]) -> Any:
        argv = self._argv(args)
        self._check_cwd()
        transport, collector = await self._start(argv)
        pgid = transport.get_pid()  # the program leads its own group (start_new_session)
        try:
            async with asyncio.timeout(self.binding.timeout):
                # shielded: a timeout cancels what it interrupts, and `_stop` still waits on these futures
                await asyncio.shield(collector.exited)
                # What it left running in its group ends with it. The group id cannot have been reused
                # meanwhile while any member lives; once empty, reuse needs the pid space to wrap first.
                _kill_group(pgid, signal.SIGKILL)
                await asyncio.shield(collector.closed)  # the rest of the output, still in the pipes
        except TimeoutError:
            await self._stop(pgid, collector)
            raise StateError(
                "tool.timeout", f"'{self.program}' did not finish within {self.binding.timeout:g}s and was stopped",
                detail={"tool": self.name, "timeout": self.binding.timeout, "stderr": collector.stderr.tail()},
            ) from None
        finally:
            await self._end(pgid, transport, collector)
        code = transport.get_returncode()
        assert code is not None
        return self._result(code, collector.stdout, collector.stderr)

    @staticmethod
    async def _end(pgid: int, transport: asyncio.SubprocessTransport, collector: _Collector) -> None:
        """However the call ends: nothing of the group left running, the pipes closed."""
        try:
            if not collector.exited.done():  # cancelled from outside (the state's own timeout): no grace
                _kill_group(pgid, signal.SIGKILL)
                await asyncio.wait([collector.exited], timeout=_REAP_WAIT)  # until it is reaped
        finally:
            transport.close()  # even if cancelled again while waiting

    def _argv(self, args: Mapping[str, Any]) -> list[str]:
        scope = base_scope()
        scope["args"] = dict(args)
        argv = []
        for index, item in enumerate(self.items):
            where = f"tools.{self.name}.command[{index}]"
            try:
                value = item.render(scope)
            except ExpressionError as exc:
                raise StateError(exc.error_type, f"{where}: {exc}") from None
            argument = _argument(value, where)
            if index in self.option_checked and argument.startswith("-"):
                raise StateError("tool.bad_arguments", f"{where}: the value {_clipped(argument)} starts with '-', "
                                 "which the program would take as an option; list the position under `options:` "
                                 "if it may be one, or put a literal '--' before it", detail={"tool": self.name})
            argv.append(argument)
        return argv

    def _check_cwd(self) -> None:
        # Checked at run start; checked again here in case a folder on the way was swapped for a symlink since.
        if self.cwd.resolve() != self.cwd:
            raise StateError("tool.error", f"tools.{self.name}.cwd: {self.cwd} now leads elsewhere "
                             f"({self.cwd.resolve()}); refusing to run", detail={"tool": self.name})

    async def _start(self, argv: list[str]) -> tuple[asyncio.SubprocessTransport, _Collector]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.subprocess_exec(
                lambda: _Collector(self.binding.max_output), *argv,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self.cwd, env=self.env,
                start_new_session=True,  # its own process group, so the whole group can be stopped
            )
        except FileNotFoundError as exc:
            if exc.filename is not None and str(exc.filename) == str(self.cwd):
                message = f"working folder {self.cwd} no longer exists"
            else:
                message = f"program not found: {self.program}"
            raise StateError("tool.error", message, detail={"tool": self.name}) from None
        except PermissionError:
            raise StateError("tool.error", f"program not executable: {self.program}",
                             detail={"tool": self.name}) from None
        except OSError as exc:  # too many open files, an argument list too long...
            raise StateError("tool.error", f"cannot start '{self.program}': {exc.strerror or exc}",
                             detail={"tool": self.name}) from None

    async def _stop(self, pgid: int, collector: _Collector) -> None:
        """SIGTERM the group, give it TERM_GRACE to end, then SIGKILL whatever is left (grandchildren too)."""
        _kill_group(pgid, signal.SIGTERM)
        await asyncio.wait([collector.exited], timeout=TERM_GRACE)  # asyncio.wait never cancels what it waits on
        _kill_group(pgid, signal.SIGKILL)
        await asyncio.wait([collector.exited], timeout=_REAP_WAIT)

    def _result(self, code: int, stdout: _Capture, stderr: _Capture) -> dict[str, Any]:
        if code not in self.binding.ok_exit_codes:
            raise StateError("tool.error", self._exit_message(code, stderr),
                             detail={"tool": self.name, "exit_code": code, "stderr": stderr.tail()})
        return {
            "output": self._parse(stdout),
            "exit_code": code,
            "stderr": stderr.text(),
            "truncated": stdout.truncated,
            "stderr_truncated": stderr.truncated,
        }

    def _exit_message(self, code: int, stderr: _Capture) -> str:
        if code < 0:  # asyncio reports death by a signal as minus the signal's number
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        lines = [line.strip() for line in stderr.tail().splitlines() if line.strip()]
        if not lines:
            return f"'{self.program}' {how}"
        last = lines[-1] if len(lines[-1]) <= 200 else "..." + lines[-1][-197:]  # a message ends with its point
        return f"'{self.program}' {how}: {last}"

    def _parse(self, stdout: _Capture) -> Any:
        text = stdout.text()
        mode = self.binding.parse
        if mode == "text":
            return text.rstrip("\r\n")  # like a shell's $(...): the final newline is not part of the value
        if mode == "lines":
            return [line for line in text.splitlines() if line.strip()]
        if stdout.truncated:
            raise StateError("tool.error", f"'{self.program}' wrote more than max_output "
                             f"({self.binding.max_output} bytes) to stdout, so it cannot be parsed as JSON",
                             detail={"tool": self.name, "stdout": text[:500]})
        try:
            return loads_json(text)
        except json.JSONDecodeError as exc:
            raise StateError("tool.error", f"'{self.program}' did not print JSON: {exc.msg} at line {exc.lineno} "
                             f"column {exc.colno}", detail={"tool": self.name, "stdout": text[:500]}) from None
        except ValueError as exc:  # nested too deep, an int too long to convert
            raise StateError("tool.error", f"'{self.program}' printed JSON that cannot be read: {exc}",
                             detail={"tool": self.name}) from None
