"""Tests of the Mermaid harness itself (tests/mermaid.py + tests/js/mermaid_parse.mjs).

Hand-written diagrams, all parsed by the real Mermaid in ONE node process (the
module-scoped ``parsed`` fixture): each test looks its diagrams up by name. They
also pin down the escaping findings documented at the top of tests/mermaid.py.
"""

from __future__ import annotations

import pytest

from tests.mermaid import escape_label, parse_mermaid, parse_mermaid_many, require_mermaid

H = "stateDiagram-v2\n"

VALID = (
    H
    + 'state "Awkward#58; name" as s1\n'
    + 'state "semi#59;colon#59; here" as s2\n'
    + 'state "Ünïcödé 日本語 🎉" as s3\n'
    + "[*] --> a\n"
    + "a --> s1 : go#58; now\n"
    + "s1 --> s2 : plain label\n"
    + "s2 --> s3 : ünï 🎉\n"
    + "s3 --> Outer\n"
    + 'state "Outer #35;1" as Outer {\n'
    + "    [*] --> inner1\n"
    + "    inner1 --> inner2 : step\n"
    + "    inner2 --> [*]\n"
    + "}\n"
    + "Outer --> a : retry\n"
    + "a --> [*]\n"
)

KEYWORD_IDS = ["state", "note", "class", "classDef", "style", "click", "href", "default", "scale", "stateDiagram", "STATE", "Note"]
ACCEPTED_IDS = ["end", "direction", "hide", "fork", "join", "choice", "accTitle", "s_1", "1a", "A"]


def _id_sample(state_id: str) -> str:
    return H + f'state "Label" as {state_id}\n[*] --> {state_id}\n{state_id} --> other : go\nother --> [*]\n'


NASTY_LABELS = [
    "Awkward: name; with semicolons; and #hash",
    'say "hello" & <b>bye</b>',
    "direction LR",
    "go Direction tb now",
    "change DIRECTION",
    "a::b: c;",
    "100% %%{init: {}}%% done %%",
    "arrow --> [*] { braces }",
    "**bold** _it_ `code` \\*esc\\*",
    "<<fork>> [[choice]]",
    "issue #12; fix &amp; &#58; ﬂ°°58¶ß",
    "style:#35;x; classDef:#1;",
    "state note as class end",
    "line one\nline two",
    "ünï 日本 🎉\ttab",
    "  padded  ",
]


def _escaped_sample(label: str) -> str:
    e = escape_label(label)
    return (
        H
        + f'state "{e}" as s1\n[*] --> s1\ns1 --> s2 : {e}\n'
        + f'state "{e}" as C {{\n  [*] --> c1\n  c1 --> c2 : {e}\n  c2 --> [*]\n}}\n'
        + "s2 --> C\nC --> [*]\n"
    )


SAMPLES: dict[str, str] = {
    "valid": VALID,
    "invalid": H + "a --> --> b\n",
    "not_mermaid": "this is not a diagram\n",
    "flowchart": "flowchart LR\n  a --> b\n",
    # a failure mid-composite, then one in Mermaid's db (group with a description), then valid again
    "fail_open_composite": H + "state Leak {\n  leaked1 --> leaked2\n  accTitle: t\n",
    "fail_in_db": H + 'state "L" as G {\n  g1 --> g2\n}\nG : extra description\n',
    "valid_again": VALID,
    # entities
    "entities": H + 'state "a#quot;b #34; #35; #9829; #127881; #amp; #lt;x#gt;" as s1\n[*] --> s1\n',
    "entity_hex": H + 'state "x#x3A;y" as s1\n[*] --> s1\n',
    "entity_accident": H + "a --> b : issue #12; fix\n",
    # quotes
    "quote_in_state": H + 'state "a"b" as s1\n[*] --> s1\n',
    "quote_in_transition": H + 'a --> b : say "hi"\n',
    # transition labels
    "semicolon_raw": H + "a --> b : semi; x\n",
    "semicolon_entity": H + "a --> b : semi#59; x\n",
    "double_colon": H + "a --> b : a::b\n",
    "trailing_colon": H + "a --> b : ends:\n",
    "single_colon": H + "a --> b : a: b\n",
    "empty_transition_label": H + "a --> b :\n",
    "empty_state_label": H + 'state "" as s1\n[*] --> s1\n',
    "percent_and_arrow": H + 'state "x %% --> [*] {y}" as s1\ns1 --> t : p %% q --> r { }\n',
    "directive_in_label": H + 'a --> b : x %%{init: {"theme": "dark"}}%% y\n',
    "style_mangling": H + "a --> b : lifestyle:#58;x\n",
    # direction
    "dir_transition": H + "a --> b : direction LR\nb --> c\n",
    "dir_transition_inside": H + "a --> b : go direction tb now\nb --> c\n",
    "dir_transition_escaped": H + "a --> b : #100;irection LR\nb --> c\n",
    "dir_transition_space_entity": H + "a --> b : direction#32;LR\nb --> c\n",
    "dir_state": H + 'state "direction TB" as s1\n[*] --> s1\n',
    "dir_state_escaped": H + 'state "#100;irection TB" as s1\n[*] --> s1\n',
    "dir_state_upper_escaped": H + 'state "#68;irection TB" as s1\n[*] --> s1\n',
    "dir_composite": H + 'state "direction LR" as C {\n  x --> y\n}\n[*] --> C\n',
    "dir_composite_escaped": H + 'state "#100;irection LR" as C {\n  x --> y\n}\n[*] --> C\n',
    "dir_across_lines": H + "a --> b : change direction\nlr_state --> c\n",
    "dir_harmless": H + "a --> b : direction\nb --> c : direction XY\nc --> d : directionTB\n",
    "dir_statement": H + "direction LR\n[*] --> a\n",
    # markup
    "markdown": H + 'state "**b** _i_ a_b_c" as s1\ns1 --> t : *x* __y__\n',
    "markdown_escaped": H + 'state "#42;#42;b#42;#42; #95;i#95;" as s1\n[*] --> s1\n',
    "html": H + 'state "<b>bold</b><br>next" as s1\ns1 --> t : a < b > c\n',
    "fork_in_label": H + 'state "a <<fork>> b" as s1\n[*] --> s1\n',
    # several descriptions, ids
    "descriptions": H + 'state "Title" as s1\ns1 : more\n[*] --> s1\n',
    "id_root": H + "[*] --> root\nroot --> other\n",
    "id_root_start": H + "[*] --> a\na --> root_start\nroot_start --> b\n",
    "id_shared_by_composites": H + "state A {\n  x --> y\n}\nstate B {\n  x --> z\n}\n",
    "id_case": H + "A --> a\n",
    "id_dash": H + "a-b --> c\n",
    **{f"id_keyword_{i}": _id_sample(i) for i in KEYWORD_IDS},
    **{f"id_accepted_{i}": _id_sample(i) for i in ACCEPTED_IDS},
    **{f"escaped_{n}": _escaped_sample(label) for n, label in enumerate(NASTY_LABELS)},
}


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict]:
    require_mermaid()
    results = parse_mermaid_many(list(SAMPLES.values()))
    return dict(zip(SAMPLES, results, strict=True))


def ok(result: dict) -> dict:
    assert result["ok"], result.get("error")
    return result


def test_valid_diagram_states_transitions_and_composite(parsed):
    r = ok(parsed["valid"])
    assert r["diagramType"] == "stateDiagram"
    assert r["states"] == {
        "a": "a",
        "s1": "Awkward: name",
        "s2": "semi;colon; here",
        "s3": "Ünïcödé 日本語 🎉",
        "Outer": "Outer #1",
        "inner1": "inner1",
        "inner2": "inner2",
    }
    assert r["parents"] == {"inner1": "Outer", "inner2": "Outer"}
    # source order; a composite's inner transitions where its `state X { }` block is
    assert r["transitions"] == [
        {"from": "[*]", "to": "a", "label": ""},
        {"from": "a", "to": "s1", "label": "go: now"},
        {"from": "s1", "to": "s2", "label": "plain label"},
        {"from": "s2", "to": "s3", "label": "ünï 🎉"},
        {"from": "s3", "to": "Outer", "label": ""},
        {"from": "[*]", "to": "inner1", "label": ""},
        {"from": "inner1", "to": "inner2", "label": "step"},
        {"from": "inner2", "to": "[*]", "label": ""},
        {"from": "Outer", "to": "a", "label": "retry"},
        {"from": "a", "to": "[*]", "label": ""},
    ]


def test_invalid_diagrams_report_mermaids_error(parsed):
    r = parsed["invalid"]
    assert r["ok"] is False
    assert "Parse error on line 2" in r["error"]
    assert parsed["not_mermaid"] == {
        "ok": False,
        "error": "No diagram type detected matching given configuration for text: this is not a diagram\n",
    }


def test_other_diagram_types_are_accepted_but_report_no_states(parsed):
    r = ok(parsed["flowchart"])
    assert r["diagramType"] == "flowchart-v2"
    assert r["states"] == {} and r["transitions"] == []


def test_failures_do_not_stop_or_pollute_the_batch(parsed):
    assert parsed["fail_open_composite"]["ok"] is False
    assert parsed["fail_in_db"] == {
        "ok": False,
        "error": "Group nodes can only have label. Remove the additional description for node [G]",
    }
    again = ok(parsed["valid_again"])
    assert again == parsed["valid"]
    assert not {"Leak", "leaked1", "leaked2", "G", "g1", "g2"} & set(again["states"])


def test_parse_mermaid_single_and_empty_batch():
    require_mermaid()
    assert parse_mermaid_many([]) == []
    r = parse_mermaid(H + 'state "x#58; y" as s1\n[*] --> s1\n')
    assert r["states"] == {"s1": "x: y"}
    assert r["transitions"] == [{"from": "[*]", "to": "s1", "label": ""}]


def test_entities(parsed):
    assert ok(parsed["entities"])["states"] == {"s1": 'a"b " # ♥ 🎉 & <x>'}
    assert ok(parsed["entity_hex"])["states"] == {"s1": "x&x3A;y"}  # hex entities do not work
    assert ok(parsed["entity_accident"])["transitions"][0]["label"] == "issue \x0c fix"


def test_quotes(parsed):
    assert "Expecting 'AS', got 'COMPOSIT_STATE'" in parsed["quote_in_state"]["error"]
    assert ok(parsed["quote_in_transition"])["transitions"][0]["label"] == 'say "hi"'


def test_transition_label_punctuation(parsed):
    raw = ok(parsed["semicolon_raw"])  # silently truncated, with bogus states
    assert raw["transitions"] == [{"from": "a", "to": "b", "label": "semi"}]
    assert raw["states"] == {"a": "a", "b": "b", ";": ";", "x": "x"}
    assert ok(parsed["semicolon_entity"])["transitions"][0]["label"] == "semi; x"
    assert parsed["double_colon"]["ok"] is False
    assert parsed["trailing_colon"]["ok"] is False
    assert ok(parsed["single_colon"])["transitions"][0]["label"] == "a: b"
    assert parsed["empty_transition_label"]["ok"] is False
    assert parsed["empty_state_label"]["ok"] is False
    r = ok(parsed["percent_and_arrow"])
    assert r["states"]["s1"] == "x %% --> [*] {y}"
    assert r["transitions"][0]["label"] == "p %% q --> r { }"
    assert ok(parsed["directive_in_label"])["transitions"][0]["label"] == "x  y"
    assert ok(parsed["style_mangling"])["transitions"][0]["label"] == "lifestyle:#58x"


def test_direction_in_labels_is_silently_swallowed(parsed):
    for name in ("dir_transition", "dir_transition_inside"):
        r = ok(parsed[name])
        assert r["transitions"] == [{"from": "b", "to": "c", "label": ""}], name
        assert "a" not in r["states"]
    assert ok(parsed["dir_state"])["states"] == {"s1": "s1"}
    r = ok(parsed["dir_composite"])
    assert "}" in r["states"] and r["parents"] == {}
    r = ok(parsed["dir_across_lines"])
    assert r["states"] == {} and r["transitions"] == []


def test_direction_escaped_with_an_entity(parsed):
    assert ok(parsed["dir_transition_escaped"])["transitions"][0] == {"from": "a", "to": "b", "label": "direction LR"}
    assert ok(parsed["dir_transition_space_entity"])["transitions"][0]["label"] == "direction LR"
    assert ok(parsed["dir_state_escaped"])["states"] == {"s1": "direction TB"}
    assert ok(parsed["dir_state_upper_escaped"])["states"] == {"s1": "Direction TB"}
    r = ok(parsed["dir_composite_escaped"])
    assert r["states"] == {"C": "direction LR", "x": "x", "y": "y"}
    assert r["parents"] == {"x": "C", "y": "C"}
    labels = [t["label"] for t in ok(parsed["dir_harmless"])["transitions"]]
    assert labels == ["direction", "direction XY", "directionTB"]
    assert ok(parsed["dir_statement"])["states"] == {"a": "a"}


def test_markup_in_labels(parsed):
    r = ok(parsed["markdown"])
    assert r["states"]["s1"] == "b i a_b_c"
    assert r["transitions"][0]["label"] == "x y"
    assert ok(parsed["markdown_escaped"])["states"] == {"s1": "**b** _i_"}
    r = ok(parsed["html"])
    assert r["states"]["s1"] == "bold\nnext"
    assert r["transitions"][0]["label"] == "a < b > c"
    r = ok(parsed["fork_in_label"])  # accepted, but garbage
    assert r["states"]["s1"] == "s1" and '"a' in r["states"]


def test_several_descriptions_are_joined(parsed):
    assert ok(parsed["descriptions"])["states"] == {"s1": "Title\nmore"}


@pytest.mark.parametrize("state_id", KEYWORD_IDS)
def test_keyword_ids_break_parsing(parsed, state_id):
    assert parsed[f"id_keyword_{state_id}"]["ok"] is False


@pytest.mark.parametrize("state_id", ACCEPTED_IDS)
def test_accepted_ids(parsed, state_id):
    r = ok(parsed[f"id_accepted_{state_id}"])
    assert r["states"] == {state_id: "Label", "other": "other"}
    assert r["transitions"] == [
        {"from": "[*]", "to": state_id, "label": ""},
        {"from": state_id, "to": "other", "label": "go"},
        {"from": "other", "to": "[*]", "label": ""},
    ]


def test_ids_mermaid_treats_specially(parsed):
    r = ok(parsed["id_root"])  # dropped from Mermaid's nodes
    assert r["states"] == {"other": "other"}
    assert {"from": "root", "to": "other", "label": ""} in r["transitions"]
    r = ok(parsed["id_root_start"])  # merged with the [*] pseudo-state
    assert r["states"] == {"a": "a", "b": "b"}
    assert r["transitions"] == [
        {"from": "[*]", "to": "a", "label": ""},
        {"from": "a", "to": "[*]", "label": ""},
        {"from": "[*]", "to": "b", "label": ""},
    ]
    r = ok(parsed["id_shared_by_composites"])  # one x, in B
    assert r["parents"] == {"x": "B", "y": "A", "z": "B"}
    assert ok(parsed["id_case"])["states"] == {"A": "A", "a": "a"}
    assert parsed["id_dash"]["ok"] is False


@pytest.mark.parametrize("index", range(len(NASTY_LABELS)))
def test_escape_label_round_trips(parsed, index):
    label = NASTY_LABELS[index].strip()
    r = ok(parsed[f"escaped_{index}"])
    assert r["states"] == {"s1": label, "s2": "s2", "C": label, "c1": "c1", "c2": "c2"}
    assert r["parents"] == {"c1": "C", "c2": "C"}
    assert [t["label"] for t in r["transitions"]] == ["", label, "", label, "", "", ""]
