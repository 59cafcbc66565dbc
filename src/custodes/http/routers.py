"""The resource modules of a face, by name and in the order their routes are matched."""

from __future__ import annotations

import importlib
from types import ModuleType


def resources(package: str, names: str) -> tuple[ModuleType, ...]:
    """The modules `names` (separated by spaces) of `package`, imported, in that order: a face
    lists its resources once, as words, where the order of their routes is decided."""
    return tuple(importlib.import_module(f"{package}.{name}") for name in names.split())
