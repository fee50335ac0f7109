"""Breakpoints as written (`STATE` or `STATE:GUARD`), read against a machine's state names.

A state name may itself hold a colon (any text is a valid name), so the text is read as a whole
name first, then split at the first colon whose left part names a state.
"""

from __future__ import annotations

from collections.abc import Collection

from agentfsm.spec.diagnostics import did_you_mean


def split_breakpoint(text: str, states: Collection[str]) -> tuple[str, str | None] | None:
    """(state, guard or None) for `text`, or None when it names no state of `states`."""
    if text in states:
        return text, None
    at = text.find(":")
    while at != -1:
        state, guard = text[:at].strip(), text[at + 1:].strip()
        if state in states:
            return state, guard or None
        at = text.find(":", at + 1)
    return None


def unknown_state_message(text: str, states: Collection[str], machine: str) -> str:
    """Why `text` is not a breakpoint of the machine: the state it names is not one, with the known names."""
    name = text.split(":", 1)[0].strip()
    known = ", ".join(sorted(states))
    return f"machine '{machine}' has no state '{name}'{did_you_mean(name, states)}; its states: {known}"
