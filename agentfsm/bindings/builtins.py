"""The builtin tools besides the calculator: `now`, `json_query`, `read_file`. Safe by construction.

Each is a typed function, so its arguments are checked (and described as JSON Schema) the
same way as a Python tool's (`arguments.py`). None evaluates code, runs a program or opens
a connection; `read_file` reads only inside the folder its binding names.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import zoneinfo
from pathlib import Path
from typing import Any

from agentfsm.bindings.imports import confined_folder
from agentfsm.runtime.errors import StateError


def now(timezone: str | None = None) -> str:
    """The current time as ISO 8601 text, in `timezone` (an IANA name such as Europe/Paris; default UTC)."""
    if timezone is None:
        zone: datetime.tzinfo = datetime.UTC
    else:
        try:
            zone = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise StateError("tool.bad_arguments", f"now: argument 'timezone': unknown time zone {timezone!r} "
                             "(an IANA name such as Europe/Paris or UTC)") from None
    return datetime.datetime.now(zone).isoformat()


# -- json_query ------------------------------------------------------------------------------

MAX_PATH_LENGTH = 1000
_STEP = re.compile(r"""
      (?P<dot>\.)?(?P<name>[A-Za-z_$][\w$-]*)  # .name (the dot optional at the start)
    | \[\s*(?P<index>-?\d+)\s*\]               # [0], [-1]
    | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]      # ["any key"]
    | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]      # ['any key']
""", re.VERBOSE)


class PathError(ValueError):
    """A path that is not written in the path language."""


def parse_path(path: str) -> list[str | int]:
    """`a.b[0]["c d"]` as steps: keys (str) and indexes (int). Raises PathError."""
    if len(path) > MAX_PATH_LENGTH:
        raise PathError(f"path too long ({len(path)} characters, at most {MAX_PATH_LENGTH})")
    text = path.strip()
    if text in ("", "$", "."):
        return []
    if text.startswith("$"):
        text = text[1:]
    steps: list[str | int] = []
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None or (match.group("name") is not None and match.group("dot") is None and position > 0):
            raise PathError(f"cannot read the path {path!r} at character {position + 1}: expected .name, [index] "
                            "or [\"key\"]")
        if match.group("name") is not None:
            steps.append(match.group("name"))
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        else:
            quoted = match.group("dq") if match.group("dq") is not None else match.group("sq")
            steps.append(re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    return steps


def json_query(data: Any, path: str) -> Any:
    """The value at `path` (such as `a.b[0].c`, `items[-1]`, `["key with spaces"]`) in the JSON value `data`."""
    try:
        steps = parse_path(path)
    except PathError as exc:
        raise StateError("tool.bad_arguments", f"json_query: argument 'path': {exc}") from None
    value = data
    walked = "$"
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list):
                raise StateError("tool.error", f"json_query: {walked} is {_kind(value)}, not a list, so it has no "
                                 f"[{step}]", detail={"path": path})
            if not -len(value) <= step < len(value):
                raise StateError("tool.error", f"json_query: {walked} has {len(value)} items, no [{step}]",
                                 detail={"path": path})
            value = value[step]
            walked += f"[{step}]"
        else:
            if not isinstance(value, dict):
                raise StateError("tool.error", f"json_query: {walked} is {_kind(value)}, not a mapping, so it has "
                                 f"no key {step!r}", detail={"path": path})
            if step not in value:
                raise StateError("tool.error", f"json_query: {walked} has no key {step!r}", detail={"path": path})
            value = value[step]
            walked += f".{step}" if re.fullmatch(r"[A-Za-z_$][\w$-]*", step) else f"[{step!r}]"
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


# -- read_file -------------------------------------------------------------------------------


def resolve_root(name: str, root: str, base_dir: Path | None) -> Path:
    """The binding's `root`, resolved once at run start: inside the machine file's folder, symlinks followed."""
    return confined_folder(root, base_dir, f"tools.{name}.root")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW


def _open_beneath(root: Path, relative: Path) -> int:
    """Open `root / relative` one component at a time from the root's descriptor, following no link.

    `relative` was resolved a moment ago, so it holds no link; a folder on the way swapped for a link since
    (to lead outside the root) makes that step fail instead of being followed. The same guarantee as openat2's
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, with only POSIX calls.
    """
    if not relative.parts:
        raise IsADirectoryError(errno.EISDIR, "Is a directory")
    folder = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for part in relative.parts[:-1]:
            inner = os.open(part, _FOLDER, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(relative.parts[-1], os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=folder)
    finally:
        os.close(folder)


class FileReader:
    """`builtin: read_file`: the text of a file under `root`; nothing outside it (by `..`, absolute paths, links)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def __call__(self, path: str) -> str:
        """Read a UTF-8 text file; `path` is relative to the tool's root folder."""
        if not path or "\0" in path:
            raise StateError("tool.bad_arguments", "read_file: argument 'path': an empty path or a NUL character")
        if os.path.isabs(path):
            raise StateError("tool.bad_arguments", f"read_file: argument 'path': {path!r} is absolute; give a path "
                             "relative to the tool's root")
        try:
            target = (self.root / path).resolve(strict=True)  # follows `..` and every symlink
        except FileNotFoundError:
            raise StateError("tool.error", f"read_file: no such file: {path!r}", detail={"path": path}) from None
        except (OSError, RuntimeError) as exc:
            raise StateError("tool.error", f"read_file: cannot resolve {path!r}: {exc}",
                             detail={"path": path}) from None
        if not target.is_relative_to(self.root):
            raise StateError("tool.error", f"read_file: {path!r} leads outside the tool's root folder; refused",
                             detail={"path": path})
        try:
            fd = _open_beneath(self.root, target.relative_to(self.root))
        except OSError as exc:
            raise StateError("tool.error", f"read_file: cannot open {path!r}: {exc.strerror or exc}",
                             detail={"path": path}) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StateError("tool.error", f"read_file: {path!r} is not a regular file", detail={"path": path})
            if info.st_nlink > 1:  # a hard link in the root may be a file from anywhere on the disk
                raise StateError("tool.error", f"read_file: {path!r} has more than one link (a hard link may lead "
                                 "outside the tool's root folder); refused", detail={"path": path})
            if info.st_size > self.max_bytes:
                raise StateError("tool.error", f"read_file: {path!r} has {info.st_size} bytes, more than max_bytes "
                                 f"({self.max_bytes})", detail={"path": path, "size": info.st_size})
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(self.max_bytes + 1)  # a file that grew since fstat is still bounded
        except OSError as exc:
            raise StateError("tool.error", f"read_file: cannot read {path!r}: {exc.strerror or exc}",
                             detail={"path": path}) from None
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            raise StateError("tool.error", f"read_file: {path!r} is larger than max_bytes ({self.max_bytes})",
                             detail={"path": path})
        if b"\0" in data:
            raise StateError("tool.error", f"read_file: {path!r} is a binary file, not text", detail={"path": path})
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise StateError("tool.error", f"read_file: {path!r} is not UTF-8 text", detail={"path": path}) from None
