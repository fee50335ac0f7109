"""The corpus: every Step Functions definition of AWS's workflows collection either imports to a machine that
validates, or is refused with located reasons (JSON pointers), or is bad input named by one located line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentfsm.service.asl import export_file, import_file
from agentfsm.spec.problems import InputError

CORPUS = Path(__file__).resolve().parent / "asl" / "corpus" / "step-functions-workflows-collection"
IMPORTED_AT_LEAST = 168
"""Files of the corpus imported when this was written: a floor, so a change that imports fewer fails."""


def test_every_corpus_file_imports_or_is_refused_with_a_located_reason(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(path for path in CORPUS.iterdir() if re.search(r"\.asl\.(json|ya?ml)$", path.name))
    assert len(files) >= 170
    imported, refused, bad, jsonata = [], {}, {}, []
    for path in files:
        try:
            outcome = import_file(path)
        except InputError as exc:
            assert re.match(re.escape(str(path)) + r": /[^\n]*?: \S", str(exc)), exc
            assert "\n" not in str(exc)
            bad[path.name] = str(exc)
            continue
        if outcome.imported:  # import_file validated the machine it made
            imported.append(path.name)
            continue
        assert outcome.refusals, path.name
        if any(refusal["pointer"] == "/QueryLanguage" for refusal in outcome.refusals):
            jsonata.append(path.name)
        for refusal in outcome.refusals:
            assert refusal["pointer"].startswith("/") and refusal["message"], (path.name, refusal)
        refused[path.name] = outcome.refusals
    jsonpath = len(files) - len(jsonata)
    reasons: dict[str, int] = {}
    for refusals in refused.values():
        key = re.sub(r"\$\$\.\S+", "$$...", refusals[0]["message"])[:70]
        reasons[key] = reasons.get(key, 0) + 1
    with capsys.disabled():
        print(f"\nASL corpus: {len(imported)} of {jsonpath} JSONPath definitions imported "
              f"({100 * len(imported) / jsonpath:.1f}%); {len(refused)} refused, {len(bad)} bad input, "
              f"{len(jsonata)} JSONata")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            print(f"  refused {count:3d}: {reason}")
    assert len(imported) >= IMPORTED_AT_LEAST


def test_every_imported_definition_exports_and_imports_again_to_a_valid_machine(tmp_path: Path) -> None:
    """The round trip: import, export the machine, import that definition again; each step validates."""
    examples = Path(__file__).resolve().parent / "asl" / "examples"
    files = sorted([*CORPUS.glob("*.asl.*"), *examples.glob("*.asl.json")])
    trips = 0
    for path in files:
        machine = tmp_path / f"{path.name}.yaml"
        try:
            if not import_file(path, output=machine).imported:
                continue
        except InputError:
            continue
        exported = export_file(machine, output=tmp_path / f"{path.name}.out.asl.json")
        assert exported.text is not None, (path.name, exported.refusals)
        again = import_file(tmp_path / f"{path.name}.out.asl.json", output=tmp_path / f"{path.name}.again.yaml")
        assert again.imported, (path.name, again.refusals)
        trips += 1
    assert trips >= IMPORTED_AT_LEAST
