"""Hostile data cannot crash a run or the CLI: deep nesting and lone surrogates are refused where they enter
(issue 9). Before, JSON 500 levels deep ended in RecursionError (exit 70, or a run left `paused`) and a lone
surrogate in UnicodeEncodeError (exit 70)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import agentfsm
from agentfsm import Runs
from agentfsm.limits import MAX_JSON_DEPTH
from agentfsm.spec.problems import InputError
from tests.crash_harness import environment

ROOT = Path(__file__).resolve().parent.parent
DEEP = "[" * 500 + "]" * 500
JUST_DEEP_ENOUGH = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
SURROGATE = '["\\ud800"]'  # JSON text whose string is a lone surrogate


def cli(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=60, env=environment(), stdin=subprocess.DEVNULL)


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


ECHO = """\
    agentfsm: 1
    name: echo
    inputs: {x: {type: any}}
    initial: a
    states:
      a: {type: final, output: "{{ x }}"}
    """


@pytest.mark.parametrize(("value", "message"), [
    (DEEP, f"input 'x' is nested more than {MAX_JSON_DEPTH} levels deep"),
    ("[" * 50_000 + "]" * 50_000, "input 'x' is nested too deeply"),
    (SURROGATE, "input 'x' holds a lone surrogate ('\\ud800'), which is not Unicode text"),
])
def test_a_hostile_input_is_one_clear_line_and_nothing_is_stored(tmp_path: Path, value: str, message: str) -> None:
    machine = write(tmp_path, ECHO)
    store = tmp_path / "runs.db"
    done = cli("run", machine, "-i", f"x={value}", "--store", store)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {message}"], done.stderr
    assert "Traceback" not in done.stderr
    assert not store.exists() or json.loads(cli("runs", "--json", "--store", store).stdout) == []


def test_data_as_deep_as_the_limit_goes_through(tmp_path: Path) -> None:
    result = asyncio.run(agentfsm.run(write(tmp_path, ECHO), {"x": json.loads(JUST_DEEP_ENOUGH)}))
    assert result.status == "succeeded"


WAITING = """\
    agentfsm: 1
    name: waiting
    initial: w
    states:
      w: {type: wait, event: go, save: got, next: done}
      done: {type: final, output: "{{ got }}"}
    """


HOSTILE_EVENT_DATA = [
    (DEEP, f"--data is nested more than {MAX_JSON_DEPTH} levels deep"),
    ("[" * 50_000 + "]" * 50_000, "--data is nested too deeply"),
    ('"\\ud800"', "--data holds a lone surrogate ('\\ud800'), which is not Unicode text"),
]


def test_hostile_event_data_is_refused_and_the_run_keeps_waiting(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    started = cli("run", write(tmp_path, WAITING), "--store", store, "--json")
    assert started.returncode == 3, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    for data, message in HOSTILE_EVENT_DATA:
        sent = cli("send", run_id, "go", "--data", data, "--store", store)
        assert sent.returncode == 2, sent.stderr
        assert sent.stderr.strip().splitlines() == [f"error: {message}"], sent.stderr
    [run] = json.loads(cli("runs", "--json", "--store", store).stdout)
    assert run["status"] == "waiting"


def test_the_python_api_refuses_the_same_data(tmp_path: Path) -> None:
    async def go() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            with pytest.raises(InputError, match="nested more than"):
                await runs.start(write(tmp_path, ECHO), {"x": json.loads(DEEP)})
            with pytest.raises(InputError, match="lone surrogate"):
                await runs.start(write(tmp_path, ECHO), {"x": "\ud800"})
            waiting = await runs.start(write(tmp_path, WAITING))
            with pytest.raises(InputError, match="the event's data is nested more than"):
                await runs.send(waiting.run_id, "go", json.loads(DEEP))
            assert (await runs.get(waiting.run_id)).status == "waiting"

    asyncio.run(go())


def test_a_deep_reply_parsed_as_json_fails_the_state_with_a_catchable_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        agentfsm: 1
        name: deep-reply
        llms:
          model: {{provider: scripted, replies: ['{DEEP}', '{SURROGATE}']}}
        initial: ask
        states:
          ask:
            type: llm
            llm: model
            prompt: reply
            parse: json
            save: reply
            next: done
            catch: [{{errors: [llm.parse], to: again, as: error}}]
          again:
            type: llm
            llm: model
            prompt: reply
            parse: json
            next: done
            catch: [{{errors: [llm.parse], to: handled, as: error2}}]
          done: {{type: final}}
          handled: {{type: final, output: "{{{{ error.message }}}} / {{{{ error2.message }}}}"}}
        """)
    result = asyncio.run(agentfsm.run(path, store=f"sqlite:///{tmp_path / 'runs.db'}"))
    assert result.status == "succeeded", result.error
    assert f"nested more than {MAX_JSON_DEPTH} levels deep" in result.output
    assert "lone surrogate" in result.output


def test_deep_or_non_unicode_tool_results_fail_the_state_with_tool_error(tmp_path: Path) -> None:
    (tmp_path / "hostile_tools.py").write_text(textwrap.dedent(f"""\
        import json
        def deep():
            return json.loads({DEEP!r})
        def surrogate():
            return {{"text": "\\ud800"}}
        """), encoding="utf-8")
    printer = "import sys; sys.stdout.write(sys.argv[1])"
    path = write(tmp_path, f"""\
        agentfsm: 1
        name: deep-tools
        tools:
          deep: {{python: "hostile_tools:deep"}}
          surrogate: {{python: "hostile_tools:surrogate"}}
          printed: {{command: [{sys.executable}, -c, "{printer}", '{DEEP}'], parse: json}}
        initial: a
        states:
          a: {{type: tool, tool: deep, next: b, catch: [{{errors: [tool.error], to: b, as: e1}}]}}
          b: {{type: tool, tool: surrogate, next: c, catch: [{{errors: [tool.error], to: c, as: e2}}]}}
          c: {{type: tool, tool: printed, next: d, catch: [{{errors: [tool.error], to: d, as: e3}}]}}
          d: {{type: final, output: {{e1: "{{{{ e1.message }}}}", e2: "{{{{ e2.message }}}}", e3: "{{{{ e3.message }}}}"}}}}
        """)
    sys.path.insert(0, str(tmp_path))
    try:
        result = asyncio.run(agentfsm.run(path, store=f"sqlite:///{tmp_path / 'runs.db'}"))
    finally:
        sys.path.remove(str(tmp_path))
    assert result.status == "succeeded", result.error
    assert "nested more than" in result.output["e1"]
    assert "lone surrogate" in result.output["e2"]
    assert "nested more than" in result.output["e3"]


RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


def test_escape_sequences_in_data_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    """An LLM reply used as an event name cleared the screen, set the window title (OSC) and forged progress
    lines; the history table passed OSC through."""
    path = write(tmp_path, r"""
        agentfsm: 1
        name: escapes
        llms:
          m: {provider: scripted, replies: ["\e]0;PWNED\a\e[2J\x9b2J\u202e\n   9   1 ms  x --done--> y\r"]}
        initial: a
        states:
          a: {type: llm, llm: m, prompt: hi, emit: "{{ result }}", transitions: [{to: b}]}
          b: {type: final}
        """)
    store = tmp_path / "runs.db"
    ran = cli("run", path, "--store", store)
    logged = cli("run", path, "--store", store, "-v", "--log-format", "json")
    assert ran.returncode == 0, ran.stderr
    history = cli("history", json.loads(cli("runs", "--json", "--store", store).stdout)[-1]["run_id"],
                  "--store", store)
    for shown in (ran.stderr, history.stdout):
        assert not any(control in shown for control in RAW_CONTROLS), repr(shown)
        assert "\\x1b]0;PWNED\\x07\\x1b[2J\\x9b2J\\u202e" in shown, shown
    assert not any(control in logged.stderr for control in RAW_CONTROLS), repr(logged.stderr)
    assert '"state_event": "\\u001b]0;PWNED\\u0007\\u001b[2J\\u009b2J\\u202e' in logged.stderr, logged.stderr
    step_lines = [line for line in ran.stderr.splitlines() if "--> " in line]
    assert len(step_lines) == 1 and step_lines[0].lstrip().startswith("1 "), ran.stderr  # no forged line
    listed = cli("runs", "--json", "--store", store)
    assert "\x9b" not in listed.stdout and "\u202e" not in listed.stdout  # JSON escapes them too


@pytest.mark.parametrize(("field", "value"), [
    ("timeout: 99999999999d", "99999999999d"),
    ("retry: {interval: 99999999999d}", "99999999999d"),
    ("retry: {interval: 1s, max_delay: 400d}", "400d"),
])
def test_absurd_durations_are_refused_at_validate_with_their_place(tmp_path: Path, field: str, value: str) -> None:
    """`timeout: 99999999999d` validated, then every run failed (exit 70); a retry that long slept for ever."""
    path = write(tmp_path, f"""\
        agentfsm: 1
        name: durations
        initial: a
        states:
          a: {{type: set, set: {{x: 1}}, {field}, next: b}}
          b: {{type: final}}
        """)
    [found] = agentfsm.validate_file(path).errors
    line = path.read_text(encoding="utf-8").splitlines()[4]
    assert (found.line, found.column) == (5, line.index(value) + 1), found
    assert found.message.endswith("a duration can be at most 366d (one year)"), found


def test_a_wait_timeout_of_a_year_is_fine_and_one_over_is_not(tmp_path: Path) -> None:
    for timeout, ok in (("366d", True), ("367d", False)):
        path = write(tmp_path, f"""\
            agentfsm: 1
            name: waits
            initial: w
            states:
              w: {{type: wait, event: go, timeout: {timeout}, next: b}}
              b: {{type: final}}
            """)
        assert agentfsm.validate_file(path).ok is ok


def test_a_text_file_given_as_the_store_is_refused_by_run_and_worker(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    machine = write(tmp_path, ECHO)
    for args in (["run", machine, "-i", "x=1"], ["worker", "--once"], ["runs"]):
        done = cli(*args, "--store", f"sqlite:///{notes}")
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"error: {notes} is not an agentfsm store (file is not a database)\n"
    assert notes.read_text(encoding="utf-8") == "my notes\n"


def test_the_web_api_refuses_hostile_event_data_with_a_400(tmp_path: Path) -> None:
    """`agentfsm ui` sends through the same service; deep or non-Unicode data is refused before any run starts."""
    import httpx

    from agentfsm.web.app import create_app

    async def go() -> None:
        async with Runs(f"sqlite:///{tmp_path / 'runs.db'}") as runs:
            waiting = await runs.start(write(tmp_path, WAITING))
            app = create_app(runs, root=tmp_path, token=None, loopback_only=True)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8321") as client:
                for body, message in ((f'{{"event": "go", "data": {DEEP}}}', "nested more than"),
                                      ('{"event": "go", "data": "\\ud800"}', "lone surrogate")):
                    sent = await client.post(f"/api/runs/{waiting.run_id}/send", content=body,
                                             headers={"X-Agentfsm-Token": "", "Content-Type": "application/json"})
                    assert sent.status_code == 400, sent.text
                    assert message in sent.json()["error"]
            await app.app.state.ui.driver.close()
            assert (await runs.get(waiting.run_id)).status == "waiting"

    asyncio.run(go())
