"""`agentfsm inspect RUN` as text: one screen that tells a run's story, from `agentfsm.service.inspection`."""

from __future__ import annotations

from typing import Any

from agentfsm.cli.render import say, when
from agentfsm.cli.timeline import folded

PATH_ITEMS = 40
"""Pieces of a (folded) path shown: the first ten and the last thirty, when there are more."""


def _path_piece(piece: dict[str, Any]) -> str:
    if "mark" in piece:
        return f"[{'checkpoint' if piece['mark'] == 'checkpoint' else 'branch'} {piece['name']}]"
    states = " -> ".join(piece["states"])
    return f"({states}) x{piece['times']}" if piece["times"] > 1 and len(piece["states"]) > 1 else (
        f"{states} x{piece['times']}" if piece["times"] > 1 else states)


def path_text(pieces: list[dict[str, Any]]) -> str:
    shown = [_path_piece(piece) for piece in pieces]
    if len(shown) > PATH_ITEMS:
        shown = [*shown[:10], f"... {len(shown) - 40} more ...", *shown[-30:]]
    return " -> ".join(shown) or "(no steps yet)"


def _error_text(found: dict[str, Any]) -> str:
    error = found["error"]
    where = f"step {found['step']}, state {found.get('state') or error.get('state')}"
    text = f"{where}: {error.get('type')}: {folded(error.get('message'), 160)}"
    if found.get("caught"):
        text += f" (caught: went on to {found.get('next_state')})"
    return text


def _usage_lines(cost: dict[str, Any]) -> list[str]:
    if not cost["bindings"]:
        return ["no LLM calls"]
    lines = []
    for name, used in cost["bindings"].items():
        price = "no price known" if used["cost"] is None else f"${used['cost']:.6f}"
        lines.append(f"{name} ({used['model']}): {used['calls']} call(s), {used['prompt_tokens']} in + "
                     f"{used['completion_tokens']} out tokens, {price}")
    total = "" if cost["cost"] is None else f", ${cost['cost']:.6f}"
    lines.append(f"total: {cost['tokens']} tokens{total}" + (" (some calls unpriced)" if cost["unpriced"] else ""))
    return lines


def _llm_lines(llm: dict[str, Any]) -> list[str]:
    head = (f"step {llm['step']}, state {llm.get('state')}: {llm.get('binding')} ({llm.get('model')}), "
            f"{llm.get('prompt_tokens')}+{llm.get('completion_tokens')} tokens, {llm.get('finish_reason')}")
    request = llm.get("request") if isinstance(llm.get("request"), dict) else {}
    messages = request.get("messages") or []
    asked = messages[-1].get("content") if messages and isinstance(messages[-1], dict) else None
    reply = llm.get("reply") if isinstance(llm.get("reply"), dict) else {}
    answer: Any = reply.get("text")
    if reply.get("tool_calls"):
        answer = {"tool_calls": reply["tool_calls"]}
    lines = [head, f"  asked: {folded(asked, 200)}"]
    lines.append(f"  error: {llm['error'].get('type')}: {folded(llm['error'].get('message'), 160)}"
                 if llm.get("error") else f"  reply: {folded(answer, 200)}")
    return lines


def _section(title: str, lines: list[str]) -> None:
    say(f"{title}:")
    for line in lines:
        say(f"  {line}")


def render_inspection(view: dict[str, Any]) -> None:
    """The JSON of `views.inspection_json`, as a person reads it."""
    run = view["run"]
    say(f"run {run['run_id']}  machine {run['machine']}  status {run['status']}  branch {view['branch']}  "
        f"steps {run['steps']}")
    say(f"started {when(run['created_at'])}, updated {when(run['updated_at'])}"
        + (f", child {run['child_name']} of run {run['parent_run']}" if run.get("parent_run") else ""))
    if view["paused"]:
        paused = view["paused"]
        if paused.get("reason") == "waiting":
            due = f", timer due {when(paused['deadline'])}" if paused.get("deadline") else ""
            say(f"waiting in {paused['state']} for: {', '.join(paused.get('events') or [])}{due}")
        else:
            say(f"paused before {paused['state']} ({paused['reason']}); continue with: agentfsm resume {run['run_id']}")
    elif view["current"]:
        say(f"{'ended in' if run['status'] in ('succeeded', 'failed', 'cancelled') else 'at'} {view['current']}")
    _section("path", [path_text(view["path"])])
    if view["checkpoints"]:
        _section("checkpoints", [f"{c['name']}: step {c['step']} of {c['branch']}" for c in view["checkpoints"]])
    if len(view["branches"]) > 1:
        _section("branches", [f"{b['name']}{' (head)' if b['head'] else ''}: "
                              + (f"from {b['parent']}@{b['fork']}, " if b["parent"] else "")
                              + f"{b['status']}, step {b['last_step']}, {b['state'] or '(end)'}"
                              for b in view["branches"]])
    if view["last_error"]:
        error = view["last_error"]
        lines = [_error_text(error)]
        if error["error"].get("detail"):
            lines.append(f"detail: {folded(error['error']['detail'], 200)}")
        _section("last error", lines)
    if view["last_llm"]:
        _section("last LLM call", _llm_lines(view["last_llm"]))
    _section("usage", _usage_lines(view["cost"]))
    context = view["context"]
    _section("context", [f"{key}: {folded(value, 160)}" for key, value in context.items()] or ["(empty)"])
    if view["children"]:
        _section("children", [f"{child['child_name']}: run {child['run_id']} {child['status']}, "
                              f"{child['steps']} steps" for child in view["children"]])

