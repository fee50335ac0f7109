"""`command:` tool bindings, with real programs: argv is never a shell, processes never outlive the call.

Every case writes a machine file to tmp_path and runs it through `agentfsm.run` (a few
through the `agentfsm` command). The programs are `sys.executable -c CODE`, written into
the YAML, so the tests need nothing but Python and `/usr/bin/env`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm.bindings.command import SAFE_PATH
from agentfsm.bindings.imports import BindingError
from agentfsm.runtime.loop import RunResult

pytestmark = pytest.mark.skipif(os.name != "posix", reason="command tools need process groups")

PY = sys.executable
PRINT_ARGV = "import sys, json; print(json.dumps(sys.argv[1:]))"


def write_machine(folder: Path, tool: dict[str, Any], *, args: str = '{x: "{{ x }}"}', name: str = "m.yaml",
                  state_options: str = "") -> Path:
    """A machine with one `tool` state calling binding `t`; the binding is written as a JSON flow mapping."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        "agentfsm: 1\n"
        "name: command-test\n"
        "inputs: {x: {type: any}}\n"
        f"tools:\n  t: {json.dumps(tool)}\n"
        "initial: call\n"
        "states:\n"
        f"  call: {{type: tool, tool: t, args: {args}, save: r, next: end{state_options}}}\n"
        "  end: {type: final, output: '{{ r }}'}\n",
        encoding="utf-8",
    )
    return path


def run(path: Path, x: Any = None) -> RunResult:
    return asyncio.run(agentfsm.run(path, {"x": x}))


def python_tool(code: str, *items: str, **options: Any) -> dict[str, Any]:
    return {"command": [PY, "-c", code, *items], **options}


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    env.pop("AGENTFSM_STORE", None)
    return subprocess.run([PY, "-m", "agentfsm", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          encoding="utf-8", timeout=60, env=env, stdin=subprocess.DEVNULL)


def _is_zombie(pid: int) -> bool:
    """A zombie has exited; it only waits for its (re)parent to reap it, which PID 1 in a container may never do."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def process_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _is_zombie(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- data is one argv item, never a command line ------------------------------------------------


def hostile_payload(marker: Path) -> str:
    return (f"; rm -rf / ; touch {marker} $(touch {marker}) `touch {marker}`\n"
            f"second line 'single' \"double\" && echo pwned > {marker} | cat $HOME * ~")


def test_hostile_text_reaches_the_program_as_one_literal_argument(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = hostile_payload(marker)
    path = write_machine(tmp_path, python_tool(PRINT_ARGV, "{{ args.x }}", "fixed", parse="json"))
    result = run(path, payload)
    assert result.succeeded, result.error
    assert result.output["output"] == [payload, "fixed"]
    assert not marker.exists()


def test_hostile_text_through_the_cli(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = hostile_payload(marker)
    path = write_machine(tmp_path, python_tool(PRINT_ARGV, "{{ args.x }}", parse="json"))
    completed = cli("run", path, "-i", f"x={payload}", "--json",
                    cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["output"]["output"] == [payload]
    assert not marker.exists()


def test_a_number_becomes_its_text_and_a_list_is_refused(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool(PRINT_ARGV, "{{ args.x }}", "n={{ args.x }}", parse="json"))
    assert run(path, 5).output["output"] == ["5", "n=5"]
    assert run(path, True).output["output"][0] == "true"  # as JSON spells it
    refused = run(path, [1, 2])
    assert refused.error is not None and refused.error["type"] == "tool.error"
    assert "command[3]" in refused.error["message"] and "exactly one argument" in refused.error["message"]


# -- timeouts kill the whole process group ------------------------------------------------------

STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
with open(sys.argv[1], "w") as pids:
    pids.write(f"{os.getpid()} {grandchild.pid}")
time.sleep(60)
"""


def _wait_for_pids(pid_file: Path) -> list[int]:
    assert pid_file.exists(), "the program never wrote its pids"
    return [int(pid) for pid in pid_file.read_text().split()]


def test_timeout_kills_a_program_that_ignores_sigterm_and_its_grandchild(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    path = write_machine(tmp_path, python_tool(STUBBORN, "{{ args.x }}", timeout="1s"))
    result = run(path, str(pid_file))
    assert result.error is not None and result.error["type"] == "tool.timeout", result.error
    assert "did not finish within 1s" in result.error["message"]
    for pid in _wait_for_pids(pid_file):
        assert process_gone(pid), f"process {pid} outlived the call"


def test_the_state_timeout_cancelling_the_call_also_kills_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    path = write_machine(tmp_path, python_tool(STUBBORN, "{{ args.x }}", timeout="30s"),
                         state_options=", timeout: 1s")
    result = run(path, str(pid_file))
    assert result.error is not None and result.error["type"] == "timeout", result.error
    for pid in _wait_for_pids(pid_file):
        assert process_gone(pid), f"process {pid} outlived the call"


def test_what_the_program_leaves_running_ends_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    code = ("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "open(sys.argv[1], 'w').write(str(child.pid)); print('left')")
    path = write_machine(tmp_path, python_tool(code, "{{ args.x }}", timeout="10s"))
    result = run(path, str(pid_file))
    assert result.succeeded, result.error
    assert result.output["output"] == "left"
    assert process_gone(int(pid_file.read_text()))


# -- output is capped ---------------------------------------------------------------------------


def test_ten_megabytes_are_cut_at_max_output_and_flagged(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('x' * 10_000_000); sys.stderr.write('e' * 10_000_000)"
    path = write_machine(tmp_path, python_tool(code, max_output=1000))
    result = run(path)
    assert result.succeeded, result.error
    out = result.output
    assert out["output"] == "x" * 1000 and out["truncated"] is True
    assert out["stderr"] == "e" * 1000 and out["stderr_truncated"] is True
    assert out["exit_code"] == 0  # the rest was read and dropped: the program ran to its own end


def test_output_within_the_cap_is_not_flagged(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool("print('é' * 10)", max_output=1000))
    result = run(path)
    assert result.output["output"] == "é" * 10 and result.output["truncated"] is False


def test_a_cut_inside_a_character_leaves_that_character_out(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool("print('é' * 10)", max_output=5))  # é is 2 bytes in UTF-8
    assert run(path).output["output"] == "éé"


def test_a_program_that_never_stops_writing_ends_at_its_timeout(tmp_path: Path) -> None:
    code = "import sys\nwhile True: sys.stdout.write('y' * 65536)"
    path = write_machine(tmp_path, python_tool(code, max_output=100, timeout="500ms"))
    result = run(path)
    assert result.error is not None and result.error["type"] == "tool.timeout"


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool("import sys; sys.stdout.buffer.write(b'a\\xffb')"))
    assert run(path).output["output"] == "a\ufffdb"


# -- exit codes ---------------------------------------------------------------------------------

FAIL_WITH = "import sys; sys.stderr.write('noise ' * 1000 + 'the real reason'); sys.exit(int(sys.argv[1]))"


def test_a_non_zero_exit_is_a_tool_error_with_the_stderr_tail(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool(FAIL_WITH, "{{ args.x }}"))
    result = run(path, 3)
    error = result.error
    assert error is not None and error["type"] == "tool.error"
    assert "exited with code 3" in error["message"] and "the real reason" in error["message"]
    assert error["detail"]["exit_code"] == 3
    assert error["detail"]["stderr"].endswith("the real reason")
    assert len(error["detail"]["stderr"].encode()) <= 2048


def test_the_stderr_tail_is_the_real_end_even_past_max_output(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool(FAIL_WITH, "{{ args.x }}", max_output=100))
    error = run(path, 3).error
    assert error is not None and error["detail"]["stderr"].endswith("the real reason")


def test_ok_exit_codes_accepts_the_listed_codes(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool(FAIL_WITH, "{{ args.x }}", ok_exit_codes=[0, 1]))
    result = run(path, 1)
    assert result.succeeded, result.error
    assert result.output["exit_code"] == 1
    assert run(path, 2).error["type"] == "tool.error"


def test_a_missing_program_is_a_tool_error(tmp_path: Path) -> None:
    path = write_machine(tmp_path, {"command": ["agentfsm-no-such-program", "x"]})
    result = run(path)
    assert result.error is not None and result.error["type"] == "tool.error"
    assert result.error["message"] == "program not found: agentfsm-no-such-program"


def test_tool_errors_can_be_caught_and_retried_by_prefix(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool(FAIL_WITH, "{{ args.x }}"),
                         state_options=", catch: [{errors: [tool], to: end, as: r}]")
    result = run(path, 4)
    assert result.succeeded and result.output["type"] == "tool.error"


# -- environment --------------------------------------------------------------------------------


def test_only_listed_environment_variables_reach_the_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    monkeypatch.setenv("AGENTFSM_TEST_LISTED", "visible")
    monkeypatch.setenv("AGENTFSM_TEST_UNLISTED", "hidden")
    path = write_machine(tmp_path, {"command": ["env"], "env": ["AGENTFSM_TEST_LISTED", "NOT_SET_ANYWHERE"],
                                    "parse": "lines"})
    result = run(path)
    assert result.succeeded, result.error
    seen = dict(line.split("=", 1) for line in result.output["output"])
    assert seen == {"AGENTFSM_TEST_LISTED": "visible", "PATH": SAFE_PATH}
    assert "sk-do-not-leak" not in json.dumps(result.output)


def test_listing_path_passes_the_parents_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    path = write_machine(tmp_path, {"command": ["env"], "env": ["PATH"], "parse": "lines"})
    assert run(path).output["output"] == [f"PATH={os.environ['PATH']}"]


# -- working folder -----------------------------------------------------------------------------

PRINT_CWD = "import os; print(os.getcwd())"


def test_cwd_defaults_to_the_machine_folder_and_is_relative_to_it(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "data").mkdir(parents=True)
    assert run(write_machine(folder, python_tool(PRINT_CWD))).output["output"] == str(folder.resolve())
    inside = write_machine(folder, python_tool(PRINT_CWD, cwd="data"), name="inside.yaml")
    assert run(inside).output["output"] == str((folder / "data").resolve())


@pytest.mark.parametrize("cwd", ["../outside", "link", "/tmp", "missing"])
def test_cwd_outside_the_machine_folder_is_refused_at_run_start(tmp_path: Path, cwd: str) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (folder / "link").symlink_to(tmp_path / "outside")
    path = write_machine(folder, python_tool(PRINT_CWD, cwd=cwd))
    with pytest.raises(BindingError, match=r"tools\.t\.cwd"):
        run(path)


def test_cwd_escape_through_the_cli_is_a_one_line_error_and_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (folder / "link").symlink_to(tmp_path / "outside")
    path = write_machine(folder, python_tool(PRINT_CWD, cwd="link"))
    completed = cli("run", path, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert "tools.t.cwd" in completed.stderr and "outside the machine file's folder" in completed.stderr
    assert "Traceback" not in completed.stderr


# -- parse --------------------------------------------------------------------------------------


def test_parse_json_lines_and_text(tmp_path: Path) -> None:
    emit = "import sys; sys.stdout.write(sys.argv[1])"
    as_json = write_machine(tmp_path, python_tool(emit, "{{ args.x }}", parse="json"), name="j.yaml")
    assert run(as_json, '{"a": [1, 2]}\n').output["output"] == {"a": [1, 2]}
    as_lines = write_machine(tmp_path, python_tool(emit, "{{ args.x }}", parse="lines"), name="l.yaml")
    assert run(as_lines, "one\n\n two\n").output["output"] == ["one", " two"]
    as_text = write_machine(tmp_path, python_tool(emit, "{{ args.x }}"), name="t.yaml")
    assert run(as_text, "kept  \n\n").output["output"] == "kept  "


def test_output_that_is_not_json_is_a_clear_tool_error(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool("print('not json')", parse="json"))
    error = run(path).error
    assert error is not None and error["type"] == "tool.error"
    assert "did not print JSON" in error["message"] and error["detail"]["stdout"] == "not json\n"


def test_truncated_json_says_why_it_cannot_be_parsed(tmp_path: Path) -> None:
    path = write_machine(tmp_path, python_tool("print('[' + '1,' * 1000 + '1]')", parse="json", max_output=100))
    error = run(path).error
    assert error is not None and error["type"] == "tool.error" and "max_output" in error["message"]


# -- validate (static: nothing runs) ------------------------------------------------------------


def _problems(tmp_path: Path, tool: dict[str, Any]) -> list[tuple[str, str]]:
    path = write_machine(tmp_path, tool)
    return [(p.code, p.message) for p in agentfsm.validate_file(path).problems]


def test_validate_refuses_a_templated_program(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"command": ["{{ args.program }}", "x"]})
    assert [code for code, _ in problems] == ["invalid-value"]
    assert "must be written literally" in problems[0][1]


def test_validate_refuses_an_empty_command_and_a_command_string(tmp_path: Path) -> None:
    empty = _problems(tmp_path, {"command": []})
    assert [code for code, _ in empty] == ["invalid-value"] and "empty" in empty[0][1]
    string = _problems(tmp_path, {"command": "ls -l"})
    assert [code for code, _ in string] == ["invalid-value"] and "list of arguments" in string[0][1]


def test_validate_tool_templates_see_only_args(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"command": ["echo", "{{ x }}", "{{ args.path }}", "{{ range(2) | list }}"]})
    assert [code for code, _ in problems] == ["undefined-variable"]
    assert "tools.t.command[1]: 'x'" in problems[0][1] and "only 'args'" in problems[0][1]
    assert _problems(tmp_path, {"command": ["echo", "{{ args.path }}"]}) == []


def test_validate_checks_template_syntax_in_command_items(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"command": ["echo", "{{ args. }}"]})
    assert [code for code, _ in problems] == ["template-syntax"]
    assert "tools.t.command[1]" in problems[0][1]


def test_validate_never_runs_the_program(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write_machine(tmp_path, python_tool(f"open({str(marker)!r}, 'w')"))
    completed = cli("validate", path, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert not marker.exists()
