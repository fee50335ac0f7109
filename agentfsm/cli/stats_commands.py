"""`agentfsm stats RUN` and `agentfsm stats --machine NAME`: parse, call `agentfsm.service.stats`, render its JSON view.

Registered on the app by `app.py` (imported at its end); the service is imported when the command runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.app import JsonOption, StoreOption, _options, command


@command(name="stats")
def stats(
    run_id: Annotated[str | None, typer.Argument(metavar="[RUN]", show_default=False,
                                                 help="A run id, or a unique start or end of one.")] = None,
    machine: Annotated[str | None, typer.Option("--machine", metavar="NAME",
                                                help="Add up every run of this machine instead.")] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="AGE",
                                              help="With --machine: only runs started this recently (7d, 12h).")
                     ] = None,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Where a run's time, tokens and money went (per state, transition, binding, tool; memory); or, with
    --machine, a machine's runs together (success rate, steps, p95 duration, tokens, cost)."""
    from agentfsm.cli.commands import guarded

    with guarded(_options["debug"]):
        code = stats_command(store, run_id, machine=machine, since=since, as_json=as_json)
    raise typer.Exit(code)


def stats_command(store: str | None, run_id: str | None, *, machine: str | None, since: str | None,
                  as_json: bool) -> int:
    import asyncio

    from agentfsm.cli.render import print_json
    from agentfsm.service import views
    from agentfsm.service.stores import open_runs
    from agentfsm.service.errors import InputError
    from agentfsm.service.inputs import parse_age
    from agentfsm.service.stats import machine_stats, run_stats

    if (run_id is None) == (machine is None):
        raise InputError("stats: give a RUN or --machine NAME (one of them)")
    if since is not None and machine is None:
        raise InputError("--since goes with --machine NAME")
    age = parse_age(since, "--since")

    async def work() -> dict[str, Any]:
        async with open_runs(store, create=False) as runs:  # a store that is not there is refused, never made
            if machine is not None:
                return views.machine_stats_json(await machine_stats(runs.store, machine, since=age))
            return views.stats_json(await run_stats(runs.store, run_id))

    shown = asyncio.run(work())
    if as_json:
        print_json(shown)
    elif machine is not None:
        _print_machine(shown)
    else:
        _print_run(shown)
    return exit_codes.SUCCESS


def seconds(value: float) -> str:
    """A duration for a person: 0.4 ms, 12 ms, 3.2 s, 4m05s."""
    if value < 0.001:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"
    if value < 60:
        return f"{value:.2f} s"
    return f"{int(value // 60)}m{int(value % 60):02d}s"


def usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:  # a few calls of a cheap model: keep the digits that are not zero
        return "$0" if value == 0 else "$" + f"{value:.10f}".rstrip("0")[:12]
    return f"${value:.4f}" if value < 100 else f"${value:,.2f}"


def size(value: int | None) -> str:
    return "-" if value is None else f"{value / 1_048_576:.1f} MB"


def _cost_line(shown: dict[str, Any]) -> str:
    tokens = shown["tokens"]
    text = f"tokens {tokens['prompt']} in, {tokens['completion']} out; cost {usd(shown['cost'])}"
    if shown["unpriced"]:
        text += f" (no price for: {', '.join(shown['unpriced'])})"
    return text


def _print_run(shown: dict[str, Any], indent: str = "") -> None:
    from agentfsm.cli.render import say, table

    agent = f" (agent {shown['agent']})" if shown.get("agent") else ""
    say(f"{indent}run {shown['run_id']}{agent}  {shown['machine']}  {shown['status']}, {shown['steps']} steps "
        f"in {seconds(shown['duration'])}")
    if indent:
        say(f"{indent}  {_cost_line(shown)}")
        return
    states = shown["states"]
    if states:
        table(["state", "visits", "total", "mean", "p50", "p95", "max"],
              [[name, str(one["visits"]), *(seconds(one[key]) for key in ("total", "mean", "p50", "p95", "max"))]
               for name, one in sorted(states.items(), key=lambda item: -item[1]["total"])])
    if shown["transitions"]:
        say("")
        table(["from", "to", "event", "taken"], [[one["source"], one["target"], one["event"], str(one["count"])]
                                                 for one in shown["transitions"]])
    if shown["llm"]:
        say("")
        table(["llm", "model", "calls", "failed", "tokens in", "tokens out", "latency mean", "p95", "cost"],
              [[binding, ", ".join(one["models"]), str(one["calls"]), str(one["failures"]), str(one["prompt_tokens"]),
                str(one["completion_tokens"]), seconds(one["latency"]["mean"]), seconds(one["latency"]["p95"]),
                usd(one["cost"])] for binding, one in shown["llm"].items()])
    if shown["tools"]:
        say("")
        table(["tool", "calls", "failed", "mean", "p95", "max"],
              [[tool, str(one["calls"]), str(one["failures"]), *(seconds(one["duration"][key])
                                                                 for key in ("mean", "p95", "max"))]
               for tool, one in shown["tools"].items()])
    say("")
    _print_tail(shown)


def _print_tail(shown: dict[str, Any]) -> None:
    from agentfsm.cli.render import say

    errors = ", ".join(f"{kind} x{count}" for kind, count in shown["errors"].items()) or "none"
    say(f"errors: {errors}; retries: {shown['retries']['total']}")
    say(("own calls: " if "children" in shown else "") + _cost_line(shown))
    memory = shown["memory"]
    if memory["samples"]:
        say(f"memory: peak {size(memory['peak'])}, last {size(memory['last'])} ({len(memory['samples'])} samples)")
    if "children" in shown:
        say("")
        say("child runs:")
        for child in shown["children"]:
            _print_run(child, "  ")
        total = shown["total"]
        say("")
        say(f"total ({total['runs']} runs): {total['steps']} steps, {total['llm_calls']} LLM calls, "
            f"{total['tool_calls']} tool calls, {sum(total['errors'].values())} errors; {_cost_line(total)}")


def _print_machine(shown: dict[str, Any]) -> None:
    from agentfsm.cli.render import say

    rate = shown["success_rate"]
    since = "" if shown["since"] is None else f" in the last {_age(shown['since'])}"
    statuses = ", ".join(f"{count} {status}" for status, count in sorted(shown["statuses"].items()))
    say(f"machine {shown['machine']}: {shown['runs']} runs{since} ({statuses or 'none'})")
    say(f"success rate: {'-' if rate is None else f'{rate:.1%}'}; mean steps {shown['mean_steps']:.1f}; "
        f"duration p50 {seconds(shown['duration']['p50'])}, p95 {seconds(shown['duration']['p95'])}")
    say(f"LLM calls {shown['llm_calls']}; {_cost_line(shown)}")


def _age(total: float) -> str:
    """An age as a person says it: 7d, 1d 6h, 2h 30m, 45m, 30s."""
    units = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
    parts = []
    left = round(total)
    for name, size in units:
        if left >= size:
            parts.append(f"{left // size}{name}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"
