"""Item checks compiled to SQL for a dialect, from one definition.

A check's condition is written once in the rule set (``checks.yaml``), in DuckDB's spelling,
with ``{name}`` parameters, and compiled for the engine that runs it by
``custodes.store.dialects`` (moved there so that intake's item checks, in the ``requests``
room, compile the same way; this module keeps the rules room's names).
"""

from __future__ import annotations

from custodes.store.dialects import (
    AUTHORING_DIALECT,
    DIALECTS,
    PARAM,
    CompileError,
    Dialect,
    Spark,
    compile_check,
    parameters,
)

__all__ = [
    "AUTHORING_DIALECT",
    "DIALECTS",
    "PARAM",
    "CompileError",
    "Dialect",
    "Spark",
    "compile_check",
    "parameters",
]
