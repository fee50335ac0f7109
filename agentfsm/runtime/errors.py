"""The error taxonomy. `retry` and `catch` match on `StateError.type` by prefix (`llm` matches `llm.parse`)."""

from __future__ import annotations

from typing import Any

ERROR_TYPES: dict[str, str] = {
    "timeout": "The state ran longer than its `timeout`; its work was cancelled (a template rendering when the "
    "timeout runs out is stopped too).",
    "template.error": "A template failed: an undefined variable, a sandbox violation, a type error. "
    "Catchable in a state's own work; in a guard or a rule's `set:` it ends the run, like a missing transition.",
    "template.limit": "A template went over its render budget (loop iterations and calls, output size, the size of "
    "a string or list it builds: docs/security.md gives the numbers). Catchable like `template.error`.",
    "llm.error": "The LLM binding failed (for `scripted`: no reply left for this call).",
    "llm.parse": "The reply could not be parsed as the state's `parse:` asks (for example not JSON), "
    "or a provider answered 2xx with a body that is not its protocol's JSON.",
    "llm.rate_limit": "The provider answered 429; retried by the binding (`max_retries`, honouring `Retry-After` "
    "up to 60s) before this error reaches the state.",
    "llm.timeout": "The provider did not answer within the binding's `timeout` (or answered 408); retried by the "
    "binding first.",
    "llm.auth": "The provider refused the API key (401/403); never retried.",
    "llm.bad_request": "The provider refused the request (400, 404, 422, other 4xx: a wrong model name or "
    "`base_url`); never retried.",
    "llm.unavailable": "The provider failed (5xx) or could not be reached (connection refused or reset); "
    "retried by the binding first.",
    "llm.tool_loop": "An `llm` state with `tools:` got more replies asking for tool calls than its "
    "`max_tool_rounds`.",
    "tool.error": "The tool raised an error or returned a failure (for `http`: a status not in `ok_status`, "
    "no connection, a body over `max_response`, or not JSON under `parse: json`).",
    "tool.bad_arguments": "The args do not fit the tool: a missing, unknown or mistyped argument (checked against "
    "a Python tool's signature and type hints before the call), or a value a builtin refuses (an unknown time zone).",
    "tool.timeout": "A command tool's program ran longer than the binding's `timeout` (its process group was "
    "stopped), or an `http` tool got no complete reply within its `timeout`.",
    "tool.unbound": "A tool bound to nothing yet (`unbound:`, such as a task `agentfsm import` could not bind) "
    "was called; the message names what it stands for.",
    "map.failed": "More items of a `map` state failed than its `tolerated_failures` allows; the items still "
    "running were cancelled (`detail`: the failed items' indexes and the first error).",
    "state.error": "A Python `State` raised an exception.",
    "fail": "A `fail` state was reached.",
    "transition.none": "No transition rule matched the state's event.",
    "transition.invalid": "A Python state returned the name of a state that does not exist or cannot be reached from it.",
    "limit.max_steps": "The run took more steps than `max_steps`.",
    "limit.max_visits": "A state was entered more times than its `max_visits`.",
    "limit.budget": "An LLM call was about to be made after a `budget:` (of the machine, a machine around it, or a "
    "team state) reached one of its limits (tokens, cost, llm_calls); the call is not made. Catchable: route to a "
    "path that needs no model (or fewer calls); every later call in that budget fails the same way.",
    "child.fail": "A nested machine, parallel branch or team agent ended at a `fail` state (likewise "
    "`child.transition.none`, `child.limit.max_steps`...: a child's error that ends a run becomes `child.TYPE` in "
    "its parent, where it can be caught; a child's other errors keep their type, such as `llm.error`).",
    "child.cancelled": "A child run was cancelled (`agentfsm cancel CHILD`) before it ended.",
    "team.bad_plan": "A hierarchical team's supervisor planned work for a worker the team does not have, or its "
    "plan is neither a mapping from worker to task nor a list of tasks.",
    "team.no_winner": "No agent of a competitive team succeeded.",
    "team.bad_judgement": "A competitive team's judge named no candidate.",
    "team.max_steps": "A collaborative team took more agent steps than its `max_steps`.",
    "team.none": "A `send`, `receive` or `memory` state ran outside a team agent (it has no bus or memory).",
    "bus.unknown_agent": "A `send` named an agent the team does not have.",
    "memory.locked": "A shared-memory write to a key another agent holds locked (locks expire after their `ttl`).",
    "memory.conflict": "A `cas` expected a version of the key that is no longer current.",
}
"""Every error type the runtime raises, with what it means; the table in `docs/reference.md` is generated from this."""

UNCATCHABLE = frozenset({"fail", "transition.none", "transition.invalid", "limit.max_steps", "limit.max_visits"})
"""Errors that end the run: they come from the machine's own structure, not from a state's work."""


class MachineDefinitionError(ValueError):
    """A machine assembled in Python is inconsistent (no initial state, a transition to nowhere...)."""


class StateError(Exception):
    """An error with a taxonomy type, raised by a state's work or by the runtime."""

    def __init__(self, type: str, message: str, *, state: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.state = state
        self.detail = detail

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "state": self.state, "detail": self.detail}

    def __str__(self) -> str:
        where = f"state '{self.state}': " if self.state else ""
        return f"{where}{self.type}: {self.message}"


def as_state_error(exc: BaseException, state: str) -> StateError:
    """Any exception from a state's work, as a taxonomy error naming the state."""
    if isinstance(exc, StateError):
        if exc.state is None:
            exc.state = state
        return exc
    return StateError("state.error", describe_exception(exc), state=state)


def describe_exception(exc: BaseException) -> str:
    """`ValueError: bad input`: one line naming an exception (a KeyError's message without repr quotes)."""
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        detail = exc.args[0]
    else:
        detail = str(exc)
    detail = " ".join(detail.split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def error_matches(patterns: tuple[str, ...], error_type: str) -> bool:
    """True when any pattern is `*`, equals the type, or is a dotted prefix of it."""
    for pattern in patterns:
        if pattern == "*" or pattern == error_type or error_type.startswith(pattern + "."):
            return True
    return False
