"""Importing a user's `module:attribute` reference at run start (never during `validate`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any


class BindingError(Exception):
    """A binding cannot be set up at run start (a module that does not import, a missing file...)."""


def import_reference(reference: str, base_dir: Path | None, where: str) -> Any:
    """Import `module:attribute`, looking in `base_dir` (the machine file's folder) first."""
    module_name, _, attribute = reference.partition(":")
    added = base_dir is not None and str(base_dir) not in sys.path
    if added:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BindingError(f"{where}: cannot import module '{module_name}' ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        raise BindingError(f"{where}: importing '{module_name}' raised {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(str(base_dir))
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise BindingError(f"{where}: module '{module_name}' has no attribute '{attribute}'") from None
    return target


def confined_folder(relative: str, base_dir: Path | None, where: str) -> Path:
    """`relative` resolved against the machine file's folder (`..` and symlinks followed); it must stay inside."""
    base = (base_dir or Path.cwd()).resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL character
        raise BindingError(f"{where}: '{relative}' cannot be resolved ({exc})") from None
    if not target.is_relative_to(base):
        raise BindingError(f"{where}: '{relative}' leads to {target}, outside the machine file's folder {base}")
    if not target.is_dir():
        raise BindingError(f"{where}: '{relative}' is not a folder (looked for {target})")
    return target
