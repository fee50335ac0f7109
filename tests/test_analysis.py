"""`agentfsm validate`'s static analysis: each finding's code, place and message; `--strict`; `--paths`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentfsm.service.language import validate_files
from agentfsm.spec.problems import ANALYSIS_CODES

ROOT = Path(__file__).resolve().parent.parent
MACHINES = sorted(p for p in (ROOT / "machines").glob("*.yaml") if not p.name.endswith(".test.yaml"))

HEADER = "agentfsm: 1\nname: m\n"


def found(tmp_path: Path, body: str, **options: bool) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(HEADER + body, encoding="utf-8")
    return [f"{p.line}:{p.column} {p.severity} {p.code} {p.message}" for p in validate_files([path], **options)]


def codes(lines: list[str]) -> list[str]:
    return [" ".join(line.split()[:3]) for line in lines]


def test_the_shipped_machines_have_no_findings() -> None:
    assert validate_files(MACHINES, strict=True) == []


def test_a_rule_after_an_unguarded_one_is_shadowed(tmp_path: Path) -> None:
    lines = found(tmp_path, """initial: a
states:
  a:
    type: set
    set: {x: 1}
    transitions:
      - {to: b}
      - {event: done, to: c}
  b: {type: final}
  c: {type: final}
""")
    assert codes(lines) == ["10:9 warning shadowed-rule"]
    assert "states.a.transitions[1]: can never be taken: the earlier rule states.a.transitions[0] has no guard" \
        in lines[0]


def test_complementary_guards_shadow_the_default_and_trap_the_loop(tmp_path: Path) -> None:
    lines = found(tmp_path, """inputs: {n: {type: integer, default: 0}}
initial: start
states:
  start:
    type: choice
    transitions:
      - {when: "n < 3", to: spin}
      - {when: "not (n < 3)", to: spin}
      - {to: done}
  spin:
    type: set
    set: {n: "{{ n }}"}
    next: start
  done: {type: final}
""")
    # the cycle's guard reads `n`, which the cycle sets: it is no unbounded cycle
    assert codes(lines) == ["6:3 warning trap-state", "11:9 warning shadowed-rule", "12:3 warning trap-state"]
    assert "transitions[0] and states.start.transitions[1] have guards that can never both be false" in lines[1]


def test_a_cycle_bounded_by_nothing_is_reported_once(tmp_path: Path) -> None:
    body = """initial: a
states:
  a:
    type: set
    set: {x: 1}
    transitions:
      - {event: stop, to: end}
      - {to: b}
  b:
    type: set
    set: {y: 2}
    next: a
  end: {type: final}
"""
    lines = found(tmp_path, body)
    assert codes(lines) == ["5:3 warning unbounded-cycle"]
    assert "the cycle a -> b -> a has no bound" in lines[0] and "max_steps (1000)" in lines[0]
    # each of the three bounds silences it
    assert found(tmp_path, body.replace("    set: {y: 2}", "    max_visits: 3\n    set: {y: 2}")) == []
    assert found(tmp_path, body.replace("{event: stop, to: end}", "{when: 'x > 5', to: end}")) == []
    waits = body.replace("  b:\n    type: set\n    set: {y: 2}\n",
                         "  b:\n    type: wait\n    event: go\n    timeout: 1h\n")
    assert found(tmp_path, waits) == []


def test_a_wait_without_timeout(tmp_path: Path) -> None:
    lines = found(tmp_path, """initial: w
states:
  w:
    type: wait
    event: go
    next: end
  end: {type: final}
""")
    assert codes(lines) == ["5:3 warning wait-without-timeout"]
    # an agent's receive waits for another agent alike
    received = found(tmp_path, "initial: get\nstates:\n  get: {type: receive, next: end}\n  end: {type: final}\n")
    assert codes(received) == ["5:3 warning wait-without-timeout"]


def test_a_key_missing_on_one_path_names_that_path(tmp_path: Path) -> None:
    body = """inputs: {go: {type: boolean, default: true}}
initial: route
states:
  route:
    type: choice
    transitions:
      - {when: go, to: make}
      - {to: use}
  make:
    type: set
    set: {thing: 1}
    next: use
  use:
    type: final
    output: "{{ thing }}"
"""
    lines = found(tmp_path, body)
    assert codes(lines) == ["17:13 warning maybe-undefined"]
    assert "states.use.output: 'thing' may not be set here: nothing assigns it on the path route -> use" in lines[0]
    # asking first is fine, and so is a key of the initial context
    assert found(tmp_path, body.replace('"{{ thing }}"', '"{{ thing if thing is defined else 0 }}"')) == []
    assert found(tmp_path, "context: {thing: 0}\n" + body) == []


def test_a_branch_that_can_never_succeed_means_the_join_never_completes(tmp_path: Path) -> None:
    lines = found(tmp_path, """initial: fan
states:
  fan:
    type: parallel
    branches:
      good: {initial: a, states: {a: {type: final, output: 1}}}
      bad:
        initial: a
        states:
          a: {type: fail, error: nope}
    next: done
  done: {type: final}
""")
    assert lines == ["10:9 warning child-never-ends states.fan.branches.bad: its machine can reach no final state "
                     "from 'a', so this state can never complete"]


def test_validate_checks_a_test_file_as_one() -> None:
    assert validate_files(sorted((ROOT / "machines").glob("*.test.yaml")), strict=True) == []


def test_every_analysis_code_has_a_case() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    assert {code for code in ANALYSIS_CODES if f"warning {code}" not in source} == set()


def test_strict_makes_warnings_errors_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(HEADER + "initial: w\nstates:\n  w: {type: wait, event: go, next: end}\n  end: {type: final}\n")
    plain = subprocess.run([sys.executable, "-m", "agentfsm", "validate", str(path)], capture_output=True, text=True)
    strict = subprocess.run([sys.executable, "-m", "agentfsm", "validate", "--strict", str(path)],
                            capture_output=True, text=True)
    assert plain.returncode == 0 and "warning wait-without-timeout" in plain.stdout
    assert strict.returncode == 2 and "error wait-without-timeout" in strict.stdout


@pytest.mark.parametrize("as_json", [False, True])
def test_paths_lists_each_way_to_an_end(as_json: bool) -> None:
    args = [sys.executable, "-m", "agentfsm", "validate", "--paths", str(ROOT / "machines/approval.yaml")]
    result = subprocess.run(args + (["--json"] if as_json else []), capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    if as_json:
        (listing,) = json.loads(result.stdout)
        assert [(p["end"], p["states"]) for p in listing["paths"]] == [
            ("published", ["draft", "review", "published"]), ("escalate", ["draft", "review", "escalate"])]
    else:
        assert "  draft --done--> review --approved--> published" in result.stdout.splitlines()
