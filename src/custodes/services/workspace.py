"""Workspace services: create one, sign in and out, enrol, and its status."""

from __future__ import annotations

import os
from typing import Any

from custodes.access import Caller, CheckedCall, credentials, service, sessions, users
from custodes.access import caller as _caller
from custodes.access.roles import ACTIONS
from custodes.errors import ConflictError
from custodes.ledger import anchors
from custodes.ledger import keys as ledger_keys
from custodes.records.master import summary
from custodes.workspace import Workspace, init_workspace
from custodes.workspace import open_workspace as _open_workspace

# How long a staff session lasts (hours).
SESSION_HOURS = sessions.SESSION_HOURS


def open_workspace(
    home: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    *,
    pool_size: int | None = None,
) -> Workspace:
    """Open an existing workspace (refused when missing, outdated or readable by others);
    `pool_size` for a server, sized with its admission limits."""
    return _open_workspace(home, store_url, pool_size=pool_size)


def caller(ws: Workspace, token: str | None) -> Caller:
    """The caller behind a session token or API key (command line, HTTP API), checked now; a
    console session is refused (`console_session`): the console's cookie is no bearer token."""
    return _caller(ws, token, kinds=("session", "key"))


def console_caller(ws: Workspace, token: str | None) -> Caller:
    """The caller behind a console cookie, checked now: only a session opened by signing in
    to the console (an API key or an API session is refused, `not_a_console_session`)."""
    return _caller(ws, token, kinds=("console",))


def system_use_notice() -> str:
    """The system-use notification shown before sign-in (configuration: the file named by
    CUSTODES_SYSTEM_USE_NOTICE, else the packaged text for systems holding FTI)."""
    return sessions.system_use_notice()


def csrf_token(ws: Workspace, token: str) -> str:
    """The console's anti-forgery token for its session (not derivable from the cookie)."""
    return credentials.csrf_token(ws, token)


def init(
    home: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    *,
    admin: str | None = None,
    password: str | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    """Create a workspace (or upgrade one): the store, the secrets key and the ledger's signing
    key (origin given or derived), and with `admin` its first administrator. Open: run by the
    workspace's owner on their own machine."""
    ws, created = init_workspace(home, store_url)
    try:
        credentials.ensure_secrets_key(ws)
        adopted = None
        if ws.upgraded_from is not None and ws.upgraded_from < anchors.FIRST_ANCHORED_REVISION:
            with ws.engine.begin() as conn:  # once: the upgrade that brings the anchors
                adopted = anchors.adopt(conn)
        key = ledger_keys.key_path(ws)
        new_key = not key.exists()
        if new_key:
            ledger_keys.keygen(ws, origin)
        elif origin and ledger_keys.origin(ws) not in (None, origin):
            raise ConflictError(
                f"This ledger's origin is already {ledger_keys.origin(ws)}.", code="origin_fixed"
            )
        info: dict[str, Any] = {
            "home": str(ws.home),
            "store": ws.engine.url.render_as_string(hide_password=True),
            "created": created,
            "ledger_origin": ledger_keys.origin(ws) or ledger_keys.load_signer(ws).name,
            "ledger_key_created": new_key,
            "vkey": ledger_keys.load_signer(ws).verifier.vkey,
        }
        if adopted is not None:
            info["anchored_rows"] = sum(adopted.values())
        if admin:
            users.bootstrap_admin(ws, admin, password or "")
            info["admin"] = admin
        elif not users.has_users(ws):
            info["note"] = "no users yet: run 'custodes init --admin NAME' to create the first"
        return info
    finally:
        ws.close()


def login(
    ws: Workspace,
    name: str,
    password: str,
    *,
    totp: str | None = None,
    client: str | None = None,
    forwarded_for: str | None = None,
    console: bool = False,
) -> str:
    """Sign in (password, and the one-time code when required); returns the session token:
    a console session with `console` (good only in the console), else one for the command
    line and the API.
    Failures are throttled per name and source: `client` (the HTTP peer's address) and its
    `forwarded_for` (X-Forwarded-For, which counts only when the peer is the configured proxy,
    CUSTODES_TRUSTED_PROXY)."""
    return sessions.login(
        ws,
        name,
        password,
        totp=totp,
        client=client,
        forwarded_for=forwarded_for,
        kind="console" if console else "session",
    )


def logout(ws: Workspace, token: str) -> bool:
    return sessions.logout(ws, token)


def enrol(ws: Workspace, name: str, code: str, password: str) -> dict[str, Any]:
    """A new user sets their own password with their one-time code (and receives their second
    factor's provisioning URI when a role of theirs needs one)."""
    return users.enrol(ws, name, code, password)


@service("session")
def whoami(call: CheckedCall) -> dict[str, Any]:
    return {
        "user": call.actor,
        "roles": sorted(call.caller.roles),
        "kind": call.caller.kind,
        "agency": call.caller.agency,
        # What the caller's roles allow (for a face to show only what the user may do; the
        # door still decides every call).
        "may": sorted(a for a, roles in ACTIONS.items() if call.caller.roles & set(roles)),
    }


@service("status")
def status(call: CheckedCall) -> dict[str, Any]:
    """The workspace's store and master file (counts only, no personal data)."""
    ws = call.ws
    return {
        "home": str(ws.home),
        "store": ws.engine.url.render_as_string(hide_password=True),
        "master_file": summary(ws),
    }
