"""The docs stay true: generated files match the models, and every example in them works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentfsm import validate_file
from agentfsm.reference import (
    REFERENCE_PATH,
    SCHEMA_PATH,
    TEST_REFERENCE_PATH,
    TEST_SCHEMA_PATH,
    reference_text,
    schema_text,
    case_reference_text,
    case_schema_text,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for index, (lang, body) in enumerate(FENCE.findall(doc.read_text(encoding="utf-8"))):
            if lang == language:
                found.append((f"{doc.name}#{index}", body))
    return found


def test_reference_doc_is_generated_from_the_models() -> None:
    assert REFERENCE_PATH.read_text(encoding="utf-8") == reference_text(), "run: python -m agentfsm.reference"


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), "run: python -m agentfsm.reference"


def test_test_file_reference_and_schema_are_generated_from_the_models() -> None:
    assert TEST_REFERENCE_PATH.read_text(encoding="utf-8") == case_reference_text(), "run: python -m agentfsm.reference"
    assert TEST_SCHEMA_PATH.read_text(encoding="utf-8") == case_schema_text(), "run: python -m agentfsm.reference"


def test_every_example_machine_starts_with_the_schema_line() -> None:
    for machine in sorted((ROOT / "machines").glob("*.yaml")):
        first = machine.read_text(encoding="utf-8").splitlines()[0]
        schema = "test" if machine.name.endswith(".test.yaml") else "machine"
        assert first == f"# yaml-language-server: $schema=../schemas/{schema}.schema.json", machine.name


MACHINE_BLOCKS = [(name, body) for name, body in blocks("yaml") if body.lstrip("# \n").find("agentfsm: 1") >= 0
                  and re.search(r"^agentfsm: 1$", body, re.MULTILINE)]


@pytest.mark.parametrize(("where", "text"), MACHINE_BLOCKS, ids=[name for name, _ in MACHINE_BLOCKS])
def test_machines_shown_in_docs_are_valid(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(text, encoding="utf-8")
    report = validate_file(path)
    assert report.ok, [str(p) for p in report.problems]
    assert not report.warnings, [str(p) for p in report.warnings]


def test_docs_show_at_least_the_known_machine_examples() -> None:
    assert len(MACHINE_BLOCKS) >= 3


PYTHON_BLOCKS = blocks("python")


@pytest.mark.parametrize(("where", "code"), PYTHON_BLOCKS, ids=[name for name, _ in PYTHON_BLOCKS])
def test_python_examples_in_docs_run(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    completed = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_language_doc_counter_example_runs(tmp_path: Path) -> None:
    text = next(body for name, body in MACHINE_BLOCKS if name.startswith("language.md") and "name: counter" in body)
    path = tmp_path / "counter.yaml"
    path.write_text(text, encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "agentfsm", "run", str(path), "-i", "limit=5", "-q"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "5"


MERMAID_BLOCKS = blocks("mermaid")


def test_every_diagram_in_the_docs_parses_with_the_real_mermaid() -> None:
    from tests.mermaid import parse_mermaid_many

    assert MERMAID_BLOCKS, "docs/architecture.md has a picture of the layers"
    for (where, _), parsed in zip(MERMAID_BLOCKS, parse_mermaid_many([body for _, body in MERMAID_BLOCKS]),
                                  strict=True):
        assert parsed["ok"], f"{where}: {parsed.get('error')}"
