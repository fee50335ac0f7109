"""A run's trace as a person reads it: one line per entry, its LLM and tool payloads folded onto that line.

`timeline_line(entry)` is the line; `unfolded(entry)` the payloads written out whole (`trace -v`), as
indented JSON lines under it. Every line is made visible (control characters escaped), since entries
hold data: prompts, replies, tool output, event payloads.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from agentfsm.observability.terminal import visible

FOLD = 60
"""Characters of a payload shown on its entry's line (the rest is `…`; `-v` shows it whole)."""

PAYLOADS = {"llm_call": ("request", "reply", "error"), "tool_call": ("arguments", "result", "error"),
            "state_exited": ("result", "error", "event_data"), "event_delivered": ("data",),
            "message_sent": ("data",), "memory_write": ("value",), "watch": ("value",), "run_ended": ("output", "error", "usage")}
"""The fields `-v` writes out whole, per kind."""

_COMMON = ("seq", "run_id", "branch", "step", "at", "kind")


def folded(value: Any, width: int = FOLD) -> str:
    """A value on one line: text as it is, anything else as compact JSON; cut at `width` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _quoted(value: Any) -> str:
    return json.dumps(folded(value), ensure_ascii=False) if isinstance(value, str) else folded(value)


def _error(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type')}: {folded(error.get('message'), 2 * FOLD)}"
    return folded(error)


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _last_prompt(request: Any) -> Any:
    """What the model was asked last: the newest message of the request (its text, or its tool results)."""
    messages = request.get("messages") if isinstance(request, dict) else None
    if not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict):
        return last
    return last.get("content") or last.get("tool_results") or last


def _llm(entry: dict[str, Any]) -> str:
    reply = entry.get("reply") if isinstance(entry.get("reply"), dict) else {}
    head = (f"{entry.get('state')}: {entry.get('binding')} ({entry.get('model')}) "
            f"{entry.get('prompt_tokens', 0)}+{entry.get('completion_tokens', 0)} tokens "
            f"{_seconds(entry.get('duration'))}")
    if entry.get("error"):
        return f"{head} failed: {_error(entry['error'])}"
    answer: Any = reply.get("text")
    if reply.get("tool_calls"):
        answer = {"tool_calls": [call.get("name") for call in reply["tool_calls"] if isinstance(call, dict)]}
    return f"{head} {entry.get('finish_reason') or ''}: {_quoted(_last_prompt(entry.get('request')))} -> {_quoted(answer)}"


def _tool(entry: dict[str, Any]) -> str:
    via = " (asked by the model)" if entry.get("via") == "llm" else ""
    head = f"{entry.get('state')}: {entry.get('tool')}({folded(entry.get('arguments'))}){via} {_seconds(entry.get('duration'))}"
    if entry.get("error"):
        return f"{head} failed: {_error(entry['error'])}"
    return f"{head} -> {_quoted(entry.get('result'))}"


def _exited(entry: dict[str, Any]) -> str:
    line = f"{entry.get('state')} --{entry.get('event')}--> {entry.get('next_state') or '(end)'} {_seconds(entry.get('duration'))}"
    if entry.get("retries"):
        line += f" after {entry['retries']} retries"
    if entry.get("error"):
        line += f", error {_error(entry['error'])}"
    return line


def _transition(entry: dict[str, Any]) -> str:
    how = "caught" if entry.get("caught") else f"rule {entry.get('rule')}" if entry.get("rule") is not None else "next"
    label = f": {entry['label']}" if entry.get("label") else ""
    return f"{entry.get('source')} -> {entry.get('target')} on {entry.get('event')} ({how}{label})"


def _ended(entry: dict[str, Any]) -> str:
    if entry.get("error"):
        return f"{entry.get('status')}: {_error(entry['error'])}"
    if entry.get("waiting"):
        waiting = entry["waiting"]
        return f"{entry.get('status')} in {waiting.get('state')} for {', '.join(waiting.get('events') or [])}"
    return f"{entry.get('status')}" + (f": {_quoted(entry['output'])}" if entry.get("output") is not None else "")


def _wait(entry: dict[str, Any]) -> str:
    deadline = entry.get("deadline")
    until = ""
    if isinstance(deadline, int | float):
        until = f" until {datetime.datetime.fromtimestamp(deadline).strftime('%Y-%m-%d %H:%M:%S')}"
    return f"{entry.get('state')} for {', '.join(entry.get('events') or [])}{until}"


def _megabytes(value: Any) -> str:
    return f"{value / 1e6:.1f} MB" if isinstance(value, int | float) else "?"


def _from(entry: dict[str, Any]) -> str:
    return f" (agent run {entry['from_run']} step {entry.get('from_step')})" if entry.get("from_run") else ""


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "run_started": lambda e: f"{e.get('machine')} at {e.get('state')}" + (" (resumed)" if e.get("resumed") else ""),
    "state_entered": lambda e: f"{e.get('state')} (visit {e.get('visit')})",
    "state_exited": _exited,
    "transition": _transition,
    "llm_call": _llm,
    "tool_call": _tool,
    "retry": lambda e: f"{e.get('state')}: attempt {e.get('attempt')} in {_seconds(e.get('delay'))} after {_error(e.get('error'))}",
    "error": lambda e: f"{e.get('state')}: {_error(e.get('error'))}" + (
        f" (caught: to {e['caught_by']})" if e.get("caught_by") else ""),
    "event_delivered": lambda e: f"{e.get('event')} {folded(e.get('data'))}",
    "checkpoint": lambda e: f"{e.get('name')} at {e.get('state')} (point {e.get('point')})",
    "wait": _wait,
    "paused": lambda e: f"{e.get('state')}: {e.get('reason')}",
    "rollback": lambda e: f"new branch {e.get('branch')} from {e.get('parent')}@{e.get('point')} at {e.get('state')}",
    "run_ended": _ended,
    "message_sent": lambda e: f"{e.get('sender')} -> {e.get('recipient') or 'all'} [{e.get('topic') or ''}] "
                              f"#{e.get('message_id')}: {_quoted(e.get('data'))}{_from(e)}",
    "message_received": lambda e: f"{e.get('agent')} <- {e.get('sender')} #{e.get('message_id')}{_from(e)}",
    "memory_write": lambda e: f"{e.get('agent')} {e.get('op')} {e.get('key')} = {_quoted(e.get('value'))} "
                              f"(version {e.get('version')}){_from(e)}",
    "breakpoint": lambda e: f"before {e.get('state')}: {e.get('breakpoint')}" + (
        f" (guard {e['guard']} held)" if e.get("guard") else ""),
    "watch": lambda e: f"{e.get('name')} = " + (f"error: {e['error']}" if e.get("error") else _quoted(e.get("value")))
                       + f" at {e.get('state')}" + (" (initial)" if e.get("initial") else ""),
    "memory": lambda e: f"rss {_megabytes(e.get('rss'))}, peak {_megabytes(e.get('peak'))} (pid {e.get('pid')})",
    "child_started": lambda e: f"{e.get('child')} run {e.get('child_run')}" + (" (found again)" if e.get("reused") else ""),
    "child_ended": lambda e: f"{e.get('child')} run {e.get('child_run')} {e.get('status')}" + (
        f": {_error(e['error'])}" if e.get("error") else ""),
}
"""How each kind reads on its line; a kind not listed shows its fields as `key=value`."""


def _clock(at: Any) -> str:
    if not isinstance(at, int | float):
        return "--:--:--.---"
    return datetime.datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


def _others(entry: dict[str, Any]) -> str:
    return " ".join(f"{key}={folded(value)}" for key, value in entry.items() if key not in _COMMON)


def timeline_line(entry: dict[str, Any]) -> str:
    """`SEQ  TIME  BRANCH  STEP  KIND  what happened`, on one line."""
    render = RENDERERS.get(str(entry.get("kind")), _others)
    try:
        what = render(entry)
    except (AttributeError, TypeError, KeyError):  # an entry of an older or odd shape: its fields as they are
        what = _others(entry)
    return visible(f"{entry.get('seq', ''):>5}  {_clock(entry.get('at'))}  {entry.get('branch', '')}  "
                   f"{entry.get('step', ''):>4}  {str(entry.get('kind', '?')):<16} {what}".rstrip())


def unfolded(entry: dict[str, Any]) -> list[str]:
    """The entry's payloads written out whole, each as indented JSON lines (`trace -v`)."""
    lines: list[str] = []
    for field in PAYLOADS.get(str(entry.get("kind")), ()):
        value = entry.get(field)
        if value is None or value == {}:
            continue
        text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
        lines.append(f"        {field}:")
        lines.extend(visible(f"          {line}") for line in text.splitlines())
    return lines
