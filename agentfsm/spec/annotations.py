"""Reading the language's type annotations: what `Annotated[...]`, `X | None` and a model's fields hold.

Shared by the error locator (`diagnostics.py`), the salvage of refused parts (`partial.py`) and the
checks' sites (`sites.py`).
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def unwrap(annotation: Any) -> Any:
    """The type under `Annotated[...]`."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def non_none(annotation: Any) -> list[Any]:
    """A union's members other than None."""
    return [member for member in typing.get_args(annotation) if member is not type(None)]


def plain(annotation: Any) -> Any:
    """The type under `Annotated[...]` and `X | None`."""
    while True:
        annotation = unwrap(annotation)
        if is_union(annotation) and len(members := non_none(annotation)) == 1:
            annotation = members[0]
        else:
            return annotation


def is_model_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@functools.cache
def fields_by_key(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """Key as it may be written (name or alias) -> (attribute name, field)."""
    keys: dict[str, tuple[str, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        keys[name] = (name, info)
        if info.alias:
            keys[info.alias] = (name, info)
    return keys
