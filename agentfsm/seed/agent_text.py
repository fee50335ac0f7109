"""What the agent states read from and write to text: prompts, plans, actions, final answers, tool results.

Pure functions, so each rule can be read and tested on its own; the states in
`agent_states.py` decide where the run goes with them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TOOL_WORDS = ("calculate", "search", "read")
"""Words that make a thought an action even when it names no tool of the agent (the mission's list)."""

_NUMBERING = re.compile(r"^[\d.\-*)\s]+")
_CALL = re.compile(r"\b(\w+)\(")
# A lookahead, so "Thought: use calculator: 2+2" yields both `Thought` and `calculator`.
_LABELLED = re.compile(r"\b(?=(\w+):[ \t]*([^\n]*))")
_FINAL_ANSWER = re.compile(r"final answer[:\s]+(.*)", re.IGNORECASE)
_FINAL_ANSWER_BLOCK = re.compile(r"final answer[:\s]+(.*)", re.IGNORECASE | re.DOTALL)
_RECENT = 3
_SHORT = 100


# -- tasks and plans ---------------------------------------------------------------------------------


def analyze_task(task: str) -> dict[str, Any]:
    """A rough reading of a task: how complex it looks and whether it asks for a plan or is a bare question."""
    lowered = task.lower()
    simple = len(task) < 50
    return {
        "complexity": "simple" if simple else "complex",
        # "step" as in machines/react_agent.yaml: it covers "steps" and "step by step"
        "requires_planning": "plan" in lowered or "step" in lowered,
        "requires_clarification": "?" in task and len(task.split()) < 5,
        "estimated_steps": 3 if simple else 5,
    }


def planning_prompt(task: Any) -> str:
    return f"Break this task into a short numbered list of concrete actions, one per line.\nTask: {task}"


def parse_plan(reply: str) -> list[str]:
    """The steps of a numbered or bulleted list, numbering removed; one catch-all step when there are none."""
    steps = []
    for line in reply.splitlines():
        line = line.strip()
        if not any(char.isalpha() for char in line):
            continue
        cleaned = _NUMBERING.sub("", line).strip()
        if cleaned:
            steps.append(cleaned)
    return steps or ["Carry out the task"]


def current_goal(task: Any, plan: Sequence[str], step: int) -> Any:
    """The plan's current step, or the task itself once the plan is done (or when there is none)."""
    return plan[step] if 0 <= step < len(plan) else task


# -- the agent's scratchpad and prompts ---------------------------------------------------------------


def describe_action(action: Any) -> str:
    if isinstance(action, Mapping) and "tool" in action:
        return f"{action['tool']}({action.get('input', '')})"
    return str(action)


def _entry_lines(entry: Mapping[str, Any], limit: int | None = None) -> list[str]:
    def short(value: Any) -> str:
        text = str(value)
        return text if limit is None or len(text) <= limit else text[:limit] + "..."

    lines = []
    if "thought" in entry:
        lines.append(f"Thought: {short(entry['thought'])}")
    if "action" in entry:
        lines.append(f"Action: {describe_action(entry['action'])}")
    if "result" in entry:
        lines.append(f"Result: {short(result_text(entry['result']))}")
    if "error" in entry:
        lines.append(f"Error: {short(entry['error'])}")
    return lines


def thinking_prompt(task: Any, goal: Any, scratchpad: Sequence[Mapping[str, Any]], tools: Iterable[str]) -> str:
    """What the agent is asked before each action: the task, the goal, its last few steps and its tools."""
    lines = [f"Task: {task}", f"Current goal: {goal}"]
    recent = scratchpad[-_RECENT:]
    if recent:
        lines.append("Recent steps:")
        for entry in recent:
            lines.extend(_entry_lines(entry))
    names = list(tools)
    if names:
        lines.append(f"Tools: {', '.join(names)}. Use one by writing name(input).")
    lines.append("What is the next step? Once you know the answer, write 'Final Answer:' followed by it.")
    return "\n".join(lines)


def reflection_prompt(task: Any, scratchpad: Sequence[Mapping[str, Any]]) -> str:
    """What the agent is asked after an observation: is what it has enough to answer?"""
    lines = [f"Task: {task}", "What has happened so far:"]
    for entry in scratchpad:
        lines.extend(f"- {line}" for line in _entry_lines(entry, _SHORT))
    lines.append("Is this enough to answer the task? If it is, write 'Final Answer:' followed by the answer.")
    return "\n".join(lines)


# -- reading replies ------------------------------------------------------------------------------------


def final_answer_in(text: str, *, whole: bool = False) -> str | None:
    """The answer after 'Final Answer:' (its line, or everything after it when `whole`); None when there is none.

    A reply that says "final answer" with nothing readable after it is its own answer.
    """
    if "final answer" not in text.lower():
        return None
    match = (_FINAL_ANSWER_BLOCK if whole else _FINAL_ANSWER).search(text)
    answer = match.group(1).strip() if match else ""
    return answer or text.strip()


def mentions_tool(thought: str, tools: Iterable[str]) -> bool:
    """True when a thought calls for an action: it names one of the agent's tools or one of the mission's verbs."""
    lowered = thought.lower()
    return any(word in lowered for word in (*TOOL_WORDS, *(name.lower() for name in tools)))


def _closing_paren(text: str, opening: int) -> int | None:
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return None


def _candidate_actions(thought: str) -> list[dict[str, str]]:
    """Every `name(input)` in the thought (balanced parentheses), then every `name: input`, in order."""
    found = []
    for match in _CALL.finditer(thought):
        close = _closing_paren(thought, match.end() - 1)
        if close is not None:
            found.append({"tool": match.group(1).lower(), "input": thought[match.end():close].strip()})
    for match in _LABELLED.finditer(thought):
        found.append({"tool": match.group(1).lower(), "input": match.group(2).strip()})
    return found


def parse_action(thought: str, tools: Iterable[str] = ()) -> dict[str, str] | None:
    """The action a thought asks for, as `{"tool", "input"}`: the first that names a known tool, else the first found.

    `calculator((2 + 3) * 4)` reads as the input `(2 + 3) * 4`; None when the thought holds no action at all.
    """
    candidates = _candidate_actions(thought)
    known = {name.lower() for name in tools}
    for candidate in candidates:
        if candidate["tool"] in known:
            return candidate
    return candidates[0] if candidates else None


# -- tool results and errors ----------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """The value itself when it is JSON, else its text: a context must stay storable."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _as_mapping(result: Any) -> Mapping[str, Any] | None:
    if isinstance(result, Mapping):
        return result
    for method in ("model_dump", "dict"):  # pydantic 2, then pydantic 1
        dump = getattr(result, method, None)
        if callable(dump):
            dumped = dump()
            if isinstance(dumped, Mapping):
                return dumped
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return None


def tool_result_json(result: Any) -> dict[str, Any]:
    """A tool's result as JSON with a `success` flag.

    A result that says whether it succeeded (a `success` field or attribute, as a
    ToolResult does) keeps its fields; any other value is a success whose `output` it is.
    """
    mapping = _as_mapping(result)
    if mapping is not None and "success" in mapping:
        fields = {str(key): _json_value(value) for key, value in mapping.items()}
        return {**fields, "success": bool(mapping["success"])}
    if mapping is None and hasattr(result, "success"):
        return {"success": bool(result.success), "output": _json_value(getattr(result, "output", None)),
                "error": _json_value(getattr(result, "error", None))}
    return {"success": True, "output": _json_value(dict(mapping) if mapping is not None else result)}


def succeeded(result: Any) -> bool:
    """Whether a tool result (as `tool_result_json` makes it, or an object with `success`) succeeded."""
    if isinstance(result, Mapping):
        return bool(result.get("success", False))
    return bool(getattr(result, "success", False))


def result_text(result: Any) -> str:
    """A result as an answer reads it: its `output` when it has one."""
    if isinstance(result, Mapping) and "output" in result:
        return str(result["output"])
    return str(result)


def failure_text(result: Any) -> str:
    """Why a tool result failed, as one line."""
    error = result.get("error") if isinstance(result, Mapping) else getattr(result, "error", None)
    return str(error) if error else "the tool reported a failure"


def error_text(error: Any) -> str:
    """An error as a line of text: the states' own strings, or the message of a caught error's object."""
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("type") or "an unknown error")
    return str(error) if error else "an unknown error"
