"""Check Mermaid ``stateDiagram-v2`` text with the real Mermaid parser.

``parse_mermaid_many(texts)`` runs ``tests/js/mermaid_parse.mjs`` (npm ``mermaid``
under node, with ``jsdom`` for the DOM) once for a whole batch and returns, per
text, either ``{"ok": False, "error": "<Mermaid's message>"}`` or::

    {"ok": True,
     "diagramType": "stateDiagram",            # Mermaid's id for stateDiagram-v2
     "states": {id: label, ...},               # nested states included, [*] left out
     "parents": {id: composite_id, ...},       # only states inside a composite
     "transitions": [{"from": id, "to": id, "label": str}, ...],  # [*] -> "[*]"
     "shapes": {id: shape, ...},               # "rect", "rectWithTitle" (with descriptions), "choice",
                                               # "roundedWithTitle" (a composite)...
     "classes": {id: [class, ...], ...},       # given by `class` statements (only states that have some)
     "notes": {id: text, ...}}                 # the note beside a state (`note right of id : text`)

Labels are the text Mermaid displays: entities decoded (``#58;`` -> ``:``),
markdown applied (``**x**`` -> ``x``), tags dropped, ``<br>`` reported as ``\\n``;
a state with several descriptions gives them joined by ``\\n``. Transitions come
in source order, a composite's inner ones where its ``state X { ... }`` block is;
a ``[*]`` inside a composite is ``"[*]"`` too.

Setup: ``npm ci --prefix tests/js`` (Node >= 20.19). Start the slow node process
once per test module: put all diagrams of a module in one ``parse_mermaid_many``.

What Mermaid 11.17.2 does with awkward text (each point checked through this
harness and, for labels, by rendering the SVG in jsdom and reading its text):

Entities
  * Before parsing, Mermaid turns every ``#<word>;`` (regex ``#\\w+;``) anywhere in
    the text into an HTML entity, shown as ``&#<digits>;`` / ``&<name>;``:
    ``#58;`` -> ":", ``#59;`` -> ";", ``#quot;`` / ``#34;`` -> '"', ``#35;`` -> "#",
    ``#9829;`` -> "♥", ``#127881;`` -> "🎉". Hex (``#x3A;``) does NOT work: it
    shows "&x3A;". So a raw ``#12;`` in a label becomes a control character
    ("issue #12; fix" shows "issue \\x0c fix"): write "#" as ``#35;``.
  * Raw HTML entities are decoded too: "a &lt; b" shows "a < b".

``state "Label" as id``
  * A ``"`` in the label is a parse error (Expecting 'AS', got 'COMPOSIT_STATE'):
    write ``#quot;``. An empty label ``state "" as s1`` is a parse error.
  * ``<<fork>>``, ``<<join>>``, ``<<choice>>``, ``[[fork]]``, ``[[join]]``,
    ``[[choice]]`` anywhere on the line: no error, but garbage states
    (``"a``, ``b"``, ``as``) and the label is lost. ``;``, ``:``, ``{``, ``}``,
    ``-->``, ``[*]``, ``%%`` (not followed by ``{``) are taken literally.
  * Leading/trailing spaces are trimmed.

``a --> b : label``  (Mermaid lexes the label with ``\\s*:(?:[^:\\n;]|:[^:\\n;])+``)
  * A raw ``;`` ends the label SILENTLY: ``a --> b : semi; x`` gives label "semi"
    plus bogus states ";" and "x". Write ``#59;``. (So ``&amp;`` breaks too.)
  * ``::`` or a label ending in ``:`` is a parse error; a single ``:`` passes.
    Write ``#58;``. ``a --> b :`` (empty label) is a parse error: leave out the
    `` : `` when there is no label. ``"``, ``{``, ``}``, ``-->``, ``[*]``, ``%%``
    are taken literally. Leading/trailing spaces are trimmed.
  * Always write `` : `` with a space after the colon: Mermaid deletes the last
    ``;`` of any line matching ``/style.*:\\S*#.*;/`` or ``/classDef.*:\\S*#.*;/``
    before parsing (``a --> b : lifestyle:#58;x`` shows "lifestyle:#58x").

``direction`` — the trap: no parse error, text silently lost
  * The lexer tries ``/.*direction\\s+(TB|BT|RL|LR)[^\\n]*/i`` before any other
    rule at each token, so the rest of any line containing "direction",
    whitespace, then TB/BT/RL/LR (any case, even inside a word: "redirection LR",
    "direction TBX") is swallowed as a ``direction`` statement, which also
    changes the diagram's layout direction:
      - ``a --> b : direction LR`` (or ``: go direction TB now``): the whole
        transition disappears (and a, b with it if not used elsewhere);
      - ``state "direction TB" as s1``: the label is lost (s1 shows "s1");
      - ``s1 : direction LR``: the description is lost;
      - ``state "direction LR" as C {``: the composite's opening disappears, its
        states move to the root and the closing ``}`` becomes a state "}".
  * ``\\s+`` spans newlines: a line ENDING in "direction" (a label such as
    "change direction", or an id such as ``mydirection``) followed by a line
    starting with tb/bt/rl/lr (e.g. ``lr_state --> c``) swallows that next line
    too (observed: the whole diagram came out empty, still "ok").
  * Harmless: "direction" alone or at the end of a label followed by a normal
    next line, "direction XY", "directionTB", "direction_LR".
  * Fix: write the first letter as an entity, ``#100;irection`` ("d") or
    ``#68;irection`` ("D"); Mermaid displays "direction". (``direction#32;LR``
    also works.) Never put "direction" (any case) in an id.

Markup in labels (states and transitions are rendered as markdown + HTML)
  * ``**b**``, ``__b__`` -> bold b; ``*i*``, ``_i_`` -> italic i (the markers
    vanish; "a_b_c" stays). ``\\*`` shows "*" (the backslash is eaten).
    Write ``#42;`` for "*", ``#95;`` for "_", ``#92;`` for "\\".
  * Tag-like text is HTML: ``<b>x</b>`` shows bold "x", ``<br>``/``<br/>`` is a
    line break, ``<script>`` is removed; ``<<fork>>`` in a transition label
    shows "<>". "a < b > c" survives. Write ``#60;`` / ``#62;``.
  * ``%%{ ... }%%`` anywhere is taken out as a Mermaid directive (it vanishes
    from the label and may change the configuration). Write "%" as ``#37;``.
    A line starting with ``%%`` is a comment.
  * Shown literally: ``-->``, ``{``, ``}``, ``[*]``, "'", "$", "|", "(", ")",
    "!", "?", "@", "~", "^", "`", "# Title", "1. item", "- item", "> q",
    "[x](url)", tabs, and raw non-ASCII ("é", "日本", "🎉").

Recommended label escaping (``escape_label`` below; a round trip of ~600 random
labels built from all the pieces above displayed exactly the stripped original,
as state label, transition label and composite label): strip surrounding
whitespace; keep ASCII letters, digits and spaces; "\\n" -> ``<br>``; every other
character -> ``#<decimal code point>;``; then the first letter of every
case-insensitive "direction" -> ``#100;`` / ``#68;``. An empty label: omit it.

State ids
  * Safe: ``[A-Za-z0-9_]+`` (a leading digit is fine: "1a", "123"); ids are
    case-sensitive ("A" and "a" are two states). Also accepted: end, direction
    (but see above), hide, fork, join, choice, accTitle, accDescr, "é".
  * Parse errors, in any case (STATE, Note, ...): state, note, class, classDef,
    style, click, href, default, scale, stateDiagram; ``as`` as a composite
    (``state as {``); any "-" ("a-b"). ``a:b`` is read as id "a" + label "b".
  * Accepted by the parser but wrong:
      - ``root``: Mermaid's own id for the top document: the state is dropped
        from the db (missing from "states" here) and rendering crashes;
      - ``root_start`` / ``root_end`` and ``<Composite>_start`` /
        ``<Composite>_end``: the ids Mermaid gives ``[*]``, so such a state is
        merged with the start/end pseudo-state (and reported as "[*]" here);
      - names of JS object members (constructor, toString, valueOf,
        hasOwnProperty, __proto__): parse fine, rendering crashes in the layout;
      - ids with "<...>" lose their label.
  * Ids are global: the same id inside two composites is ONE state (its parent
    is the last composite that mentions it).
  * Recommendation: generated ids such as ``s0``, ``s1``, ... (or a fixed
    prefix + ``[A-Za-z0-9_]``, checked not to contain "direction" nor end in
    ``_start``/``_end``), with the real state name in the label.
"""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "mermaid_parse.mjs"
NODE_MODULES = JS_DIR / "node_modules"
TIMEOUT_SECONDS = 120

NODE = shutil.which("node")
MERMAID_AVAILABLE: bool = bool(
    NODE
    and (NODE_MODULES / "mermaid" / "package.json").is_file()
    and (NODE_MODULES / "jsdom" / "package.json").is_file()
)


def _missing_reason() -> str | None:
    if not NODE:
        return "node is not on PATH: the Mermaid harness needs Node.js >= 20.19 (and npm)."
    if not MERMAID_AVAILABLE:
        return (
            f"Mermaid's npm packages are not installed ({NODE_MODULES} has no mermaid/jsdom): "
            "run `npm ci --prefix tests/js` from the repository root."
        )
    return None


def require_mermaid() -> None:
    """Fail the calling test (never skip: CI must have the tooling) if node or the npm packages are missing."""
    reason = _missing_reason()
    if reason:
        pytest.fail(reason, pytrace=False)


def parse_mermaid_many(texts: list[str]) -> list[dict[str, Any]]:
    """Parse every diagram with the real Mermaid, in one node process; one result per text, in order."""
    texts = list(texts)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("parse_mermaid_many() takes a list of str")
    require_mermaid()
    if not texts:
        return []
    assert NODE is not None
    try:
        completed = subprocess.run(
            [NODE, str(SCRIPT)],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT_SECONDS,
            cwd=JS_DIR,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{SCRIPT.name} took longer than {TIMEOUT_SECONDS} s for {len(texts)} diagrams") from exc
    if completed.returncode != 0:
        raise RuntimeError(
            f"{SCRIPT.name} exited with {completed.returncode}:\n{completed.stderr.strip()[-4000:]}"
        )
    try:
        results = json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"{SCRIPT.name} printed no JSON: {completed.stdout[:500]!r}\nstderr: {completed.stderr[-2000:]}"
        ) from exc
    if not isinstance(results, list) or len(results) != len(texts):
        raise RuntimeError(f"{SCRIPT.name} returned {len(results)} results for {len(texts)} diagrams")
    return results


def parse_mermaid(text: str) -> dict[str, Any]:
    """Parse one diagram (starts node: prefer parse_mermaid_many for several)."""
    return parse_mermaid_many([text])[0]


_KEPT = frozenset(string.ascii_letters + string.digits + " ")
_DIRECTION_FIRST_LETTER = re.compile(r"[dD](?=[iI][rR][eE][cC][tT][iI][oO][nN])")


def escape_label(text: str) -> str:
    """The label escaping the notes above call for: Mermaid displays exactly ``text.strip()``.

    A reference for the diagram generator and its tests, not used by the harness itself.
    """
    out = []
    for char in text.strip():
        if char in _KEPT:
            out.append(char)
        elif char == "\n":
            out.append("<br>")
        else:
            out.append(f"#{ord(char)};")
    return _DIRECTION_FIRST_LETTER.sub(lambda m: f"#{ord(m.group(0))};", "".join(out))
