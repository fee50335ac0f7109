"""Imports point one way: spec, runtime and store below; bindings, compiler, history above them; the application
layer (service) over all of those; the CLI over the application layer and the renderers only."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agentfsm"

# layer -> layers it may import from (besides itself)
ALLOWED = {
    # the numbers of every bound (docs/security.md) and the deadline renders watch: a leaf any layer may read
    "limits": set(),
    "diagram": {"limits"},
    "spec": {"limits"},
    "runtime": {"diagram", "limits"},
    "store": {"limits"},
    "bindings": {"spec", "runtime", "limits"},
    "compiler": {"spec", "runtime", "bindings", "limits"},
    # a kind brings its spec model, checks, runtime State and compile step; the language loads kinds by name
    "kinds": {"spec", "runtime", "bindings", "compiler", "limits"},
    "history": {"runtime", "bindings", "store", "limits"},
    # machine tests, record and replay: runs of compiled machines with stubbed bindings, read from recorded history
    "testing": {"spec", "runtime", "bindings", "compiler", "store", "history", "limits"},
    "observability": {"spec", "runtime", "bindings", "store", "history", "diagram", "limits"},
    # Amazon States Language in and out: reads and writes the language's documents (spec) only
    "asl": {"spec", "limits"},
    # run-aware diagrams: the application layer reads a run's path and draws it with the observability renderers
    "service": {"spec", "runtime", "bindings", "compiler", "store", "history", "testing", "limits", "asl",
                "diagram", "observability"},
    "api": {"runtime", "service", "limits"},
    "reference": {"spec", "runtime", "testing", "limits"},
    "seed": {"runtime", "store", "history", "service", "limits"},
    # the web UI is a skin like the CLI: HTTP handlers over the application layer, diagrams from observability
    "web": {"service", "observability", "limits"},
    "cli": {"service", "observability", "web", "limits"},
}
EXCEPTIONS: set[tuple[str, str]] = set()
"""(module, layer) imports allowed against the rule above: none."""


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    layers = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "agentfsm" and len(parts) > 1:
                layers.add(parts[1])
    return layers


SOURCES = [p for p in sorted(PACKAGE.rglob("*.py")) if layer_of(p) in ALLOWED]


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_imports_point_one_way(path: Path) -> None:
    layer = layer_of(path)
    relative = str(path.relative_to(PACKAGE))
    for imported in imported_layers(path) - {layer}:
        if (relative, imported) in EXCEPTIONS:
            continue
        assert imported in ALLOWED[layer], f"{relative} ({layer}) imports agentfsm.{imported}"


def test_help_does_not_import_the_heavy_layers() -> None:
    code = (
        "import sys; from agentfsm.cli.app import app; "
        "heavy = [m for m in ('pydantic', 'jinja2', 'agentfsm.runtime', 'agentfsm.compiler') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == ""


def test_layers_form_no_circle() -> None:
    """Every layer's imports (lazy ones too) lead away from it: following them never comes back."""
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        layer = layer_of(path)
        graph.setdefault(layer, set()).update(imported_layers(path) - {layer})
    for start in graph:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            layer = stack.pop()
            assert layer != start, f"agentfsm.{start} imports itself through {sorted(seen)}"
            if layer not in seen:
                seen.add(layer)
                stack.extend(graph.get(layer, ()))


def test_the_picture_in_docs_agrees_with_the_rules() -> None:
    """docs/architecture.md draws every layer, and each arrow it draws is an import the rules allow."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    picture = text.split("```mermaid", 1)[1].split("```", 1)[0]
    arrows = re.findall(r"^\s*(\w+)(?:\[.*?\])?\s*-->\s*(\w+)", picture, re.MULTILINE)
    nodes = set(re.findall(r"^\s*(\w+)", picture, re.MULTILINE)) - {"flowchart"}
    assert nodes == set(ALLOWED), f"layers drawn: {sorted(nodes)}; layers in the rules: {sorted(ALLOWED)}"
    for source, target in arrows:
        assert target in ALLOWED[source], f"the picture draws {source} --> {target}, which the rules forbid"
