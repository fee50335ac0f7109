"""Breakpoints read against a machine, and kept with a stored run: what `run --break`, `breakpoints:` in YAML,
`agentfsm break RUN STATE`, `resume --break` and the web UI's breakpoint buttons all call; and watches
(`--watch EXPR`), read the same way.

A breakpoint is written `STATE` or `STATE:GUARD` (`acting:attempts > 2`): the guard is an expression over
the context, compiled in the same sandbox as a transition's `when:`. A text naming a state the machine
lacks is refused (`InputError`, with the machine's state names) before anything is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateSyntaxError

from agentfsm.runtime.breakpoints import Breakpoint, Breakpoints
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.watches import Watch, Watches
from agentfsm.spec.breakpoints import split_breakpoint, unknown_state_message
from agentfsm.spec.expressions import base_scope, compile_guard, compile_template, is_template
from agentfsm.spec.problems import InputError

if TYPE_CHECKING:
    from agentfsm.service.runs import Runs
    from agentfsm.store.base import RunRow

_BASE_SCOPE = base_scope()


def read_breakpoint(text: str, machine: StateMachine, *, where: str = "--break") -> Breakpoint:
    """The breakpoint `text` stands for in `machine`; InputError naming `where` when it is not one."""
    text = text.strip()
    split = split_breakpoint(text, machine.states)
    if split is None:
        raise InputError(f"{where} '{text}': {unknown_state_message(text, machine.states, machine.name)}")
    state, guard = split
    if guard is None:
        return Breakpoint(state)
    try:
        expression = compile_guard(guard)
    except TemplateSyntaxError as exc:
        raise InputError(f"{where} '{text}': guard syntax error: {exc.message}") from None

    def check(data: Mapping[str, Any], run: Mapping[str, Any]) -> bool:
        scope = _BASE_SCOPE.copy()
        scope.update(data)
        scope["run"] = {**run, "data": data}
        return bool(expression.render(scope))

    return Breakpoint(state, guard, check)


def read_breakpoints(texts: Iterable[str], machine: StateMachine, *, where: str = "--break") -> list[Breakpoint]:
    return [read_breakpoint(text, machine, where=where) for text in texts]


def machine_breakpoints(machine: StateMachine) -> list[Breakpoint]:
    """The breakpoints a machine file declares (`breakpoints:`), checked when it was validated."""
    spec = getattr(machine.source, "spec", None)
    return read_breakpoints(getattr(spec, "breakpoints", None) or (), machine, where="breakpoints:")


def added(kept: list[str], new: Iterable[Breakpoint]) -> list[str]:
    """`kept` with the texts of `new` it lacks, in order."""
    result = list(kept)
    for breakpoint in new:
        if breakpoint.text not in result:
            result.append(breakpoint.text)
    return result


def observer(runs: Runs, run_id: str, machine: StateMachine, kept: Iterable[str], *,
             passing: str | None = None) -> Breakpoints:
    """The observer pausing a drive of a stored run at its breakpoints (the machine's own and those kept with
    the run), reading the kept ones again now and then: `agentfsm break` from another process takes effect."""
    own = machine_breakpoints(machine)
    known: dict[str, Breakpoint] = {}

    def current(texts: Iterable[str]) -> list[Breakpoint]:
        found = list(own)
        for text in texts:
            if text not in known:
                try:
                    known[text] = read_breakpoint(text, machine)
                except InputError:  # kept for another version of the machine: it names no state here
                    continue
            if known[text] not in found:
                found.append(known[text])
        return found

    async def refresh() -> list[Breakpoint]:
        return current((await runs.store.get_run(run_id)).breakpoints)

    return Breakpoints(current(kept), passing=passing, refresh=refresh)


_MOVES = frozenset({"run_started", "state_entered", "state_exited", "transition", "rollback", "event_delivered"})


async def stopped_at(runs: Runs, run: RunRow) -> str | None:
    """The state a resume of `run` lets its breakpoints pass once: the one a breakpoint (or `--step`) paused it
    before, as its trace's last entries say, or the wait it waits in; None for any other run."""
    if run.status == "waiting" or run.waiting:
        return (run.waiting or {}).get("state")
    if run.status != "paused":
        return None
    end = await runs.store.trace_end(run.id)
    for entry in reversed(await runs.trace(run.id, after=max(0, end - 8))):
        if entry["kind"] == "paused":
            return entry.get("state") if entry.get("reason") in ("breakpoint", "step") else None
        if entry["kind"] in _MOVES:  # the run moved (or was rolled back) since
            return None
    return None


async def set_breakpoint(runs: Runs, run_id: str, text: str) -> RunRow:
    """Keep a breakpoint with a stored run (checked against the run's machine first)."""
    run = await runs.get(run_id)
    breakpoint = read_breakpoint(text, await runs.machine(run.id), where="break")
    if breakpoint.text in run.breakpoints:
        return run
    return await runs.store.set_breakpoints(run.id, added(run.breakpoints, [breakpoint]), now=runs.clock())


async def remove_breakpoint(runs: Runs, run_id: str, text: str) -> RunRow:
    """Drop a breakpoint kept with a stored run: `text` as it was set, or a state name (every breakpoint on it)."""
    run = await runs.get(run_id)
    text = text.strip()
    states = (await runs.machine(run.id)).states
    kept = [item for item in run.breakpoints if item != text and (split_breakpoint(item, states) or ("",))[0] != text]
    if len(kept) == len(run.breakpoints):
        listed = ", ".join(run.breakpoints) or "none"
        raise InputError(f"run {run.id} has no breakpoint '{text}' (its breakpoints: {listed}; those a machine "
                         "file declares under breakpoints: stay with the file)")
    return await runs.store.set_breakpoints(run.id, kept, now=runs.clock())


async def breakpoints_of(runs: Runs, run_id: str) -> list[str]:
    """Every breakpoint a stored run pauses at: its machine file's (`breakpoints:`), then those kept with it."""
    run = await runs.get(run_id)
    try:
        own = [breakpoint.text for breakpoint in machine_breakpoints(await runs.machine(run.id))]
    except Exception:  # noqa: BLE001 - a machine that no longer loads still has the breakpoints kept with its run
        own = []
    return added(own, [Breakpoint(text) for text in run.breakpoints])


def read_watch(expression: str, name: str | None = None, *, where: str = "--watch") -> Watch:
    """A watch on `expression`: a context key (`attempts`), a dotted path (`plan.steps`), an expression
    (`observations|length`) or a template (`"{{ n }} of {{ total }}"`); InputError when it does not parse."""
    text = expression.strip()
    try:
        compiled = compile_template(text) if is_template(text) else compile_guard(text)
    except TemplateSyntaxError as exc:
        raise InputError(f"{where} '{text}': template syntax error: {exc.message}") from None

    def read(data: Mapping[str, Any], run: Mapping[str, Any]) -> Any:
        scope = _BASE_SCOPE.copy()
        scope.update(data)
        scope["run"] = {**run, "data": data}
        return compiled.render(scope)

    return Watch(name or text, text, read)


def watching(expressions: Iterable[str]) -> Watches:
    """The observer reporting each expression's value as it changes (`--watch`), checked before anything runs."""
    return Watches(read_watch(text) for text in expressions)
