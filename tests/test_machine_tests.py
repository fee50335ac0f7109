"""`agentfsm test` and `*.test.yaml`: cases pass and fail as their runs do, bad files are located problems,
JUnit XML and coverage reports, and the pytest plugin collecting test files."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from agentfsm.service.tests import run_tests
from agentfsm.spec.problems import TEST_CODES

from tests.mermaid import parse_mermaid

ROOT = Path(__file__).resolve().parent.parent

CASES = """\
agentfsm_test: 1
machine: react_agent.yaml
cases:
  - name: right
    inputs: {task: "What is 17 * 23?"}
    expect: {output: "391", path_contains: [acting, finalizing]}
  - name: wrong
    inputs: {task: "What is 17 * 23?"}
    tools:
      calculator: [{result: 390}]
    expect: {output: "391", visits: {acting: 1}}
"""


def agentfsm(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the examples, with a test file holding a passing and a failing case."""
    here = tmp_path_factory.mktemp("tests") / "machines"
    shutil.copytree(ROOT / "machines", here, ignore=shutil.ignore_patterns("*.test.yaml", "__pycache__"))
    (here / "mixed.test.yaml").write_text(CASES, encoding="utf-8")
    return here


def test_a_failing_case_shows_its_diff_and_exits_1(folder: Path) -> None:
    result = agentfsm("test", "mixed.test.yaml", "--junit", "out.xml", "--coverage", "cov.json", cwd=folder)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "mixed.test.yaml .F"
    assert '    -"391"' in lines and '    +"390"' in lines  # the output's diff: expected, then actual
    assert "FAILED mixed.test.yaml::wrong - output: the output differs" in lines
    assert lines[-1].startswith("1 failed, 1 passed in ")
    assert "Traceback" not in result.stderr
    suite = ElementTree.parse(folder / "out.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["wrong"]
    (coverage,) = json.loads((folder / "cov.json").read_text())["machines"]
    assert coverage["cases"] == 2 and coverage["states"]["acting"] == 2 and coverage["states"]["planning"] == 0
    drawn = agentfsm("diagram", "react_agent.yaml", "--coverage", "cov.json", cwd=folder)
    assert drawn.returncode == 0, drawn.stderr
    parsed = parse_mermaid(drawn.stdout)  # the real Mermaid reads it
    labels = {(t["from"], t["to"]): t["label"] for t in parsed["transitions"]}
    assert labels[("s_initial", "s_planning")].endswith("(never)")
    assert labels[("s_acting", "s_observing")] == "done (2x)"


def test_the_example_in_the_docs_passes(folder: Path) -> None:
    doc = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    (folder / "doc.test.yaml").write_text(doc.split("```yaml\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    run = asyncio.run(run_tests([folder / "doc.test.yaml"]))
    assert run.ok and len(run.results[0].cases) == 1, run.text()


BAD_FILES = {
    "shape": ("agentfsm_test: 1\nmachine: react_agent.yaml\ncases:\n  - name: a\n    expect: {status: done}\n",
              "5:22: error invalid-value"),
    "no machine": ("agentfsm_test: 1\nmachine: nowhere.yaml\ncases: [{name: a}]\n", "2:10: error file-not-found"),
    "unknown tool": ("agentfsm_test: 1\nmachine: react_agent.yaml\ncases:\n  - name: a\n    tools: {calc: {result: 1}}\n",
                     "5:13: error test-unknown-binding cases[0].tools.calc: the machine has no tool binding named "
                     "'calc'"),
    "unknown state": ("agentfsm_test: 1\nmachine: react_agent.yaml\ncases:\n  - name: a\n    expect: {path: [thnking]}\n",
                      "5:21: error test-unknown-state"),
    "same name": ("agentfsm_test: 1\nmachine: hello.yaml\ncases: [{name: a}, {name: a}]\n",
                  "3:27: error test-duplicate-case"),
    "bad guard": ("agentfsm_test: 1\nmachine: hello.yaml\ncases:\n  - name: a\n    expect: {output_when: 'output =='}\n",
                  "5:27: error template-syntax"),
}


def test_bad_test_files_are_located_problems_and_exit_2(folder: Path) -> None:
    live = (folder / "react_agent.yaml").read_text().replace(
        "brain: {provider: scripted, replies_file: replies/react_agent.yaml}",
        "brain: {provider: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY}")
    (folder / "live.yaml").write_text(live)
    files = {**BAD_FILES, "live": ("agentfsm_test: 1\nmachine: live.yaml\ncases:\n  - name: a\n",
                                   "4:11: error test-live-binding")}
    for name, (text, _) in files.items():
        (folder / f"{name.replace(' ', '_')}.test.yaml").write_text(text)
    result = agentfsm("test", *[f"{name.replace(' ', '_')}.test.yaml" for name in files], cwd=folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    for name, (_, expected) in files.items():
        assert f"{name.replace(' ', '_')}.test.yaml E" in result.stdout
        assert f"{name.replace(' ', '_')}.test.yaml:{expected}" in result.stdout, (name, result.stdout)
    assert {code for code in TEST_CODES if f"error {code}" not in result.stdout} == set()
    missing = agentfsm("test", "nothing-here", cwd=folder)
    assert (missing.returncode, missing.stderr.strip()) == (2, "error: nothing-here: no such file or folder")


def test_pytest_collects_test_files_one_item_per_case(folder: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "mixed.test.yaml",
                             "--rootdir", str(folder)], capture_output=True, text=True, cwd=folder, timeout=120)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "FAILED mixed.test.yaml::wrong" in result.stdout
    assert '-"391"' in result.stdout and '+"390"' in result.stdout


def test_update_rewrites_failed_expectations_only_when_confirmed(folder: Path) -> None:
    text = CASES + "  # this comment stays\n"
    path = folder / "update.test.yaml"
    path.write_text(text, encoding="utf-8")
    refused = agentfsm("test", "update.test.yaml", "--update", cwd=folder)  # stdin is no terminal: nobody to ask
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == ("error: --update rewrites test files and asks first on a terminal; "
                                               "add --yes to skip asking")
    assert path.read_text(encoding="utf-8") == text
    done = agentfsm("test", "update.test.yaml", "--update", "--yes", cwd=folder)
    assert done.returncode == 0, done.stderr
    rewritten = path.read_text(encoding="utf-8")
    assert rewritten.startswith(CASES.split("  - name: wrong")[0])  # the passing case is untouched
    assert "    expect:\n      output: '390'\n      visits: {acting: 1}\n" in rewritten
    assert rewritten.endswith("  # this comment stays\n")
    assert asyncio.run(run_tests([path])).ok
