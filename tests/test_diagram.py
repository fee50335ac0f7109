"""Diagrams are checked by the real Mermaid parser: it must accept them and find our states and arrows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentfsm import State, StateMachine, load_machine
from agentfsm.observability.diagram import mermaid_from_spec, state_ids
from agentfsm.spec.loader import load_spec
from tests.mermaid import parse_mermaid_many

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "machines").glob("*.yaml") if not p.name.endswith(".test.yaml"))

AWKWARD_NAMES = [
    "plain",
    "with spaces",
    "dash-ed",
    "colon: here",
    "semi;colon",
    "end",
    "state",
    "direction",
    "turn direction LR now",
    "über ünïcödé 日本",
    'quote " mark',
    "hash #58; literal",
    "**bold** _under_",
    "<b>tag</b>",
    "%%{init}%% percent",
    "root",
    "x_start",
    "x_end",
    "constructor",
]

AWKWARD_MACHINE = "\n".join(
    [
        "agentfsm: 1",
        "name: awkward",
        "context: {n: 0}",
        f"initial: {AWKWARD_NAMES[0]!r}",
        "states:",
        *[
            line
            for index, name in enumerate(AWKWARD_NAMES[:-1])
            for line in (
                f"  {name!r}:",
                "    type: set",
                "    set: {n: '{{ n + 1 }}'}",
                "    transitions:",
                f"      - {{when: 'n < 2', to: {AWKWARD_NAMES[index + 1]!r}}}",
                f"      - {{event: 'direction LR', to: {AWKWARD_NAMES[-1]!r}}}",
                f"      - {{to: {AWKWARD_NAMES[-1]!r}}}",
            )
        ],
        f"  {AWKWARD_NAMES[-1]!r}:",
        "    type: final",
    ]
)


def spec_diagram(text: str, tmp_path: Path) -> str:
    path = tmp_path / "machine.yaml"
    path.write_text(text, encoding="utf-8")
    return mermaid_from_spec(load_spec(path).spec)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every diagram of this module, parsed in one node process."""
    tmp = tmp_path_factory.mktemp("diagrams")
    texts = {path.name: mermaid_from_spec(load_spec(path).spec) for path in EXAMPLES}
    texts["awkward"] = spec_diagram(AWKWARD_MACHINE, tmp)
    texts["python"] = python_machine().visualize()
    results = parse_mermaid_many(list(texts.values()))
    return {name: {"text": text, **result} for (name, text), result in zip(texts.items(), results, strict=True)}


def python_machine() -> StateMachine:
    machine = StateMachine("py")
    machine.add_state(State("start: here"), initial=True)
    machine.add_state(State("done; finally"), final=True)
    machine.add_transition("start: here", "done; finally", "go")
    return machine


def names(result: dict[str, Any]) -> dict[str, str]:
    """Mermaid id -> the state's name: a choice node's is the note beside it, any other's its label's first line
    (the lines under it are what its kind shows: `llm: brain`)."""
    return {sid: result["notes"][sid] if result["shapes"][sid] == "choice" else label.split("\n")[0]
            for sid, label in result["states"].items()}


def arrows(result: dict[str, Any]) -> set[tuple[str, str, str]]:
    labels = names(result)
    return {(labels.get(t["from"], t["from"]), labels.get(t["to"], t["to"]), t["label"]) for t in result["transitions"]}


@pytest.mark.parametrize("example", [p.name for p in EXAMPLES])
def test_every_example_diagram_parses_with_all_states_and_rules(parsed: dict[str, Any], example: str) -> None:
    result = parsed[example]
    assert result["ok"], result.get("error")
    spec = load_spec(ROOT / "machines" / example).spec
    by_id = {sid: name for name, sid in state_ids(spec.states).items()}
    top = {sid: name for sid, name in names(result).items() if sid not in result["parents"]}
    assert sorted(top.values()) == sorted(state.diagram_label(name) for name, state in spec.states.items())
    assert set(top) == set(by_id)
    # the top level's arrows (a composite state's inner machine has arrows of its own), with the states' names
    top_arrows = [(by_id.get(t["from"], t["from"]), by_id.get(t["to"], t["to"]), t["label"])
                  for t in result["transitions"] if t["from"] not in result["parents"] and t["to"] not in result["parents"]]
    found = set(top_arrows)
    assert ("[*]", spec.initial, "") in found
    for name, state in spec.states.items():
        if state.type in ("final", "fail"):
            assert (name, "[*]", "") in found
    machine = load_machine(ROOT / "machines" / example)
    rule_count = sum(len(machine.transitions_from(name)) + len(s.catch) for name, s in machine.states.items())
    assert len(top_arrows) == rule_count + 1 + sum(s.is_terminal for s in machine.states.values())


def test_react_agent_arrows_carry_events_guards_and_errors(parsed: dict[str, Any]) -> None:
    found = arrows(parsed["react_agent.yaml"])
    assert ("planning", "thinking", "done") in found
    assert ("initial", "planning", "['plan' in task|lower or 'step' in task|lower]") in found
    assert ("error_recovery", "thinking", "[attempts < 2]") in found
    assert ("acting", "error_recovery", "error: *") in found
    assert ("thinking", "error_recovery", "error: llm") in found


def test_kinds_are_visible_choice_nodes_waits_and_bindings(parsed: dict[str, Any]) -> None:
    react = parsed["react_agent.yaml"]
    ids = {name: sid for sid, name in names(react).items()}
    assert {name for name, sid in ids.items() if react["shapes"][sid] == "choice"} == {
        "initial", "reflecting", "error_recovery"}
    assert react["states"][ids["thinking"]] == "thinking\nllm: brain"
    assert react["states"][ids["acting"]] == "acting\ntool: calculator"
    review = {names(parsed["approval.yaml"])[sid]: label for sid, label in parsed["approval.yaml"]["states"].items()}
    assert review["review"] == "review\nwaits for: approved | rejected\ntimer: 2d"
    assert react["classes"] == {ids["error"]: ["fail"], ids["finalizing"]: ["final"]}


def test_approval_wait_arrows_carry_its_events_and_the_timer(parsed: dict[str, Any]) -> None:
    found = arrows(parsed["approval.yaml"])
    assert {("review", "published", "approved"), ("review", "revise", "rejected"),
            ("review", "escalate", "timeout"), ("revise", "review", "done")} <= found


def test_awkward_state_names_survive_as_labels(parsed: dict[str, Any]) -> None:
    result = parsed["awkward"]
    assert result["ok"], result.get("error")
    assert sorted(names(result).values()) == sorted(AWKWARD_NAMES)
    found = arrows(result)
    for before, after in zip(AWKWARD_NAMES[:-2], AWKWARD_NAMES[1:-1], strict=True):
        assert (before, after, "[n < 2]") in found
        assert (before, AWKWARD_NAMES[-1], "direction LR") in found
        assert (before, AWKWARD_NAMES[-1], "otherwise") in found


def test_the_word_direction_is_never_bare(parsed: dict[str, Any]) -> None:
    assert "direction" not in parsed["awkward"]["text"].lower()


def test_python_built_machine_visualizes(parsed: dict[str, Any]) -> None:
    result = parsed["python"]
    assert result["ok"], result.get("error")
    assert arrows(result) >= {("[*]", "start: here", ""), ("start: here", "done; finally", "go"),
                              ("done; finally", "[*]", "")}


def test_diagram_command_writes_markdown_and_plain_files(tmp_path: Path) -> None:
    hello = ROOT / "machines" / "hello.yaml"
    for name in ("out.md", "out.mmd"):
        completed = subprocess.run([sys.executable, "-m", "agentfsm", "diagram", str(hello), "-o", str(tmp_path / name)],
                                   capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "out.md").read_text().startswith("```mermaid\nstateDiagram-v2\n")
    assert (tmp_path / "out.mmd").read_text().startswith("stateDiagram-v2\n")
