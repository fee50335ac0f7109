"""Pictures (SVG, PNG) of a diagram, drawn by Graphviz's `dot` on this machine: no web service is ever called."""

from __future__ import annotations

import shutil
import subprocess

IMAGE_FORMATS = ("svg", "png")
TIMEOUT_SECONDS = 60.0
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"


class GraphvizError(Exception):
    """`dot` is not installed, or it could not draw the source."""


def dot_program() -> str | None:
    """The path of Graphviz's `dot` on PATH, or None."""
    return shutil.which("dot")


def render_image(source: str, image_format: str) -> bytes:
    """`source` (Graphviz dot) drawn as `image_format` (svg or png) by the local `dot` (an argv list, no shell)."""
    if image_format not in IMAGE_FORMATS:
        raise GraphvizError(f"'{image_format}' is not an image format ({', '.join(IMAGE_FORMATS)})")
    program = dot_program()
    if program is None:
        raise GraphvizError(f"--format {image_format} needs Graphviz's dot, which is not on PATH: {INSTALL_HINT}")
    try:
        done = subprocess.run([program, f"-T{image_format}"], input=source.encode("utf-8"), capture_output=True,
                              timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"Graphviz's dot took longer than {TIMEOUT_SECONDS:g}s to draw the diagram") from None
    except OSError as exc:
        raise GraphvizError(f"could not run Graphviz's dot ({program}): {exc.strerror or exc}") from None
    if done.returncode != 0 or not done.stdout:
        problem = " ".join(done.stderr.decode("utf-8", "replace").split())[:300]
        raise GraphvizError(f"Graphviz's dot could not draw the diagram: {problem or f'exit {done.returncode}'}")
    return done.stdout
