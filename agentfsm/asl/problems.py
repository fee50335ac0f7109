"""What an import reports: bad input (the file is not a Step Functions machine we can read: one line, exit 2) and
refusals (a valid machine's part agentfsm cannot express: each listed, located by JSON pointer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Pointer = tuple[str | int, ...]
"""Where in the ASL document: `("States", "Charge", "Retry", 0)`."""


def pointer_text(pointer: Pointer) -> str:
    """RFC 6901: `/States/Charge/Retry/0` (`~` and `/` in a key escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in pointer) or "/"


class AslInputError(ValueError):
    """The file cannot be imported at all: not JSON/YAML, not ASL, a broken reference or path. One line."""

    def __init__(self, pointer: Pointer, message: str) -> None:
        super().__init__(f"{pointer_text(pointer)}: {message}")
        self.pointer = pointer
        self.message = message


@dataclass(frozen=True, slots=True)
class Refusal:
    """A part of a valid ASL machine that agentfsm cannot express, and why."""

    pointer: Pointer
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"pointer": pointer_text(self.pointer), "message": self.message}

    def __str__(self) -> str:
        return f"{pointer_text(self.pointer)}: {self.message}"


class Refused(Exception):  # noqa: N818 - a signal carrying a refusal, caught per state
    """Raised while converting a state: the part at `pointer` cannot be expressed."""

    def __init__(self, pointer: Pointer, message: str) -> None:
        super().__init__(message)
        self.refusal = Refusal(pointer, message)
