"""The rule set in force in a workspace, and the two-steward change that replaces it.

By default the reference §6103 rule set shipped with custodes is in force. Counsel can change
the law-as-data: one rule steward proposes a rule-set folder (it is linted, hashed and copied
into ``rules/<sha256>/`` in the workspace), and it takes effect only when a *second* rule
steward approves that exact hash. Every decision already records the hash it was made under.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select

from custodes.errors import AccessDenied, ConflictError, InputError, IntegrityError, NotFound
from custodes.ledger import anchors, log
from custodes.ledger.event_types import RulesetApproved, RulesetProposed
from custodes.rules.provisions import load
from custodes.rules.types import RuleSet
from custodes.store.tables import ruleset_changes
from custodes.workspace import Call, Workspace


def _folder(ws: Workspace, sha: str) -> Path:
    return ws.home / "rules" / sha  # sha is a hex digest this room computed


def in_force(ws: Workspace) -> RuleSet:
    """The approved rule set of this workspace, or the reference one. The activation must
    match the ledger event that anchors it (`authority_tampered` otherwise: a proposed rule
    set made active in the store)."""
    with ws.engine.connect() as conn:
        row = conn.execute(
            select(ruleset_changes).where(ruleset_changes.c.state == "active")
        ).first()
        if row is not None:
            anchors.check_one(conn, ruleset_changes, row)
    if row is None:
        return load()
    sha = row.sha256
    rs = load(_folder(ws, sha))
    if rs.sha256 != sha:
        raise IntegrityError(
            f"The rule set in force ({sha[:12]}) was changed on disk; it no longer matches "
            "its approved hash.",
            code="ruleset_tampered",
        )
    return rs


def propose(call: Call, folder: Path) -> dict[str, Any]:
    """Lint, hash and keep a rule-set folder as a proposal. Nothing changes until approved."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder.", code="file_not_found")
    rs = load(folder)  # refuses an invalid rule set with file:line problems
    dest = _folder(call.ws, rs.sha256)
    actor = call.actor
    with call.transaction() as conn:
        known = conn.execute(
            select(ruleset_changes.c.state).where(ruleset_changes.c.sha256 == rs.sha256)
        ).scalar()
        if known is not None:
            raise ConflictError(
                f"This rule set ({rs.sha256[:12]}) was already proposed ({known}).",
                code="already_proposed",
            )
        if not dest.exists():
            tmp = dest.with_name(f".{rs.sha256}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            # Owner-only like everything custodes writes: copytree keeps the source's modes
            # (a rule set copied from an installed package is world-readable).
            shutil.copytree(folder, tmp, symlinks=True, copy_function=shutil.copyfile)
            for path in (tmp, *tmp.rglob("*")):
                if not path.is_symlink():
                    path.chmod(0o700 if path.is_dir() else 0o600)
            tmp.rename(dest)
        anchors.insert(
            conn,
            actor,
            ruleset_changes,
            sha256=rs.sha256,
            name=rs.name,
            version=str(rs.version),
            state="proposed",
            proposed_by=actor,
            proposed_at=dt.datetime.now(dt.UTC),
        )
        log.append_one(conn, RulesetProposed(ruleset_sha256=rs.sha256), actor=actor)
    return {
        "ruleset_sha256": rs.sha256,
        "name": rs.name,
        "version": rs.version,
        "state": "proposed",
    }


def approve(call: Call, sha: str) -> dict[str, Any]:
    """A second rule steward puts a proposed rule set in force (the previous one retires)."""
    ws, actor = call.ws, call.actor
    if not sha or any(ch not in "0123456789abcdef" for ch in sha):
        raise NotFound("No single proposed rule set matches that hash.", code="unknown_ruleset")
    with call.transaction() as conn:
        row = conn.execute(
            select(ruleset_changes).where(ruleset_changes.c.sha256.startswith(sha))
        ).all()
        if len(row) != 1:
            raise NotFound("No single proposed rule set matches that hash.", code="unknown_ruleset")
        change = row[0]
        if change.state != "proposed":
            raise ConflictError(
                f"Rule set {change.sha256[:12]} is {change.state}.", code="not_proposed"
            )
        if change.proposed_by == actor:
            raise AccessDenied(
                "A rule-set change takes effect only when a second rule steward approves it.",
                code="separation_of_duties",
            )
        if load(_folder(ws, change.sha256)).sha256 != change.sha256:
            raise IntegrityError(
                f"The proposed rule set {change.sha256[:12]} was changed on disk since it was "
                "proposed; propose it again.",
                code="ruleset_tampered",
            )
        anchors.update_rows(
            conn, actor, ruleset_changes, ruleset_changes.c.state == "active", state="retired"
        )
        anchors.update_rows(
            conn,
            actor,
            ruleset_changes,
            ruleset_changes.c.sha256 == change.sha256,
            state="active",
            approved_by=actor,
            approved_at=dt.datetime.now(dt.UTC),
        )
        log.append_one(
            conn,
            RulesetApproved(ruleset_sha256=change.sha256, proposed_by=change.proposed_by),
            actor=actor,
        )
    return {"ruleset_sha256": change.sha256, "state": "active", "approved_by": actor}


def listing(ws: Workspace) -> list[dict[str, Any]]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(ruleset_changes).order_by(ruleset_changes.c.proposed_at))
        return [dict(r._mapping) for r in rows]
