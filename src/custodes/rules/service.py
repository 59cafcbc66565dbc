"""Rule services the faces call."""

from __future__ import annotations

from pathlib import Path

from custodes.rules.active import in_force
from custodes.rules.evaluate import Evaluation, evaluate
from custodes.rules.registry import Registry
from custodes.rules.ruleset import load
from custodes.workspace import Workspace


def check_request(ws: Workspace, request_dir: Path, rules: Path | None = None) -> Evaluation:
    """Evaluate a request directory against the rule set and the workspace's registries."""
    with ws.engine.connect() as conn:
        registry = Registry.read(conn)
    return evaluate(load(rules) if rules else in_force(ws), registry, request_dir)
