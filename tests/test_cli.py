"""The `agentfsm` command as a user runs it: a real subprocess, its exit code and what it prints.

Every case runs `python -m agentfsm ...` with an argv list (no shell). Cases of the same
kind (bad input, run-time failures) are started together on a small thread pool, once
per module, so the file stays fast; each case is still its own test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import agentfsm

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ROOT / "machines"
HELLO = MACHINES / "hello.yaml"
TIMEOUT = 60  # seconds; a run that hangs fails its test instead of the whole session

# FILE:LINE:COL: severity code message
PROBLEM_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning) "
                          r"(?P<code>[a-z0-9]+(?:-[a-z0-9]+)*) (?P<message>\S.*)$")
# `   3    32 ms  acting --done--> observing  0.2 ms` or `   7  33 ms  finalizing (end)  0.1 ms`
PROGRESS_LINE = re.compile(r"^\s*(?P<step>\d+)\s.*?(?<![\w-])(?P<state>\w+) (?:--[\w.]+-->|\(end\))")

_ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}
_ENV.pop("FORCE_COLOR", None)
_ENV.pop("AGENTFSM_STORE", None)


def agentfsm_cmd(*args: object, cwd: Path = ROOT, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run `python -m agentfsm ARGS...` and capture what a user would see."""
    return subprocess.run(
        [sys.executable, "-m", "agentfsm", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=_ENV,
        stdin=subprocess.DEVNULL,
    )


def run_all(commands: dict[str, tuple[Sequence[object], Path]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run many commands concurrently; a command that times out is recorded, not raised."""

    def one(item: tuple[Sequence[object], Path]) -> subprocess.CompletedProcess[str]:
        args, cwd = item
        try:
            return agentfsm_cmd(*args, cwd=cwd)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, -999, "", f"TIMED OUT after {TIMEOUT}s")

    with ThreadPoolExecutor(max_workers=max(4, (os.cpu_count() or 2) * 2)) as pool:
        return dict(zip(commands, pool.map(one, commands.values()), strict=True))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, show(result)
    assert "Traceback" not in result.stdout, show(result)


# --- run: the happy path ------------------------------------------------------------------


@pytest.fixture(scope="module")
def react_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    # The command exactly as the README shows it, from a copy of the repository's machines/
    # (a run may write a store under its working directory; the repository stays clean).
    work = tmp_path_factory.mktemp("react")
    shutil.copytree(MACHINES, work / "machines")
    react = "machines/react_agent.yaml"
    task = "-i", "task=What is 17 * 23?"
    return run_all({
        "plain": (["run", react, *task], work),
        "quiet": (["run", react, *task, "--quiet"], work),
        "json": (["run", react, *task, "--json"], work),
        "json-quiet": (["run", react, *task, "--json", "-q"], work),
        "failed": (["run", react, "-i", "task=What is 1/0?"], work),
        "failed-json": (["run", react, "-i", "task=What is 1/0?", "--json"], work),
    })


def test_run_prints_the_answer_and_progress(react_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = react_runs["plain"]
    assert result.returncode == 0, show(result)
    assert result.stdout == "391\n"
    assert_no_traceback(result)
    progress = [m for line in result.stderr.splitlines() if (m := PROGRESS_LINE.match(line))]
    assert [int(m["step"]) for m in progress] == list(range(1, len(progress) + 1)), result.stderr
    states = [m["state"] for m in progress]
    assert states[0] == "initial"
    assert {"thinking", "acting", "observing", "finalizing"} <= set(states), result.stderr
    assert states[-1] == "finalizing"
    assert "succeeded" in result.stderr
    assert "react-agent" in result.stderr  # the machine's name heads the progress


def test_quiet_removes_the_progress(react_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = react_runs["quiet"]
    assert result.returncode == 0, show(result)
    assert result.stdout == "391\n"
    assert result.stderr == ""


@pytest.mark.parametrize("name", ["json", "json-quiet"])
def test_json_prints_one_object(react_runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    result = react_runs[name]
    assert result.returncode == 0, show(result)
    document = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(document, dict)
    assert {"run_id", "status", "output", "context", "steps"} <= set(document)
    assert document["status"] == "succeeded"
    assert document["output"] == "391"
    assert document["context"]["task"] == "What is 17 * 23?"
    assert isinstance(document["steps"], int) and document["steps"] >= 5
    assert isinstance(document["run_id"], str) and document["run_id"]
    if name == "json-quiet":
        assert result.stderr == ""


def test_a_failed_run_exits_1_with_one_error_line(react_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = react_runs["failed"]
    assert result.returncode == 1, show(result)
    assert result.stdout == ""
    assert_no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert re.fullmatch(r"error: state '\w+': \S.*", errors[0]), errors[0]
    assert errors[0].startswith("error: state 'error': ")
    assert "division by zero" in errors[0]
    assert result.stderr.rstrip().endswith(errors[0])  # the last thing the user reads


def test_a_failed_run_with_json(react_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = react_runs["failed-json"]
    assert result.returncode == 1, show(result)
    document = json.loads(result.stdout)
    assert document["status"] == "failed"
    assert {"run_id", "status", "output", "context", "steps"} <= set(document)
    assert document["output"] is None
    assert_no_traceback(result)


# --- run: inputs --------------------------------------------------------------------------

INPUTS_MACHINE = """\
agentfsm: 1
name: inputs
inputs:
  n: {type: integer}
  task: {type: string}
  options: {type: object}
  items: {type: array}
  anything: {type: any}
initial: done
states:
  done:
    type: final
    output:
      n: "{{ n }}"
      task: "{{ task }}"
      options: "{{ options }}"
      items: "{{ items }}"
      anything: "{{ anything }}"
"""


@pytest.fixture(scope="module")
def input_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("inputs")
    (work / "m.yaml").write_text(INPUTS_MACHINE, encoding="utf-8")
    (work / "in.json").write_text(json.dumps({"n": 7, "task": "from json", "items": [1, "two"]}), encoding="utf-8")
    (work / "in.yaml").write_text("n: 8\ntask: '42'\noptions: {deep: {x: [1, 2]}}\n", encoding="utf-8")
    (work / "list.yaml").write_text("- n\n- 3\n", encoding="utf-8")
    (work / "broken.json").write_text('{"n": 1,', encoding="utf-8")
    base = ["run", "m.yaml", "--json", "-q"]
    return run_all({
        "typed": ([*base, "-i", "n=3", "-i", "task=391", "-i", 'options={"a": 1, "b": [true, null]}',
                   "-i", 'items=[1, 2.5, "x"]'], work),
        "string-json-looking": ([*base, "-i", 'task={"a": 1}'], work),
        "any": ([*base, "-i", "anything=true", "-i", "n=0"], work),
        "any-text": ([*base, "-i", "anything=hello world"], work),
        "equals-in-value": ([*base, "-i", "task=a=b"], work),
        "json-file": (["run", "m.yaml", "--json", "-q", "--inputs", "in.json"], work),
        "yaml-file": (["run", "m.yaml", "--json", "-q", "--inputs", "in.yaml"], work),
        "file-then-flag": (["run", "m.yaml", "--json", "-q", "--inputs", "in.json", "-i", "n=9"], work),
        "no-equals": (["run", "m.yaml", "-i", "n3"], work),
        "empty-key": (["run", "m.yaml", "-i", "=3"], work),
        "inputs-not-a-mapping": (["run", "m.yaml", "--inputs", "list.yaml"], work),
        "inputs-broken": (["run", "m.yaml", "--inputs", "broken.json"], work),
        "inputs-missing": (["run", "m.yaml", "--inputs", "nope.json"], work),
    })


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # an integer input gets the number, a string input keeps `391` as text, JSON objects and lists
        ("typed", {"n": 3, "task": "391", "options": {"a": 1, "b": [True, None]}, "items": [1, 2.5, "x"]}),
        ("string-json-looking", {"task": '{"a": 1}'}),
        ("any", {"anything": True, "n": 0}),
        ("any-text", {"anything": "hello world"}),
        ("equals-in-value", {"task": "a=b"}),
        ("json-file", {"n": 7, "task": "from json", "items": [1, "two"]}),
        ("yaml-file", {"n": 8, "task": "42", "options": {"deep": {"x": [1, 2]}}}),
        ("file-then-flag", {"n": 9, "task": "from json"}),
    ],
)
def test_input_values(input_runs: dict[str, subprocess.CompletedProcess[str]], name: str,
                      expected: dict[str, object]) -> None:
    result = input_runs[name]
    assert result.returncode == 0, show(result)
    output = json.loads(result.stdout)["output"]
    for key, value in expected.items():
        assert output[key] == value, key
        assert type(output[key]) is type(value), key


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("no-equals", "-i expects key=value, got 'n3'"),
        ("empty-key", "-i expects key=value"),
        ("inputs-not-a-mapping", "list.yaml"),
        ("inputs-broken", "broken.json:"),
        ("inputs-missing", "nope.json"),
    ],
)
def test_bad_input_options(input_runs: dict[str, subprocess.CompletedProcess[str]], name: str, needle: str) -> None:
    result = input_runs[name]
    assert result.returncode == 2, show(result)
    assert result.stdout == ""
    assert_no_traceback(result)
    [line] = lines(result.stderr)
    assert needle in line, line


# --- bad input: exit 2, one located line, no traceback ------------------------------------

H = "agentfsm: 1\nname: t\n"


def _big(folder: Path) -> str:
    (folder / "big.yaml").write_text(H + "# " + "x" * (5 * 1024 * 1024) + "\n", encoding="utf-8")
    return "big.yaml"


def _latin1(folder: Path) -> str:
    (folder / "latin1.yaml").write_bytes(b"agentfsm: 1\nname: caf\xe9\n")
    return "latin1.yaml"


def _directory(folder: Path) -> str:
    (folder / "adir.yaml").mkdir()
    return "adir.yaml"


LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
    for name, prev in zip("abcdefghi", ['"lol"', "*a", "*b", "*c", "*d", "*e", "*f", "*g", "*h"], strict=True)
)

INPUT_MACHINE = H + """\
inputs:
  n: {type: integer, required: true}
initial: done
states:
  done: {type: final, output: "{{ n }}"}
"""


@dataclass(frozen=True)
class Bad:
    """A `run` of bad input: the file (text, or a function making it), extra arguments, what the line says."""

    content: str | Callable[[Path], str]
    expect: Sequence[str]
    """Texts the single error line contains; the first is usually `FILE:LINE:COL: error CODE`."""
    args: Sequence[str] = ()
    files: dict[str, str] = field(default_factory=dict)


BAD_INPUT = {
    "yaml-syntax": Bad(H.replace("name: t", "name: a: b"), ["m.yaml:2:8: error yaml-syntax "]),
    "duplicate-key": Bad(
        H + "initial: a\nstates:\n  a: {type: final}\n  a: {type: final}\n",
        ["m.yaml:6:3: error yaml-duplicate-key ", "'a'", "line 5"],
    ),
    "unknown-state-type": Bad(
        H + "initial: a\nstates:\n  a: {type: llmm, next: b}\n  b: {type: final}\n",
        ["m.yaml:5:13: error unknown-state-type ", "'llmm'", "did you mean 'llm'?"],
    ),
    "missing-target": Bad(
        H + "initial: a\nstates:\n  a:\n    type: choice\n    transitions:\n      - {when: 'true', to: bb}\n"
        "      - {to: b}\n  b: {type: final}\n",
        ["m.yaml:8:28: error unknown-target ", "'bb'", "did you mean 'b'?"],
    ),
    "missing-initial": Bad(H + "states:\n  a: {type: final}\n", ["m.yaml:1:1: error missing-field ", "'initial'"]),
    "unknown-initial": Bad(
        H + "initial: strat\nstates:\n  start: {type: final}\n",
        ["m.yaml:3:10: error unknown-initial ", "'strat'", "did you mean 'start'?"],
    ),
    "wrong-version": Bad(
        "agentfsm: 2\nname: t\ninitial: a\nstates:\n  a: {type: final}\n",
        ["m.yaml:1:11: error version ", "agentfsm: 1"],
    ),
    "missing-version": Bad(
        "name: t\ninitial: a\nstates:\n  a: {type: final}\n", ["m.yaml:1:1: error version ", "agentfsm: 1"]
    ),
    "on-key": Bad(
        H + "initial: a\nstates:\n  a:\n    type: set\n    set: {x: 1}\n    on: [{to: b}]\n  b: {type: final}\n",
        ["m.yaml:8:5: error on-key ", "transitions:"],
    ),
    "template-syntax": Bad(
        H + 'initial: a\nstates:\n  a: {type: final, output: "{{ 1 + }}"}\n',
        ["m.yaml:5:28: error template-syntax ", "states.a.output"],
    ),
    "missing-required-input": Bad(INPUT_MACHINE, ["error: ", "missing required input 'n'"]),
    "input-wrong-type": Bad(INPUT_MACHINE, ["error: ", "input 'n'", "integer", "abc"], ["-i", "n=abc"]),
    "input-float-for-integer": Bad(INPUT_MACHINE, ["error: ", "input 'n'", "integer"], ["-i", "n=2.5"]),
    "unknown-input": Bad(INPUT_MACHINE, ["error: ", "unknown input 'zzz'"], ["-i", "n=1", "-i", "zzz=1"]),
    "unknown-i-format": Bad(INPUT_MACHINE, ["error: ", "-i expects key=value"], ["-i", "n:1"]),
    "nonexistent-file": Bad(lambda folder: "nope.yaml", ["nope.yaml:1:1: error file-not-found "]),
    "directory": Bad(_directory, ["adir.yaml:1:1: error not-a-file ", "directory"]),
    "empty-file": Bad("", ["m.yaml:1:1: error yaml-empty "]),
    "too-large": Bad(_big, ["big.yaml:1:1: error file-too-large ", "5 MB"]),
    "billion-laughs": Bad(LAUGHS, ["m.yaml:", "error yaml-alias-bomb "]),
    "not-utf8": Bad(_latin1, ["latin1.yaml:1:1: error file-encoding "]),
    "python-tag": Bad(H + "initial: !!python/object/apply:os.system [echo owned]\nstates: {a: {type: final}}\n",
                      ["m.yaml:3:10: error yaml-tag "]),
    "missing-python-module": Bad(
        H + "tools:\n  x: {python: 'agentfsm_no_such_module_xyz:f'}\ninitial: a\nstates:\n"
        "  a: {type: tool, tool: x, next: b}\n  b: {type: final}\n",
        ["error: ", "tools.x.python", "agentfsm_no_such_module_xyz"],
    ),
    "python-module-raises-on-import": Bad(
        H + "tools:\n  x: {python: 'raising_mod:f'}\ninitial: a\nstates:\n"
        "  a: {type: tool, tool: x, next: b}\n  b: {type: final}\n",
        ["error: ", "tools.x.python", "raising_mod", "boom at import"],
        files={"raising_mod.py": "raise ValueError('boom at import')\n"},
    ),
    "python-attribute-missing": Bad(
        H + "tools:\n  x: {python: 'plain_mod:nope'}\ninitial: a\nstates:\n"
        "  a: {type: tool, tool: x, next: b}\n  b: {type: final}\n",
        ["error: ", "tools.x.python", "nope"],
        files={"plain_mod.py": "def f():\n    return 1\n"},
    ),
}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    commands: dict[str, tuple[Sequence[object], Path]] = {}
    for name, case in BAD_INPUT.items():
        folder = tmp_path_factory.mktemp(name)
        for file_name, text in case.files.items():
            (folder / file_name).write_text(text, encoding="utf-8")
        if callable(case.content):
            target = case.content(folder)
        else:
            (folder / "m.yaml").write_text(case.content, encoding="utf-8")
            target = "m.yaml"
        commands[name] = (["run", target, *case.args], folder)
    return run_all(commands)


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_one_clear_line(bad_input_runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    result = bad_input_runs[name]
    assert result.returncode == 2, show(result)
    assert result.stdout == ""
    assert_no_traceback(result)
    assert "internal error" not in result.stderr
    [line] = lines(result.stderr)  # exactly one line: no progress, no run started
    for needle in BAD_INPUT[name].expect:
        assert needle in line, line
    if not line.startswith("error: "):
        assert PROBLEM_LINE.match(line), line


def test_bad_input_with_debug_still_exits_2(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(INPUT_MACHINE, encoding="utf-8")
    result = agentfsm_cmd("--debug", "run", "m.yaml", "-i", "n=abc", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    assert "error: input 'n'" in result.stderr


# --- run-time failures: exit 1, one error line naming the state, no hang ------------------


def _set_machine(expression: str) -> str:
    return H + f"initial: a\nstates:\n  a: {{type: set, set: {{x: {json.dumps(expression)}}}, next: b}}\n" \
               "  b: {type: final, output: '{{ x }}'}\n"


CALC_MACHINE = H + """\
inputs:
  expr: {type: string, required: true}
tools:
  calc: {builtin: calculator}
initial: compute
states:
  compute: {type: tool, tool: calc, args: {expression: "{{ expr }}"}, save: value, next: done}
  done: {type: final, output: "{{ value }}"}
"""

RUNTIME_FAILURES: dict[str, tuple[str, list[str], dict[str, str], list[str]]] = {
    # name: (machine, extra args, extra files, texts of the error line)
    "undefined-variable": (_set_machine("{{ nothere }}"), [], {}, ["state 'a'", "template.error", "nothere"]),
    "guard-raises": (
        H + "context: {x: 0}\ninitial: a\nstates:\n  a:\n    type: choice\n    transitions:\n"
        "      - {when: '1 / x > 0', to: b}\n      - {to: b}\n  b: {type: final}\n",
        [], {}, ["state 'a'", "division by zero"],
    ),
    "tool-raises": (
        H + "tools:\n  boom: {python: 'boom_tools:explode'}\ninitial: a\nstates:\n"
        "  a: {type: tool, tool: boom, next: b}\n  b: {type: final}\n",
        [], {"boom_tools.py": "def explode(**kwargs):\n    raise RuntimeError('kaboom')\n"},
        ["state 'a'", "tool.error", "kaboom"],
    ),
    "async-tool-raises": (
        H + "tools:\n  boom: {python: 'aboom_tools:explode'}\ninitial: a\nstates:\n"
        "  a: {type: tool, tool: boom, next: b}\n  b: {type: final}\n",
        [], {"aboom_tools.py": "async def explode(**kwargs):\n    raise KeyError('kaboom')\n"},
        ["state 'a'", "tool.error", "kaboom"],
    ),
    "sandbox-mro": (_set_machine("{{ ''.__class__.__mro__ }}"), [], {}, ["state 'a'", "__class__"]),
    "sandbox-globals": (_set_machine("{{ lipsum.__globals__ }}"), [], {}, ["state 'a'", "__globals__"]),
    "template-huge-string": (_set_machine("{{ 'x' * 10 ** 10 }}"), [], {}, ["state 'a'", "template.error"]),
    "template-huge-power": (_set_machine("{{ 2 ** (10 ** 10) }}"), [], {}, ["state 'a'", "template.error"]),
    "template-huge-range": (_set_machine("{{ range(10 ** 9) | list }}"), [], {}, ["state 'a'", "template.error"]),
    "calculator-import": (CALC_MACHINE, ["-i", "expr=__import__('os')"], {}, ["state 'compute'", "tool.error"]),
    "calculator-huge-power": (CALC_MACHINE, ["-i", "expr=2**10**10"], {}, ["state 'compute'", "tool.error"]),
    "calculator-attribute": (CALC_MACHINE, ["-i", "expr=(1).__class__"], {}, ["state 'compute'", "tool.error"]),
    "fail-state": (
        H + "initial: a\nstates:\n  a: {type: fail, error: 'nope {{ 1 + 1 }}'}\n", [], {}, ["state 'a'", "nope 2"],
    ),
    "max-steps": (
        H + "max_steps: 5\ncontext: {n: 0}\ninitial: a\nstates:\n"
        "  a: {type: set, set: {n: '{{ n + 1 }}'}, transitions: [{when: 'n > 1000', to: b}, {to: a}]}\n"
        "  b: {type: final}\n",
        [], {}, ["state 'a'", "max_steps"],
    ),
}


JSON_CHECKED = {"undefined-variable", "tool-raises", "calculator-import", "fail-state"}


@pytest.fixture(scope="module")
def runtime_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    commands: dict[str, tuple[Sequence[object], Path]] = {}
    for name, (text, args, files, _) in RUNTIME_FAILURES.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "m.yaml").write_text(text, encoding="utf-8")
        for file_name, content in files.items():
            (folder / file_name).write_text(content, encoding="utf-8")
        commands[name] = (["run", "m.yaml", *args], folder)
        if name in JSON_CHECKED:
            commands[name + "/json"] = (["run", "m.yaml", *args, "--json", "-q"], folder)
    return run_all(commands)


@pytest.mark.parametrize("name", list(RUNTIME_FAILURES))
def test_runtime_failure_is_one_error_line(runtime_runs: dict[str, subprocess.CompletedProcess[str]],
                                           name: str) -> None:
    result = runtime_runs[name]
    assert result.returncode == 1, show(result)
    assert result.stdout == ""
    assert_no_traceback(result)
    assert "internal error" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert re.fullmatch(r"error: state '\w+': [\w.]+: \S.*", errors[0]), errors[0]
    for needle in RUNTIME_FAILURES[name][3]:
        assert needle in errors[0], errors[0]
    assert len(errors[0]) < 500  # one readable line, not a dump

    if name not in JSON_CHECKED:
        return
    as_json = runtime_runs[name + "/json"]
    assert as_json.returncode == 1, show(as_json)
    document = json.loads(as_json.stdout)
    assert document["status"] == "failed"
    assert as_json.stderr == ""


SLOW_TOOL_MACHINE = H + """\
tools:
  slow: {python: "slow_tools:sleep_long"}
initial: a
states:
  a: {type: tool, tool: slow, timeout: 200ms, next: b}
  b: {type: final}
"""


def test_a_timed_out_sync_tool_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(SLOW_TOOL_MACHINE, encoding="utf-8")
    (tmp_path / "slow_tools.py").write_text("import time\n\ndef sleep_long(**kwargs):\n    time.sleep(600)\n",
                                            encoding="utf-8")
    result = agentfsm_cmd("run", "m.yaml", "-q", cwd=tmp_path, timeout=20)
    assert result.returncode == 1, show(result)
    assert "timeout" in result.stderr


# --- validate -----------------------------------------------------------------------------

VALIDATE_FILES = {
    # two errors and a graph warning in one file
    "errors.yaml": H + """\
llms:
  brain: {provider: scripted}
initial: a
states:
  a: {type: llm, llm: brian, prompt: "{{ qestion }}", next: b}
  b: {type: set, set: {x: 1}, next: nowhere}
  c: {type: final}
""",
    "clean.yaml": H + "initial: a\nstates:\n  a: {type: final}\n",
    "warnings.yaml": H + "inputs:\n  task: {type: string}\ninitial: a\nstates:\n"
    "  a: {type: final, output: '{{ tsk }}'}\n  b: {type: final}\n",
    "syntax.yaml": H.replace("name: t", "name: a: b"),
}


@pytest.fixture(scope="module")
def validate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("validate")
    for name, text in VALIDATE_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def validate_runs(validate_dir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    every = ["errors.yaml", "clean.yaml", "warnings.yaml", "syntax.yaml", "missing.yaml"]
    return run_all({
        "every": (["validate", *every], validate_dir),
        "every-json": (["validate", "--json", *every], validate_dir),
        "warnings": (["validate", "warnings.yaml", "clean.yaml"], validate_dir),
        "warnings-json": (["validate", "--json", "warnings.yaml"], validate_dir),
        "clean": (["validate", "clean.yaml"], validate_dir),
        "one-error": (["validate", "clean.yaml", "syntax.yaml"], validate_dir),
        "no-files": (["validate"], validate_dir),
        "machines": (["validate", *SHIPPED], ROOT),
        "machines-json": (["validate", "--json", *SHIPPED], ROOT),
    })


SHIPPED = sorted(
    str(path.relative_to(ROOT)) for path in MACHINES.glob("*.yaml")
    if not path.name.endswith((".replies.yaml", ".test.yaml"))  # machine tests are not machines
)


def test_validate_prints_every_problem_of_every_file(validate_runs: dict[str, subprocess.CompletedProcess[str]],
                                                     validate_dir: Path) -> None:
    result = validate_runs["every"]
    assert result.returncode == 2, show(result)
    assert_no_traceback(result)
    printed = lines(result.stdout)
    matches = [PROBLEM_LINE.match(line) for line in printed]
    assert all(matches), printed
    # the same problems, in the same order, as the Python API reports file by file
    expected = []
    for name in ["errors.yaml", "clean.yaml", "warnings.yaml", "syntax.yaml", "missing.yaml"]:
        expected += [str(p) for p in agentfsm.validate_file(validate_dir / name, display_name=name).problems]
    assert printed == expected
    found = {(m["file"], int(m["line"]), int(m["column"]), m["severity"], m["code"]) for m in matches if m}
    assert {
        ("errors.yaml", 7, 23, "error", "unknown-llm"),
        ("errors.yaml", 8, 37, "error", "unknown-target"),
        ("warnings.yaml", 7, 28, "warning", "undefined-variable"),
        ("warnings.yaml", 8, 3, "warning", "unreachable-state"),
        ("syntax.yaml", 2, 8, "error", "yaml-syntax"),
        ("missing.yaml", 1, 1, "error", "file-not-found"),
    } <= found
    assert not any(m["file"] == "clean.yaml" for m in matches if m)
    assert {m["file"] for m in matches if m} == {"errors.yaml", "warnings.yaml", "syntax.yaml", "missing.yaml"}


def test_validate_warnings_only_exit_0(validate_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = validate_runs["warnings"]
    assert result.returncode == 0, show(result)
    printed = lines(result.stdout)
    assert printed and all((m := PROBLEM_LINE.match(line)) and m["severity"] == "warning" for line in printed)
    clean = validate_runs["clean"]
    assert clean.returncode == 0, show(clean)
    assert clean.stdout == ""


def test_validate_any_error_exit_2(validate_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = validate_runs["one-error"]
    assert result.returncode == 2, show(result)
    [line] = lines(result.stdout)
    assert line.startswith("syntax.yaml:2:8: error yaml-syntax ")


def test_validate_without_files_is_a_usage_error(validate_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = validate_runs["no-files"]
    assert result.returncode == 2, show(result)
    assert_no_traceback(result)


def test_validate_json(validate_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = validate_runs["every-json"]
    assert result.returncode == 2, show(result)
    assert len(result.stdout.splitlines()) == 1  # one line, like every --json
    document = json.loads(result.stdout)
    assert isinstance(document, list) and document
    for item in document:
        assert set(item) == {"file", "line", "column", "severity", "code", "message"}
        assert isinstance(item["line"], int) and isinstance(item["column"], int)
        assert item["severity"] in ("error", "warning")
    as_text = lines(validate_runs["every"].stdout)
    assert [f"{d['file']}:{d['line']}:{d['column']}: {d['severity']} {d['code']} {d['message']}"
            for d in document] == as_text
    warnings = validate_runs["warnings-json"]
    assert warnings.returncode == 0, show(warnings)
    assert {d["severity"] for d in json.loads(warnings.stdout)} == {"warning"}


def test_every_shipped_machine_validates(validate_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    assert len(SHIPPED) >= 2, SHIPPED
    result = validate_runs["machines"]
    assert result.returncode == 0, show(result)
    for line in lines(result.stdout):
        problem = PROBLEM_LINE.match(line)
        assert problem and problem["severity"] == "warning", line
    document = json.loads(validate_runs["machines-json"].stdout)
    assert [d for d in document if d["severity"] == "error"] == []


# --- schema, diagram ----------------------------------------------------------------------


def test_schema_matches_the_committed_file() -> None:
    committed = ROOT / "schemas" / "machine.schema.json"
    result = agentfsm_cmd("schema")
    assert result.returncode == 0, show(result)
    printed = json.loads(result.stdout)
    assert committed.is_file(), "missing; run: agentfsm schema > schemas/machine.schema.json"
    assert printed == json.loads(committed.read_text(encoding="utf-8")), (
        "schemas/machine.schema.json is stale; regenerate it with: agentfsm schema > schemas/machine.schema.json"
    )
    assert printed["$schema"].startswith("https://json-schema.org/")
    assert "states" in printed["properties"]


@pytest.fixture(scope="module")
def diagram_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    work = tmp_path_factory.mktemp("diagram")
    (work / "bad.yaml").write_text(H + "initial: a\nstates:\n  a: {type: llmm}\n", encoding="utf-8")
    return work, run_all({
        "stdout": (["diagram", HELLO], work),
        "md": (["diagram", HELLO, "-o", "out.md"], work),
        "mmd": (["diagram", HELLO, "--output", "out.mmd"], work),
        "bad": (["diagram", "bad.yaml"], work),
        "unwritable": (["diagram", HELLO, "-o", "no/such/dir/out.md"], work),
    })


def test_diagram_prints_mermaid(diagram_runs: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]) -> None:
    _, runs = diagram_runs
    result = runs["stdout"]
    assert result.returncode == 0, show(result)
    assert result.stdout.startswith("stateDiagram-v2")
    assert "greet" in result.stdout and "done" in result.stdout
    assert_no_traceback(result)


def test_diagram_to_markdown_and_mmd(diagram_runs: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]) -> None:
    work, runs = diagram_runs
    plain = runs["stdout"].stdout
    for name in ("md", "mmd"):
        assert runs[name].returncode == 0, show(runs[name])
        assert runs[name].stdout == ""  # the diagram went to the file
    markdown = (work / "out.md").read_text(encoding="utf-8")
    assert markdown.startswith("```mermaid\nstateDiagram-v2")
    assert markdown.rstrip("\n").endswith("\n```")
    inner = markdown.removeprefix("```mermaid\n").rstrip("\n").removesuffix("```")
    assert inner.strip() == plain.strip()
    mmd = (work / "out.mmd").read_text(encoding="utf-8")
    assert mmd.startswith("stateDiagram-v2")
    assert "```" not in mmd
    assert mmd.strip() == plain.strip()


def test_diagram_bad_input(diagram_runs: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]) -> None:
    _, runs = diagram_runs
    for name in ("bad", "unwritable"):
        result = runs[name]
        assert result.returncode == 2, show(result)
        assert_no_traceback(result)
        assert len(lines(result.stderr)) == 1, show(result)
    assert runs["bad"].stderr.startswith("bad.yaml:5:13: error unknown-state-type ")
    assert runs["unwritable"].stderr.startswith("error: cannot write ")


# --- the command itself -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("basic")
    return run_all({
        "help": (["--help"], work),
        "run-help": (["run", "--help"], work),
        "version": (["--version"], work),
        "unknown-command": (["frobnicate"], work),
        "unknown-option": (["run", HELLO, "--frobnicate"], work),
        "no-args": ([], work),
        "hello": (["run", HELLO, "-i", "name=Ada", "-q"], work),
        **{f"usage-{name}": (args, work) for name, (args, _, _) in USAGE_ERRORS.items()},
        **{f"help-{name}": ([name, "--help"], work) for name in COMMANDS},
    })


COMMANDS = ["run", "validate", "diagram", "schema", "resume", "send", "runs", "history", "checkpoints", "checkpoint",
            "rollback", "diff", "cancel", "prune", "worker"]

# a usage error of each kind, for commands of each kind: (arguments, how the line on stderr starts, the command
# whose help it points to)
USAGE_ERRORS: dict[str, tuple[list[str], str, str]] = {
    "missing-option": (["rollback", "abcd"], "error: Missing option '--to'.", "rollback"),
    "missing-argument": (["send"], "error: Missing argument 'RUN'.", "send"),
    "missing-second-argument": (["send", "abcd"], "error: Missing argument 'EVENT'.", "send"),
    "missing-file": (["run"], "error: Missing argument 'FILE'.", "run"),
    "missing-files": (["validate"], "error: Missing argument 'FILE'.", "validate"),
    "bad-value": (["runs", "--limit", "0"], "error: Invalid value for '--limit': ", "runs"),
    "not-a-number": (["worker", "--concurrency", "many"], "error: Invalid value for '--concurrency': ", "worker"),
    "bad-global-choice": (["--log-format", "xml", "runs"], "error: Invalid value for '--log-format': ", ""),
    "bad-global-choice-after": (["runs", "--log-format", "xml"], "error: Invalid value for '--log-format': ", ""),
    "global-option-without-value": (["run", "x.yaml", "--log-format"],
                                    "error: Option '--log-format' requires an argument.", "run"),
    "unknown-option": (["diagram", "x.yaml", "--frobnicate"], "error: No such option: --frobnicate", "diagram"),
    "option-without-value": (["run", "x.yaml", "-i"], "error: Option '-i' requires an argument.", "run"),
    "extra-argument": (["history", "abcd", "efgh"], "error: Got unexpected extra argument", "history"),
    "unknown-command": (["frobnicate"], "error: No such command 'frobnicate'.", ""),
}


def test_help(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = basic_runs["help"]
    assert result.returncode == 0, show(result)
    for command in ("run", "validate", "diagram", "schema"):
        assert command in result.stdout
    run_help = basic_runs["run-help"]
    assert run_help.returncode == 0, show(run_help)
    for option in ("--input", "--inputs", "--json", "--quiet"):
        assert option in run_help.stdout


def test_version(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = basic_runs["version"]
    assert result.returncode == 0, show(result)
    assert result.stdout.strip() == f"agentfsm {agentfsm.__version__}"


@pytest.mark.parametrize("name", ["unknown-command", "unknown-option"])
def test_usage_errors_exit_2(basic_runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    result = basic_runs[name]
    assert result.returncode == 2, show(result)
    assert_no_traceback(result)
    assert result.stdout == ""
    assert ("frobnicate" in result.stderr) or ("--frobnicate" in result.stderr)


@pytest.mark.parametrize("name", list(USAGE_ERRORS))
def test_a_usage_error_is_one_line(basic_runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    """Not click's usage block and boxed panel: one `error:` line naming the help to read, exit 2."""
    result = basic_runs[f"usage-{name}"]
    assert result.returncode == 2, show(result)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    _, start, command = USAGE_ERRORS[name]
    assert line.startswith(start), show(result)
    assert line.endswith(f" (see: agentfsm {command} --help)" if command else " (see: agentfsm --help)"), line


@pytest.mark.parametrize("name", COMMANDS)
def test_help_reads_like_usual_cli_help(basic_runs: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    result = basic_runs[f"help-{name}"]
    assert result.returncode == 0, show(result)
    usage = result.stdout.splitlines()[0]
    assert usage.startswith(f"Usage: agentfsm {name} [OPTIONS]"), usage
    assert "{" not in usage and "<" not in usage, usage  # `RUN EVENT`, not `{RUN} {event}`
    # no type placeholders: flags bare, values named (RUN, EVENT, N, NAME...), no boxes
    for odd in ("<bool>", "<str>", "<int", "<list", "<path>", "<float>", "╭"):
        assert odd not in result.stdout, (odd, result.stdout)
    assert "-h, --help  " in result.stdout or "-h, --help " in result.stdout


def test_help_names_arguments_and_values(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    send = basic_runs["help-send"].stdout
    assert send.splitlines()[0] == "Usage: agentfsm send [OPTIONS] RUN EVENT"
    assert re.search(r"^  --data JSON ", send, re.MULTILINE)
    assert re.search(r"^  --no-resume +Only record the event", send, re.MULTILINE)
    assert basic_runs["help-validate"].stdout.splitlines()[0] == "Usage: agentfsm validate [OPTIONS] FILE..."
    runs = basic_runs["help-runs"].stdout
    for option in ("--status STATUS", "--machine NAME", "--limit N"):
        assert f"  {option} " in runs, runs
    assert "--status STATUS" in basic_runs["help-prune"].stdout
    assert "--branch NAME" in basic_runs["help-rollback"].stdout


def test_top_level_help_documents_every_exit_code(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    text = basic_runs["help"].stdout
    codes = {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s{2,}\S", text, re.MULTILINE)}
    assert codes == {0, 1, 2, 3, 70, 130}, text
    assert "agentfsm --debug runs" in text  # global options go before the command, or after it
    for command in COMMANDS:
        assert re.search(rf"^  {command} +\S", text, re.MULTILINE), command
    assert "..." not in text.split("Commands:")[1]  # each command's summary is whole, not cut


def test_no_arguments_shows_help(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = basic_runs["no-args"]
    assert result.returncode in (0, 2), show(result)
    assert "run" in result.stdout + result.stderr
    assert_no_traceback(result)


def test_hello(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = basic_runs["hello"]
    assert result.returncode == 0, show(result)
    assert result.stdout == "Hello, Ada!\n"
    assert result.stderr == ""  # --quiet: not even the run id (--json carries it)


# --- global options before or after the command -----------------------------------------------

ECHO_MACHINE = H + """\
inputs:
  x: {type: string, required: true}
initial: done
states:
  done: {type: final, output: "{{ x }}"}
"""
REACT_TASK = ["-i", "task=What is 17 * 23?"]

# pairs of the same command with the global options before and after the command's name
EITHER_PLACE: dict[str, tuple[list[object], list[object]]] = {
    "debug": (["--debug", "run", "m.yaml", "-i", "n=abc"], ["run", "m.yaml", "-i", "n=abc", "--debug"]),
    "vv-json": (["-vv", "--log-format", "json", "run", MACHINES / "react_agent.yaml", *REACT_TASK, "--json"],
                ["run", MACHINES / "react_agent.yaml", *REACT_TASK, "--json", "-vv", "--log-format=json"]),
    "v-text": (["-v", "run", HELLO, "--quiet"], ["run", HELLO, "-qv"]),
    "runs-debug": (["--debug", "runs", "--store", "none.db"], ["runs", "--store", "none.db", "--debug"]),
}


@pytest.fixture(scope="module")
def either_place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("global-options")
    (work / "m.yaml").write_text(INPUT_MACHINE, encoding="utf-8")
    (work / "echo.yaml").write_text(ECHO_MACHINE, encoding="utf-8")
    commands: dict[str, tuple[Sequence[object], Path]] = {}
    for name, (before, after) in EITHER_PLACE.items():
        commands[f"{name}-before"], commands[f"{name}-after"] = (before, work), (after, work)
    return run_all({
        **commands,
        "counted-in-both-places": (["-v", "run", MACHINES / "react_agent.yaml", *REACT_TASK, "-q", "-v"], work),
        "value-like-an-option": (["run", "echo.yaml", "-q", "-i", "x=-v"], work),
        "attached-value-like-an-option": (["run", "echo.yaml", "-q", "-ix=--debug"], work),
        "after-double-dash": (["validate", "--", "-v"], work),
    })


def _without_times(text: str) -> str:
    """Output with its timestamps, durations and run ids blanked: what may differ between two runs."""
    text = re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.]+(?:Z|[+-]\d\d:?\d\d)?", "TIME", text)
    text = re.sub(r'("?\w*(?:duration|latency)\w*"?[=:] ?)[\d.e-]+', r"\1N", text)
    return re.sub(r"\b[0-9a-z]{16}\b", "RUN", text)


@pytest.mark.parametrize("name", list(EITHER_PLACE))
def test_global_options_mean_the_same_after_the_command(either_place: dict, name: str) -> None:
    before, after = either_place[f"{name}-before"], either_place[f"{name}-after"]
    assert after.returncode == before.returncode, show(after)
    assert _without_times(after.stdout) == _without_times(before.stdout), show(after)
    assert _without_times(after.stderr) == _without_times(before.stderr), show(after)


def test_what_each_global_option_does_after_the_command(either_place: dict) -> None:
    debug = either_place["debug-after"]
    assert debug.returncode == 2 and "Traceback" in debug.stderr, show(debug)  # --debug shows the traceback
    assert debug.stderr.splitlines()[-1].startswith("error: input 'n'"), show(debug)
    logged = either_place["vv-json-after"]
    assert logged.returncode == 0, show(logged)
    events = [json.loads(line) for line in logged.stderr.splitlines()]  # json: no progress, only log lines
    assert {"step", "llm.call"} <= {event["event"] for event in events}  # -vv: the DEBUG calls too
    text = either_place["v-text-after"]
    assert (text.returncode, text.stdout) == (0, "Hello, world!\n"), show(text)
    assert sum(" step " in line for line in text.stderr.splitlines()) == 2, show(text)  # -v from `-qv`
    assert "llm.call" in either_place["counted-in-both-places"].stderr  # -v before and -v after: -vv


def test_a_value_that_looks_like_a_global_option_stays_a_value(either_place: dict) -> None:
    for name, value in (("value-like-an-option", "-v"), ("attached-value-like-an-option", "--debug")):
        result = either_place[name]
        assert (result.returncode, result.stdout, result.stderr) == (0, f"{value}\n", ""), show(result)
    dashed = either_place["after-double-dash"]  # after `--`, `-v` is a file name
    assert dashed.returncode == 2, show(dashed)
    assert dashed.stdout.startswith("-v:1:1: error file-not-found "), show(dashed)


def test_command_help_lists_the_global_options(basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for name in COMMANDS:
        text = basic_runs[f"help-{name}"].stdout
        assert "Global options (before or after the command):\n" in text, (name, text)
        section = text.split("Global options (before or after the command):\n", 1)[1]
        for option in ("--debug", "-v, --verbose", "--log-format FORMAT"):
            assert re.search(rf"^  {re.escape(option)} ", section, re.MULTILINE), (name, text)


# --- the docs show what the program does ------------------------------------------------------

DOCUMENTED_MISTAKES = H + """\
context: {x: 0}
initial: start
states:
  start:
    type: llmm
    next: route
  route:
    type: choice
    transitions:
      - {when: "x > 1", to: done}
  done: {type: final}
"""


def test_the_validate_example_in_the_docs_is_what_validate_prints(tmp_path: Path) -> None:
    """docs/cli.md's example (a `type:` typo, a choice without a default): the same codes and messages,
    such as the list of state types the typo could have meant."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    example = text.split("## `agentfsm validate FILE...`", 1)[1].split("```", 2)[1]
    documented = [(m["code"], m["message"]) for line in example.splitlines() if (m := PROBLEM_LINE.match(line))]
    (tmp_path / "broken.yaml").write_text(DOCUMENTED_MISTAKES, encoding="utf-8")
    result = agentfsm_cmd("validate", "broken.yaml", cwd=tmp_path)
    assert result.returncode == 2, show(result)
    printed = [(m["code"], m["message"]) for line in result.stdout.splitlines() if (m := PROBLEM_LINE.match(line))]
    assert documented == printed


def test_every_exit_code_table_says_a_cancelled_run_exits_1(
        basic_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """What `run`, `resume` and `send` exit with when the run is cancelled meanwhile (tests/test_cli_signals.py)."""
    in_help = re.search(r"^\s+1\s{2,}(.+)$", basic_runs["help"].stdout, re.MULTILINE)
    in_cli_doc = re.search(r"^\| 1 \| (.+) \|$", (ROOT / "docs" / "cli.md").read_text(encoding="utf-8"),
                           re.MULTILINE)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    in_readme = re.search(r"Exit codes: .*?`1` ([^`]+)`", readme)
    for row in (in_help, in_cli_doc, in_readme):
        assert row is not None and "cancel" in row.group(1), row
