"""Reading machine files: safe YAML, exact positions, clear problems."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterator

import pytest
import yaml

from agentfsm.spec import yamlnodes, yamlsource
from agentfsm.spec.problems import Problem
from agentfsm.spec.yamlsource import MAX_FILE_BYTES, Mark, YamlDocument, load_yaml_file, parse_yaml, read_text

MACHINE = """\
# A small machine
agentfsm: 1
name: triage
states:
  think:
    type: llm
    prompt: |
      Read {{ ticket }}
      and decide.
    transitions:
      - to: answer
        when: "score > 3"
      - {to: done}
  done: {type: final}
"""


@pytest.fixture(params=["libyaml", "python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with libyaml (when installed) and with PyYAML's pure-Python parser."""
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("libyaml is not installed")
    if request.param == "python":
        monkeypatch.setattr(yamlsource, "EventParser", yamlnodes.PyEventParser)
    yield request.param


def parse_ok(text: str) -> YamlDocument:
    doc, problems = parse_yaml(text, "m.yaml")
    assert problems == []
    assert doc is not None
    return doc


def only_problem(text: str) -> Problem:
    doc, problems = parse_yaml(text, "m.yaml")
    assert doc is None
    assert len(problems) == 1, problems
    return problems[0]


# --- positions --------------------------------------------------------------------------


def test_data_is_plain_json_like(backend: str) -> None:
    doc = parse_ok(MACHINE)
    assert doc.data == {
        "agentfsm": 1,
        "name": "triage",
        "states": {
            "think": {
                "type": "llm",
                "prompt": "Read {{ ticket }}\nand decide.\n",
                "transitions": [{"to": "answer", "when": "score > 3"}, {"to": "done"}],
            },
            "done": {"type": "final"},
        },
    }


def test_marks_of_values_and_keys(backend: str) -> None:
    marks = parse_ok(MACHINE).source_map
    assert marks.value(("name",)) == Mark(3, 7)
    assert marks.key(("name",)) == Mark(3, 1)
    assert marks.key(("states", "think")) == Mark(5, 3)
    assert marks.value(("states", "think", "type")) == Mark(6, 11)
    assert marks.key(("states", "think", "transitions")) == Mark(10, 5)
    # list items: key() is the item's start, like value()
    assert marks.value(("states", "think", "transitions", 0)) == Mark(11, 9)
    assert marks.key(("states", "think", "transitions", 0)) == Mark(11, 9)
    assert marks.value(("states", "think", "transitions", 0, "when")) == Mark(12, 15)
    assert marks.value(("states", "think", "transitions", 1)) == Mark(13, 9)
    assert marks.value(("states", "think", "transitions", 1, "to")) == Mark(13, 14)
    assert marks.value(("states", "done", "type")) == Mark(14, 16)


def test_block_scalars_are_flagged(backend: str) -> None:
    marks = parse_ok(MACHINE).source_map
    assert marks.value(("states", "think", "prompt")) == Mark(7, 13)  # the `|`; text starts on line 8
    assert marks.is_block_scalar(("states", "think", "prompt"))
    assert not marks.is_block_scalar(("states", "think", "type"))
    assert not marks.is_block_scalar(("states", "nope"))
    folded = parse_ok("a: >-\n  folded\n  text\n").source_map
    assert folded.is_block_scalar(("a",))


def test_missing_paths_and_nearest() -> None:
    marks = parse_ok(MACHINE).source_map
    assert marks.value(("states", "nope")) is None
    assert marks.key(("states", "think", "transitions", 5)) is None
    # the transitions list, which starts at its first `-`
    assert marks.nearest(("states", "think", "transitions", 5, "to")) == Mark(11, 7)
    assert marks.nearest(("states", "think", "type")) == Mark(6, 11)
    assert marks.nearest(("elsewhere",)) == Mark(2, 1)  # the document's mapping
    assert marks.value(()) == Mark(2, 1)


def test_columns_count_characters_not_bytes(backend: str) -> None:
    marks = parse_ok("é€: ünïcode\nb: [x, ÿ]\n").source_map
    assert marks.value(("é€",)) == Mark(1, 5)
    assert marks.value(("b", 1)) == Mark(2, 8)


# --- what values become -------------------------------------------------------------------


def test_keys_are_always_their_text() -> None:
    data = parse_ok('on: push\nyes: 1\n1: one\nnull: n\ntrue: t\n0x10: hex\n"quoted": q\n1.5: f\n').data
    assert data == {
        "on": "push",
        "yes": 1,
        "1": "one",
        "null": "n",
        "true": "t",
        "0x10": "hex",
        "quoted": "q",
        "1.5": "f",
    }


def test_values_follow_the_yaml_1_2_core_schema() -> None:
    data = parse_ok("a: on\nb: no\nc: ~\nd: 0x10\ne: 1_000\nf: .inf\ng: '1'\nh: !!str 3\ni: !!float 2\nj: <<\n").data
    assert data == {
        "a": "on",
        "b": "no",
        "c": None,
        "d": 16,
        "e": "1_000",
        "f": float("inf"),
        "g": "1",
        "h": "3",
        "i": 2.0,
        "j": "<<",
    }


def test_dates_stay_strings() -> None:
    data = parse_ok("day: 2024-01-01\nwhen: 2024-01-01 10:30:00\niso: 2024-01-01T10:30:00Z\n").data
    assert data == {"day": "2024-01-01", "when": "2024-01-01 10:30:00", "iso": "2024-01-01T10:30:00Z"}


def test_a_key_that_is_a_mapping_or_list_is_refused() -> None:
    doc, problems = parse_yaml("ok: 1\n? [a, b]\n: 2\n{x: 1}: 3\n", "m.yaml")
    assert doc is not None and doc.data == {"ok": 1}
    assert [(p.code, p.line, p.column) for p in problems] == [("invalid-value", 2, 3), ("invalid-value", 4, 1)]


# --- duplicates ---------------------------------------------------------------------------


def test_every_duplicate_key_is_reported_and_the_first_value_kept() -> None:
    text = "states:\n  think: 1\n  act: 2\n  think: 3\nname: a\nname: b\n"
    doc, problems = parse_yaml(text, "m.yaml")
    assert doc is not None
    assert doc.data == {"states": {"think": 1, "act": 2}, "name": "a"}
    assert [(p.code, p.line, p.column) for p in problems] == [
        ("yaml-duplicate-key", 4, 3),
        ("yaml-duplicate-key", 6, 1),
    ]
    assert problems[0].message == "duplicate key 'think' (first defined at line 2)"
    assert problems[1].message == "duplicate key 'name' (first defined at line 5)"
    assert str(problems[0]).startswith("m.yaml:4:3: error yaml-duplicate-key")


def test_on_and_quoted_on_are_the_same_key() -> None:
    _, problems = parse_yaml('on: 1\n"on": 2\n', "m.yaml")
    assert [p.code for p in problems] == ["yaml-duplicate-key"]


# --- tags -----------------------------------------------------------------------------------


def test_python_object_tag_is_refused_and_never_runs(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    text = f'agentfsm: 1\nname: !!python/object/apply:os.system ["echo hi > {marker}"]\n'
    doc, problems = parse_yaml(text, "m.yaml")
    assert not marker.exists()
    assert [(p.code, p.line, p.column) for p in problems] == [("yaml-tag", 2, 7)]
    assert "!!python/object/apply:os.system" in problems[0].message
    assert doc is not None and doc.data["name"] is None


def test_tagged_document_root_is_refused(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    found = only_problem(f'!!python/object/apply:os.system ["echo hi > {marker}"]\n')
    assert not marker.exists()
    assert (found.code, found.line, found.column) == ("yaml-tag", 1, 1)


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!foo x", "!foo"),
        ("!!binary aGk=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!timestamp 2024-01-01", "!!timestamp"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!!str {a: 1}", "!!str"),
    ],
)
def test_other_tags_are_refused(value: str, tag: str) -> None:
    doc, problems = parse_yaml(f"a: 1\nb: {value}\n", "m.yaml")
    assert [(p.code, p.line, p.column) for p in problems] == [("yaml-tag", 2, 4)]
    assert tag in problems[0].message


def test_explicit_standard_tag_with_a_bad_value() -> None:
    _, problems = parse_yaml("a: !!int twelve\n", "m.yaml")
    assert [(p.code, p.line, p.column) for p in problems] == [("invalid-value", 1, 4)]


# --- anchors, aliases, merge keys -----------------------------------------------------------------


def test_anchors_and_merge_keys() -> None:
    text = """\
base: &base {provider: openai, model: small, temperature: 0}
extra: &extra {model: large, timeout: 30}
llms:
  one:
    <<: *base
    temperature: 1
  two:
    <<: [*extra, *base]
  three: *base
"""
    doc = parse_ok(text)
    llms = doc.data["llms"]
    assert llms["one"] == {"provider": "openai", "model": "small", "temperature": 1}
    assert llms["two"] == {"model": "large", "timeout": 30, "provider": "openai", "temperature": 0}
    assert llms["three"] == {"provider": "openai", "model": "small", "temperature": 0}
    marks = doc.source_map
    # merged-in and aliased entries point at the anchor's nodes, explicit ones at themselves
    assert marks.value(("llms", "one", "provider")) == Mark(1, 24)
    assert marks.key(("llms", "one", "provider")) == Mark(1, 14)
    assert marks.value(("llms", "one", "temperature")) == Mark(6, 18)
    assert marks.value(("llms", "two", "model")) == Mark(2, 23)
    assert marks.value(("llms", "three", "model")) == Mark(1, 39)


def test_aliased_values_are_independent_copies() -> None:
    data = parse_ok("a: &a [1, 2]\nb: *a\n").data
    data["b"].append(3)
    assert data["a"] == [1, 2]


def test_a_widely_shared_anchor_is_fine() -> None:
    states = "".join(f"  s{i}: *common\n" for i in range(500))
    data = parse_ok(f"common: &common {{type: llm, retry: {{max: 3, on: [timeout]}}}}\nstates:\n{states}").data
    assert data["states"]["s499"] == {"type": "llm", "retry": {"max": 3, "on": ["timeout"]}}


def test_billion_laughs_is_stopped_quickly(backend: str) -> None:
    text = 'lol0: &lol0 "lol"\n' + "".join(
        f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]\n" for i in range(1, 10)
    )
    started = time.perf_counter()
    found = only_problem(text)
    assert time.perf_counter() - started < 3
    assert found.code == "yaml-alias-bomb"
    assert found.line > 1  # at an alias, not the document start


def test_billion_laughs_through_merge_keys() -> None:
    text = "m0: &m0 {" + ", ".join(f"k{j}: [1, 2, 3]" for j in range(50)) + "}\n"
    text += "".join(f"m{i}: &m{i} {{a: [{', '.join([f'*m{i - 1}'] * 9)}]}}\n" for i in range(1, 8))
    assert only_problem(text).code == "yaml-alias-bomb"


def test_recursive_alias_is_reported(backend: str) -> None:
    found = only_problem("a: &loop\n  - x\n  - *loop\n")
    assert (found.code, found.line, found.column) == ("yaml-alias-bomb", 3, 5)
    assert "*loop" in found.message


def test_recursive_merge_is_reported() -> None:
    found = only_problem("a: &loop\n  b:\n    <<: *loop\n")
    assert (found.code, found.line, found.column) == ("yaml-alias-bomb", 3, 9)


def test_undefined_alias() -> None:
    found = only_problem("a: 1\nb: *nowhere\n")
    assert (found.code, found.line, found.column) == ("yaml-syntax", 2, 4)
    assert "*nowhere" in found.message


# --- document shape -------------------------------------------------------------------------------


def test_syntax_error_position_and_one_line_message(backend: str) -> None:
    found = only_problem("agentfsm: 1\nname: x\n  bad: indent\n")
    assert (found.code, found.line, found.column) == ("yaml-syntax", 3, 6)
    assert "mapping values are not allowed" in found.message
    assert "\n" not in found.message and "^" not in found.message


def test_unclosed_flow_sequence(backend: str) -> None:
    found = only_problem("a: [1, 2\nb: 3\n")
    assert found.code == "yaml-syntax"
    assert found.line == 2
    assert "\n" not in found.message


def test_tab_indentation(backend: str) -> None:
    found = only_problem("states:\n\tthink: {}\n")
    assert (found.code, found.line, found.column) == ("yaml-syntax", 2, 1)
    assert "tabs" in found.message


def test_control_character(backend: str) -> None:
    found = only_problem("a: 1\nb: x\x07y\n")
    assert (found.code, found.line, found.column) == ("yaml-syntax", 2, 5)
    assert "U+0007" in found.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # and another\n", "---\n"])
def test_empty_documents(text: str) -> None:
    found = only_problem(text)
    assert (found.code, found.line, found.column) == ("yaml-empty", 1, 1)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("42\n", "a number"), ("~\n", "null")],
)
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    found = only_problem(text)
    assert found.code == "not-a-mapping"
    assert found.message == f"the file must hold a mapping (keys like agentfsm:, name:, states:), not {kind}"


def test_two_documents(backend: str) -> None:
    found = only_problem("a: 1\n---\nb: 2\n")
    assert (found.code, found.line, found.column) == ("yaml-multiple-documents", 2, 1)


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, "- " * 10_000 + "x\n", "a: {" * 10_000 + "}" * 10_000])
def test_deep_nesting_is_a_problem_not_a_crash(backend: str, text: str) -> None:
    found = only_problem(text)
    assert found.code == "yaml-syntax"
    assert "nest" in found.message


def test_problems_are_sorted_by_position() -> None:
    text = "b: !foo 1\na: 1\na: 2\nc: {x: 1, x: 2}\n"
    _, problems = parse_yaml(text, "m.yaml")
    positions = [(p.line, p.column) for p in problems]
    assert positions == sorted(positions) == [(1, 4), (3, 1), (4, 11)]


# --- files ------------------------------------------------------------------------------------------


def test_load_a_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MACHINE, encoding="utf-8")
    doc, problems = load_yaml_file(path)
    assert problems == [] and doc is not None
    assert doc.data["name"] == "triage"


def test_display_name_is_used_in_problems(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    _, problems = load_yaml_file(path, display_name="machines/m.yaml")
    assert str(problems[0]).startswith("machines/m.yaml:2:1:")


def test_missing_file(tmp_path: pathlib.Path) -> None:
    doc, problems = load_yaml_file(tmp_path / "nope.yaml")
    assert doc is None
    assert [(p.code, p.line, p.column) for p in problems] == [("file-not-found", 1, 1)]
    assert "nope.yaml" in problems[0].message


def test_directory(tmp_path: pathlib.Path) -> None:
    text, problems = read_text(tmp_path)
    assert text is None
    assert [p.code for p in problems] == ["not-a-file"]
    assert "directory" in problems[0].message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_not_opened(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    _, problems = read_text(fifo)  # would block forever if it were opened
    assert [p.code for p in problems] == ["not-a-file"]


def test_file_over_5_mb(tmp_path: pathlib.Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: no data is written
    text, problems = read_text(big)
    assert text is None
    assert [(p.code, p.line, p.column) for p in problems] == [("file-too-large", 1, 1)]
    assert "5 MB" in problems[0].message


def test_file_of_exactly_5_mb_is_read(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * (MAX_FILE_BYTES - 5))
    text, problems = read_text(path)
    assert problems == [] and text is not None


def test_invalid_utf8(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nname: caf".encode() + b"\xe9\n")
    doc, problems = load_yaml_file(path)
    assert doc is None
    assert [(p.code, p.line, p.column) for p in problems] == [("file-encoding", 1, 1)]
    assert "offset 14" in problems[0].message and "line 2" in problems[0].message


def test_utf8_bom_is_accepted(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfagentfsm: 1\nname: x\n")
    doc, problems = load_yaml_file(path)
    assert problems == [] and doc is not None
    assert doc.data == {"agentfsm": 1, "name": "x"}
    assert doc.source_map.key(("agentfsm",)) == Mark(1, 1)


def test_bom_in_text_is_accepted() -> None:
    assert parse_ok("\ufeffa: 1\n").data == {"a": 1}


def test_long_chain_of_merges_outside_the_built_data() -> None:
    # Anchors inside a refused node are never built, so nothing is cached before the
    # last one is merged: the whole chain is flattened at once.
    chain = "".join(f"  - &m{i} {{<<: *m{i - 1}, k{i}: {i}}}\n" for i in range(1, 3000))
    text = "x: !refused\n  - &m0 {k0: 0}\n" + chain + "y: *m2999\n"
    doc, problems = parse_yaml(text, "m.yaml")
    assert doc is None
    assert [p.code for p in problems] == ["yaml-tag", "yaml-syntax"]
    assert "merge keys nest" in problems[1].message


def test_huge_number_is_a_problem_not_a_crash() -> None:
    doc, problems = parse_yaml("n: " + "1" * 5000 + "\n", "m.yaml")
    assert [(p.code, p.line, p.column) for p in problems] == [("invalid-value", 1, 4)]
    assert len(problems[0].message) < 100


def test_yaml_1_1_surprises_do_not_happen() -> None:
    data = parse_ok("octal: 017\nsexagesimal: 1:20\nexponent: 1e3\nyes_word: yes\nbool: True\nnumber_text: '017'\n").data
    assert data == {
        "octal": 17,
        "sexagesimal": "1:20",
        "exponent": 1000.0,
        "yes_word": "yes",
        "bool": True,
        "number_text": "017",
    }
