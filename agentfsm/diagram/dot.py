"""Graphviz `dot` source for a diagram, made locally (the same model the Mermaid renderer draws).

Any state name is safe: node ids are generated (`n0`, `n0_1_2`...), every name and label is a quoted
string with `\\`, `"` and `&` escaped (so Graphviz's own escapes such as `\\N` or `\\G`, and entities such as
`&amp;`, stay text) and whitespace folded. A composite state is a cluster holding its regions; arrows to it
end at its border (`lhead`).
A run-aware diagram draws the arrows the run took bold and blue with their counts, the others grey, the
states never entered dimmed and the state the run is in filled by how it stands there.
"""

from __future__ import annotations

from agentfsm.diagram.marks import shown_name, state_mark, state_notes, taken_label
from agentfsm.diagram.model import DiagramGraph

_FILLS = {
    "final": "#e6f4ea", "fail": "#fce8e6", "error": "#fce8e6", "unvisited": "#f8f9fa",
    "current": "#fff4cc", "waiting": "#e8f0fe", "paused": "#fef7e0", "failed": "#fce8e6",
    "cancelled": "#f1f3f4", "ended": "#e6f4ea",
}
_STROKES = {
    "final": "#188038", "fail": "#c5221f", "error": "#c5221f", "visited": "#1a73e8", "unvisited": "#dadce0",
    "current": "#f9ab00", "waiting": "#1a73e8", "paused": "#e37400", "failed": "#c5221f",
    "cancelled": "#5f6368", "ended": "#188038",
}
_WIDTHS = {"visited": "2", "current": "3", "waiting": "3", "paused": "3", "failed": "3", "cancelled": "3",
           "ended": "3"}


def quote(text: str) -> str:
    """A Graphviz quoted string showing `text` as written (lines joined by `\\n`, centred)."""
    lines = [" ".join(line.split()) for line in text.split("\n")]
    # Graphviz reads `\X` escapes and HTML entities (`&amp;`) in any string: both are written so they show as is
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;") for line in lines]
    return '"' + "\\n".join(escaped) + '"'


def _attrs(**values: str | None) -> str:
    shown = [f"{key}={value}" for key, value in values.items() if value is not None]
    return f" [{', '.join(shown)}]" if shown else ""


def _look(mark: str | None) -> dict[str, str | None]:
    """Colours of a state (or a cluster) by how it is marked."""
    if mark is None:
        return {}
    return {"color": quote(_STROKES.get(mark, "#000000")), "fillcolor": quote(_FILLS[mark]) if mark in _FILLS else None,
            "penwidth": _WIDTHS.get(mark), "fontcolor": quote("#9aa0a6") if mark == "unvisited" else None}


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def graph(self, graph: DiagramGraph, prefix: str, indent: str) -> dict[str, str]:
        """Write `graph`'s states, regions and arrows; return each state's node id (a composite's: its anchor)."""
        ids = {name: f"{prefix}{index}" for index, name in enumerate(graph.kinds)}
        for name, node in ids.items():
            if name in graph.regions:
                self.cluster(graph, name, node, indent)
            else:
                self.state(graph, name, node, indent)
        if graph.initial in ids:
            self.lines.append(f"{indent}{prefix}start [shape=circle, style=filled, fillcolor=black, label=\"\", "
                              "width=0.2, fixedsize=true];")
            self.arrow(graph, f"{prefix}start", graph.initial, ids, indent, "")
        for edge in graph.edges:
            if edge.source in ids and edge.target in ids:
                run = graph.run is not None
                look = {"color": quote("#1a73e8" if edge.taken else ("#9aa0a6" if run else "#444444")),
                        "penwidth": "2" if edge.taken else None,
                        "fontcolor": quote("#1a73e8") if edge.taken else None,
                        "style": "dotted" if not edge.declared else ("dashed" if edge.is_error else None)}
                self.arrow(graph, ids[edge.source], edge.target, ids, indent, taken_label(edge.label, edge.taken),
                           tail=edge.source, **look)
        for index, name in enumerate(graph.terminals):
            end = f"{prefix}end{index}"
            self.lines.append(f"{indent}{end} [shape=doublecircle, style=filled, fillcolor=black, label=\"\", "
                              "width=0.12, fixedsize=true];")
            dimmed = state_mark(graph, name) == "unvisited"
            self.arrow(graph, ids[name], None, ids, indent, "", tail=name, head_id=end,
                       color=quote("#9aa0a6") if dimmed else None)
        return ids

    def state(self, graph: DiagramGraph, name: str, node: str, indent: str) -> None:
        mark = state_mark(graph, name)
        label = "\n".join([shown_name(graph, name), *state_notes(graph, name)])
        choice = name in graph.choices
        look = _look(mark)
        style = "filled" if choice else "rounded,filled"
        look["fillcolor"] = look.get("fillcolor") or quote("#ffffff")
        self.lines.append(f"{indent}{node}" + _attrs(label=quote(label), shape="diamond" if choice else "box",
                                                     style=quote(style), **look) + ";")

    def cluster(self, graph: DiagramGraph, name: str, node: str, indent: str) -> None:
        """A composite state: a cluster titled with its name, its regions inside (each a cluster of its own)."""
        look = _look(state_mark(graph, name))
        self.lines.append(f"{indent}subgraph cluster_{node} {{")
        inner = indent + "  "
        self.lines.append(f"{inner}label={quote(shown_name(graph, name))}; style=\"rounded,filled\"; "
                          f"fillcolor={look.get('fillcolor') or quote('#fafafa')}; "
                          f"color={look.get('color') or quote('#444444')};")
        self.lines.append(f"{inner}{node} [shape=point, style=invis, width=0.01, height=0.01, label=\"\"];")
        for index, (label, region) in enumerate(graph.regions[name]):
            region_id = f"{node}_{index}"
            self.lines.append(f"{inner}subgraph cluster_{region_id} {{")
            self.lines.append(f"{inner}  label={quote(label)}; style=dashed; color={quote('#9aa0a6')};")
            self.graph(region, region_id + "_", inner + "  ")
            self.lines.append(f"{inner}}}")
        self.lines.append(f"{indent}}}")

    def arrow(self, graph: DiagramGraph, source_id: str, target: str | None, ids: dict[str, str], indent: str,
              label: str, *, tail: str | None = None, head_id: str | None = None, **look: str | None) -> None:
        """An arrow; one that leaves or enters a composite state starts or ends at its cluster's border."""
        head = head_id or ids[target or ""]
        ends = {"ltail": quote(f"cluster_{ids[tail]}") if tail in graph.regions else None,
                "lhead": quote(f"cluster_{head}") if target in graph.regions else None}
        self.lines.append(f"{indent}{source_id} -> {head}" + _attrs(label=quote(label) if label else None,
                                                                     **ends, **look) + ";")


def render_dot(graph: DiagramGraph) -> str:
    """Graphviz source for `graph` (feed it to `dot -Tsvg`, or see `agentfsm.diagram.graphviz`)."""
    writer = _Writer()
    writer.lines += ["digraph machine {",
                     '  graph [compound=true, fontname="Helvetica", fontsize=11, nodesep=0.4, ranksep=0.45];',
                     '  node [fontname="Helvetica", fontsize=11, margin="0.15,0.06"];',
                     '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];']
    writer.graph(graph, "n", "  ")
    writer.lines.append("}")
    return "\n".join(writer.lines) + "\n"
