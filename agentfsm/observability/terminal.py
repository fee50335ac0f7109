"""Text from data, made safe to show on a terminal: no control character reaches it raw.

An LLM reply used as an event name, an error message quoting a tool's output, a context value in
a table: any of it may hold escape sequences that clear the screen, set the window title (OSC),
or forge lines with newlines and carriage returns. `visible` writes each control character as
an escape a person can read (`\\x1b`), so what is shown is what the data holds.
"""

from __future__ import annotations

_CONTROL = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0),
            0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
"""C0, DEL, C1 (0x9b is a one-byte CSI), and the bidirectional and line-separator marks that reorder or
break what a terminal shows."""


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ONE_LINE = str.maketrans({code: _escape(code) for code in _CONTROL} | {0x0A: " ", 0x0D: " ", 0x09: " "})
_LINES = str.maketrans({code: _escape(code) for code in _CONTROL if code not in (0x0A, 0x09)})


def visible(text: str) -> str:
    """`text` on one line: newlines, tabs and carriage returns become spaces, other controls `\\xNN`."""
    return text.translate(_ONE_LINE)


def visible_lines(text: str) -> str:
    """`text` keeping its newlines and tabs; every other control character written as `\\xNN`."""
    return text.translate(_LINES)


_JSON = str.maketrans({code: f"\\u{code:04x}" for code in _CONTROL if code >= 0x7F})


def json_visible(text: str) -> str:
    """JSON text with the control characters JSON leaves raw (DEL, C1, bidirectional marks; json escapes C0
    itself) written as `\\u` escapes: the same JSON value, safe on a terminal."""
    if text.isascii() and "\x7f" not in text:  # the common case, at once (translate reads every character)
        return text
    return text.translate(_JSON)


def has_controls(text: str) -> bool:
    return text != text.translate(_LINES)


# -- one terminal, two writers ------------------------------------------------------------------------

_LIVE: dict[int, object] = {}
"""id(stream) -> the function writing text above the live progress line drawn on that stream."""


def set_live_writer(stream: object, writer: object | None) -> None:
    """While a progress display keeps a live line on `stream`, other text (log lines) goes through `writer`."""
    if writer is None:
        _LIVE.pop(id(stream), None)
    else:
        _LIVE[id(stream)] = writer


class SharedStream:
    """A text stream (stderr) that a progress display may be drawing a live line on: what is written goes
    above that line, whole (so a log line never tears it), or straight to the stream when there is none."""

    def __init__(self, stream: object) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        writer = _LIVE.get(id(self.stream))
        if writer is not None:
            writer(text)  # type: ignore[operator]
        else:
            self.stream.write(text)  # type: ignore[attr-defined]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()  # type: ignore[attr-defined]

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())
