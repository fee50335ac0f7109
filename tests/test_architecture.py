"""Imports point one way: spec and runtime below, bindings, compiler, api, observability, cli above."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agentfsm"

# layer -> layers it may import from (besides itself)
ALLOWED = {
    "spec": set(),
    "runtime": set(),
    "bindings": {"spec", "runtime"},
    "compiler": {"spec", "runtime", "bindings"},
    "store": set(),
    "history": {"spec", "runtime", "bindings", "compiler", "store"},
    "service": {"spec", "runtime", "bindings", "compiler", "store", "history"},
    "api": {"spec", "runtime", "bindings", "compiler", "store", "history"},
    "observability": {"spec", "runtime", "bindings", "compiler", "store", "history"},
    "reference": {"spec", "runtime"},
    "seed": {"runtime", "store", "history"},
    "cli": {"spec", "runtime", "bindings", "compiler", "api", "store", "history", "observability", "service"},
}
# StateMachine.visualize() imports the diagram module lazily, as a convenience (docs/architecture.md)
EXCEPTIONS = {("runtime/machine.py", "observability")}


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
