"""Mermaid `stateDiagram-v2` source for a diagram, made locally.

Any state name is safe: ids are sanitised (`s_` + letters, digits, `_`) and names are
shown through `state "label" as id`; characters Mermaid would read as syntax are written
as entity codes (`#58;` for `:`, `#59;` for `;`), and the word `direction`, which
Mermaid's lexer takes as a keyword anywhere, is never written bare.

A run-aware diagram (`DiagramGraph.run`) labels each arrow the run took with how often it took it, marks the
state the run is in (`classDef`/`class`: current, waiting, paused, failed, ended) and dims the states it never
entered; composite states say it in their title instead, as Mermaid cannot style them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from agentfsm.diagram.marks import shown_name, state_classes, state_notes, taken_label
from agentfsm.diagram.model import DiagramGraph, RunMarks

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_]")
_DIRECTION = re.compile(r"(?i)d(?=irection)")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")


def escape_label(text: str) -> str:
    """Text Mermaid displays exactly as written.

    ASCII letters, digits and spaces stay; every other character becomes `#<code point>;`
    (so `:` is `#58;` and `;` is `#59;`); the `d` of any `direction` becomes `#100;`/`#68;`,
    because Mermaid's lexer reads `direction LR` anywhere on a line as a statement.
    """
    text = " ".join(text.split())
    escaped = "".join(char if char in _PLAIN else f"#{ord(char)};" for char in text)
    return _DIRECTION.sub(lambda m: f"#{ord(m.group(0))};", escaped)


def _safe_id(candidate: str) -> bool:
    lowered = candidate.lower()
    return "direction" not in lowered and not lowered.endswith(("_start", "_end"))


def state_ids(names: Iterable[str]) -> dict[str, str]:
    """A unique, Mermaid-safe id per state name: `s_<name>` where that is safe, else `s<index>`.

    Ids must avoid Mermaid keywords (a prefix does that), `direction` (a lexer trap) and the
    `_start`/`_end` suffixes Mermaid gives its own `[*]` pseudo-states.
    """
    ids: dict[str, str] = {}
    used: set[str] = set()
    for index, name in enumerate(names):
        candidate = "s_" + _UNSAFE_ID.sub("_", name)
        if candidate in used or not _safe_id(candidate):
            candidate = f"s{index}"
        while candidate in used:
            candidate += "_"
        used.add(candidate)
        ids[name] = candidate
    return ids


_CLASS_STYLES = {
    "final": "fill:#e6f4ea,stroke:#188038",
    "fail": "fill:#fce8e6,stroke:#c5221f",
    "error": "fill:#fce8e6,stroke:#c5221f",
    "visited": "stroke:#1a73e8,stroke-width:2px",
    "unvisited": "fill:#f8f9fa,stroke:#dadce0,color:#9aa0a6",
    "current": "fill:#fff4cc,stroke:#f9ab00,stroke-width:3px",
    "waiting": "fill:#e8f0fe,stroke:#1a73e8,stroke-width:3px",
    "paused": "fill:#fef7e0,stroke:#e37400,stroke-width:3px",
    "failed": "fill:#fce8e6,stroke:#c5221f,stroke-width:3px",
    "cancelled": "fill:#f1f3f4,stroke:#5f6368,stroke-width:3px",
    "ended": "fill:#e6f4ea,stroke:#188038,stroke-width:3px",
}


def _state_lines(graph: DiagramGraph, ids: dict[str, str], indent: str) -> list[str]:
    lines = []
    for name in graph.kinds:
        if name in graph.choices and name not in graph.regions:
            # a choice node shows no text: a note beside it names it
            lines.append(f"{indent}state {ids[name]} <<choice>>")
            lines.append(f"{indent}note right of {ids[name]} : {escape_label(shown_name(graph, name))}")
            continue
        lines.append(f'{indent}state "{escape_label(shown_name(graph, name))}" as {ids[name]}')
        if name in graph.regions:  # a description would replace a composite state's title
            continue
        lines.extend(f"{indent}{ids[name]} : {escape_label(note)}" for note in state_notes(graph, name))
    return lines


def _body(graph: DiagramGraph, prefix: str, indent: str, classes: dict[str, list[str]]) -> list[str]:
    """The lines drawing `graph`'s states (composite ones with their regions inside) and arrows; the states'
    classes, at every level, are added to `classes` (class -> ids)."""
    ids = {name: prefix + found for name, found in state_ids(graph.kinds).items()}
    lines = _state_lines(graph, ids, indent)
    for name, regions in graph.regions.items():
        if name not in ids or not regions:
            continue
        lines.append(f"{indent}state {ids[name]} {{")
        for index, (label, inner) in enumerate(regions):
            if index:
                lines.append(f"{indent}    --")
            region_id = f"{ids[name]}__{index}"
            if not label:  # a machine file: one state naming it
                lines.extend(_body(inner, region_id + "_", indent + "    ", classes))
                continue
            # an inline machine: a composite state named after the branch or agent, its states inside
            lines.append(f'{indent}    state "{escape_label(label)}" as {region_id}')
            lines.append(f"{indent}    state {region_id} {{")
            lines.extend(_body(inner, region_id + "_", indent + "        ", classes))
            lines.append(f"{indent}    }}")
        lines.append(f"{indent}}}")
    if graph.initial in ids:
        lines.append(f"{indent}[*] --> {ids[graph.initial]}")
    for edge in graph.edges:
        if edge.source in ids and edge.target in ids:
            label = escape_label(taken_label(edge.label, edge.taken))
            suffix = f" : {label}" if label else ""
            lines.append(f"{indent}{ids[edge.source]} --> {ids[edge.target]}{suffix}")
    for name in graph.terminals:
        lines.append(f"{indent}{ids[name]} --> [*]")
    for name, css_class in state_classes(graph).items():
        classes.setdefault(css_class, []).append(ids[name])
    return lines


def render(graph: DiagramGraph, *, visited: Iterable[str] = (), current: str | None = None) -> str:
    """Mermaid source for `graph` (`visited`/`current`: a run drawn over it, when `graph.run` does not say)."""
    seen = list(visited)
    if graph.run is None and (seen or current is not None):
        graph = replace(graph, run=RunMarks({name: 1 for name in seen}, current, counted=False))
    classes: dict[str, list[str]] = {}
    lines = ["stateDiagram-v2", *_body(graph, "", "    ", classes)]
    for css_class, members in classes.items():
        lines.append(f"    classDef {css_class} {_CLASS_STYLES[css_class]}")
        lines.append(f"    class {','.join(members)} {css_class}")
    return "\n".join(lines) + "\n"
