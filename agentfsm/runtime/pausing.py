"""Pausing a run before a state: the hook breakpoints, stepping and debuggers use.

An observer's `on_step_started` may raise `PauseRun`: the state does not run, its step is
undone (as a wait's is), and the loop ends the run `paused` at that state, publishing
`RunPaused` with the reason given. Continuing the run (`Runs.resume`, or running its context
again) runs that state first. The loop knows nothing of breakpoints: it only honours the signal.

While the loop drives a run, `running_context()` is that run's context, for observers that
must act on it (a debugger setting a value, an observer publishing events of its own through
`context.observers`); outside a run it is None.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfsm.runtime.events import RunEvent
    from agentfsm.runtime.model import StateContext


class PauseRun(BaseException):  # noqa: N818 - a signal, like WaitForEvent: retry and catch rules never see it
    """Raised by an observer before a state runs: the run stops there, `paused`, with `reason`."""

    def __init__(self, reason: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


_RUNNING: ContextVar[StateContext | None] = ContextVar("agentfsm_running_context", default=None)


def running_context() -> StateContext | None:
    """The context of the run whose loop is calling (from an observer's method); None outside a run."""
    return _RUNNING.get()


async def publish_in_run(event: RunEvent) -> None:
    """Publish an observer's own event (a breakpoint hit, a watched value) to every observer of the run whose loop
    is calling, the trace among them; nothing outside a run."""
    context = _RUNNING.get()
    if context is not None and context.observers.listens(type(event)):
        await context.observers.publish(event)


def enter_run(context: StateContext) -> Any:
    """Mark `context` as the running one (for the loop); returns the token `leave_run` takes."""
    return _RUNNING.set(context)


def leave_run(token: Any) -> None:
    _RUNNING.reset(token)
