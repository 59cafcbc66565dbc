"""Workspace services: create one, sign in and out, enrol, and its status."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from custodes import settings
from custodes.access import Caller as Caller  # (the faces name it from here)
from custodes.access import CheckedCall, credentials, enrolment, service, sessions, users
from custodes.access import caller as _caller
from custodes.access.roles import ACTIONS
from custodes.errors import ConflictError, InputError, WorkspaceError
from custodes.ledger import anchors, cosigning, log, pkcs11
from custodes.ledger import keys as ledger_keys
from custodes.store import engine as store_engine
from custodes.store import identity
from custodes.store.tables import ledger_events
from custodes.tlog.note import NoteError, Signer, Verifier
from custodes.workspace import (
    MARKER,
    init_workspace,
    owner_only,
    public_url,
    resolve_home,
    write_record,
)
from custodes.workspace import Workspace as Workspace  # (the faces name it from here)
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
    `pool_size` for a server, sized with its admission limits. A server also pays the sign-in
    check's one-off set-up now, so that its first sign-in under an unknown name takes as long
    as any other (a command line pays it only when it checks a password)."""
    ws = _open_workspace(home, store_url, pool_size=pool_size)
    if pool_size is not None:
        credentials.warm()
    return ws


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


def _fingerprint(secrets_key: bytes) -> str:
    """A secrets key's identity: an HMAC of a fixed label under it (it reveals nothing of it)."""
    return hmac.new(secrets_key.strip(), b"custodes/secrets-id/v1", hashlib.sha256).hexdigest()


def _secrets_id(ws: Workspace) -> str | None:
    """The fingerprint of the workspace's secrets key, or None when it has none."""
    path = credentials.secrets_key_path(ws)
    return _fingerprint(path.read_bytes()) if path.exists() else None


def _has_ledger(ws: Workspace) -> bool:
    with ws.engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(ledger_events)).scalar())


def _check_ledger_key(
    ws: Workspace, held: dict[str, str], signer: Signer | pkcs11.Pkcs11Signer
) -> None:
    """Refuse a key other than the one the store's ledger is signed with: the store's recorded
    verifier key, or (a store made before it was recorded) the key of its latest checkpoint."""
    vkey = signer.verifier.vkey
    if held.get(identity.LEDGER_VKEY):
        if held[identity.LEDGER_VKEY] != vkey:
            raise ConflictError(
                f"The store's ledger is signed with {held[identity.LEDGER_VKEY]}, not with "
                f"this workspace's key ({vkey}); two keys would fork the ledger. Use the "
                "deployment's key (docs/operations.md); nothing was done.",
                code="ledger_key_mismatch",
            )
        return
    with ws.engine.connect() as conn:
        last = log.latest_checkpoint(conn)
    try:
        signed = last is None or bool(last[1].verified_by([signer.verifier]))
    except NoteError:
        signed = False
    if not signed:
        raise ConflictError(
            f"The store already holds a ledger whose checkpoints are not signed by this "
            f"workspace's key ({vkey}); two keys would fork the ledger. Nothing was done.",
            code="ledger_key_mismatch",
        )


def _check_secrets_key(held: dict[str, str], secrets_id: str | None) -> None:
    if held.get(identity.SECRETS_ID) and held[identity.SECRETS_ID] != secrets_id:
        raise ConflictError(
            "The store was made with another secrets key than this workspace's (it seals "
            "second factors and salts item commitments); use the deployment's secrets key "
            "(docs/operations.md). Nothing was done.",
            code="secrets_key_mismatch",
        )


def init(
    home: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    *,
    admin: str | None = None,
    password: str | None = None,
    origin: str | None = None,
    ledger_key: str | None = None,
    witness: tuple[str, Verifier] | None = None,
) -> dict[str, Any]:
    """Create a workspace (or upgrade one): the store, the secrets key and the ledger's signing
    key (origin given or derived; with `ledger_key`, a PKCS#11 URI, the key in that HSM), with
    `witness` (its URL and verifier key) the witness every checkpoint needs, and with `admin`
    its first administrator; record the store and the keys' identity in the workspace and in
    the store. Refused: a store whose ledger is signed by another key (`ledger_key_mismatch`),
    a store already in use by a deployment when this workspace has no key (`join_instead`: a
    second host runs 'custodes join'), a second bootstrap (`already_bootstrapped`). Open: run
    by the workspace's owner on their own machine."""
    if ledger_key is not None and not pkcs11.is_uri(ledger_key):
        raise InputError(
            "--ledger-key takes a PKCS#11 URI (pkcs11:token=...;object=...).",
            code="bad_pkcs11_uri",
        )
    ws, created = init_workspace(home, store_url)
    try:
        held = identity.read(ws.engine)
        new_key = not ledger_keys.has_key(ws)
        _check_init(ws, held, new_key, origin=origin, ledger_key=ledger_key, admin=admin)
        credentials.ensure_secrets_key(ws)
        adopted = None
        if ws.upgraded_from is not None and ws.upgraded_from < anchors.FIRST_ANCHORED_REVISION:
            with ws.engine.begin() as conn:  # once: the upgrade that brings the anchors
                adopted = anchors.adopt(conn)
        if new_key:
            ledger_keys.keygen(ws, origin, ledger_key)
        signer = ledger_keys.load_signer(ws)
        secrets_id = _secrets_id(ws)
        assert secrets_id is not None  # ensured above
        ids = identity.record(
            ws.engine, {identity.LEDGER_VKEY: signer.verifier.vkey, identity.SECRETS_ID: secrets_id}
        )
        write_record(ws.home, ws.store_url, ids)
        info: dict[str, Any] = {
            "home": str(ws.home),
            "store": ws.engine.url.render_as_string(hide_password=True),
            "created": created,
            "ledger_origin": ledger_keys.origin(ws) or signer.name,
            "ledger_key_created": new_key,
            "vkey": signer.verifier.vkey,
        }
        if witness is not None:
            with ws.engine.begin() as conn:
                cosigning.set_witness(conn, witness[0], witness[1], "init")
            info["witness"] = witness[1].name
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


def _check_init(
    ws: Workspace,
    held: dict[str, str],
    new_key: bool,
    *,
    origin: str | None,
    ledger_key: str | None,
    admin: str | None,
) -> None:
    """Every refusal of `init`, before anything is written: another ledger or secrets key, a
    second key or origin for a ledger, a second bootstrap."""
    if new_key and (held.get(identity.LEDGER_VKEY) or _has_ledger(ws)):
        raise ConflictError(
            f"The store at {public_url(ws.store_url)} already holds a ledger and this "
            "workspace has no key for it; init never makes a second key for a ledger. "
            "On a second host run 'custodes join' with the deployment's key "
            "(docs/operations.md).",
            code="join_instead",
        )
    if not new_key:
        if ledger_key and ledger_key.strip() != ledger_keys.hsm_uri(ws):
            raise ConflictError(
                "This workspace already has its ledger key; a ledger keeps one key for life.",
                code="key_exists",
            )
        _check_ledger_key(ws, held, ledger_keys.load_signer(ws))
        if origin and ledger_keys.origin(ws) not in (None, origin):
            raise ConflictError(
                f"This ledger's origin is already {ledger_keys.origin(ws)}.",
                code="origin_fixed",
            )
    if held.get(identity.SECRETS_ID) and _secrets_id(ws) is None:
        raise ConflictError(
            "The store was made with a secrets key this workspace does not have; on a "
            "second host run 'custodes join' with the deployment's keys.",
            code="join_instead",
        )
    _check_secrets_key(held, _secrets_id(ws))
    if admin and users.has_users(ws):
        raise ConflictError(
            "The store already has users; the first administrator is made once, and "
            "every other user by two administrators. Nothing was done.",
            code="already_bootstrapped",
        )


def _ledger_key_from(source: str) -> Signer | str:
    """The signer a `--ledger-key` source names: a key file (the deployment's, copied by the
    operator), or an HSM's PKCS#11 URI (returned as is: its signer needs the store's origin)."""
    if pkcs11.is_uri(source):
        pkcs11.Pkcs11Uri.parse(source)  # refused now when malformed
        return source.strip()
    path = Path(source)
    try:
        return Signer.decode(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        raise InputError(f"{source}: not a readable key file.", code="bad_argument") from None
    except NoteError as exc:
        raise InputError(f"{source}: not a ledger key ({exc}).", code="bad_argument") from None


def _copy_secret(data: bytes, dest: Path) -> None:
    """Write a key into the new workspace (owner-only, never over a file or through a link)."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def join(
    home: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    *,
    ledger_key: str | None = None,
    secrets_key: str | None = None,
) -> dict[str, Any]:
    """Make this host's workspace folder for an existing deployment: its store (shared, e.g.
    one PostgreSQL database) and its keys (the ledger key and the secrets key, copied by the
    operator, or named by CUSTODES_LEDGER_KEY / CUSTODES_SECRETS_KEY). Checks each key against
    the identity the store recorded, then records the store and keys here. Never creates a
    store, a key or a user, and never changes the store. Open: run by the owner of the new
    folder."""
    owner_only()
    path = resolve_home(home)
    url = store_url or settings.raw("CUSTODES_STORE_URL")
    if not url:
        raise InputError(
            "Joining needs the deployment's store: give --store-url (or CUSTODES_STORE_URL).",
            code="bad_argument",
        )
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConflictError(
            f"{path} already exists and is not an empty folder; join makes a new workspace.",
            code="workspace_exists",
        )
    source = _ledger_key_from(ledger_key) if ledger_key else None
    try:
        secrets = Path(secrets_key).read_bytes() if secrets_key else None
    except OSError:
        raise InputError(f"{secrets_key}: not a readable key file.", code="bad_argument") from None
    ws = Workspace(path, url)
    try:
        store_engine.check_current(ws.engine)
        held = identity.read(ws.engine)
        if not (held.get(identity.STORE_ID) and held.get(identity.LEDGER_VKEY)):
            raise ConflictError(
                f"The store at {public_url(url)} belongs to no deployment yet; the first host "
                "makes it with 'custodes init'.",
                code="not_a_deployment",
            )
        signer = _joining_signer(ws, source)
        _check_ledger_key(ws, held, signer)
        fingerprint = _fingerprint(secrets) if secrets is not None else _secrets_id(ws)
        if fingerprint is None:
            raise WorkspaceError(
                "Joining needs the deployment's secrets key: give --secrets-key (or "
                "CUSTODES_SECRETS_KEY).",
                code="no_secrets_key",
            )
        _check_secrets_key(held, fingerprint)
        # Every check passed: only now is anything written, and only in the new folder.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("bulk", "requests", "keys"):
            (path / sub).mkdir(mode=0o700, exist_ok=True)
        if ledger_key:  # a key file's copy, or the HSM key's URI (the key stays in the HSM)
            ref = signer.uri.text if isinstance(signer, pkcs11.Pkcs11Signer) else signer.encode()
            _copy_secret((ref + "\n").encode(), ws.keys / "ledger.key")
        if secrets is not None:
            _copy_secret(secrets, ws.keys / "secrets.key")
        write_record(path, url, held)
        (path / MARKER).write_text("custodes workspace\n")
        return {
            "home": str(path),
            "store": public_url(url),
            "ledger_origin": ledger_keys.origin(ws) or signer.name,
            "vkey": signer.verifier.vkey,
        }
    finally:
        ws.close()


def _joining_signer(ws: Workspace, source: Signer | str | None) -> Signer | pkcs11.Pkcs11Signer:
    """The ledger key a joining host signs with: the key file given, the HSM key its URI
    names, or the key where this host finds it (CUSTODES_LEDGER_KEY)."""
    if isinstance(source, str):
        return pkcs11.Pkcs11Signer(ledger_keys.origin(ws) or "custodes.local/ledger", source)
    if source is not None:
        return source
    try:
        return ledger_keys.load_signer(ws)
    except ledger_keys.NoLedgerKey:
        raise InputError(
            "Joining needs the deployment's ledger key: give --ledger-key (or "
            "CUSTODES_LEDGER_KEY); join never makes a key.",
            code="bad_argument",
        ) from None


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
    return enrolment.enrol(ws, name, code, password)


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
    """The workspace's store and master file (counts only, no personal data), and warnings
    about how its ledger is guarded (a key kept as a file, no witness, signing held)."""
    from custodes.records import master  # DuckDB: only for this command, not every one

    ws = call.ws
    return {
        "home": str(ws.home),
        "store": ws.engine.url.render_as_string(hide_password=True),
        "master_file": master.summary(ws),
        "ledger_key": "hsm" if ledger_keys.hsm_uri(ws) else "file",
        "witness": (w.url if (w := cosigning.witness_config(ws)) else None),
        "warnings": _ledger_warnings(ws),
    }


def _ledger_warnings(ws: Workspace) -> list[str]:
    warnings = []
    if ledger_keys.hsm_uri(ws) is None:
        warnings.append(
            "The ledger's signing key is a file in the workspace "
            f"({ledger_keys.key_path(ws)}): whoever copies it can sign a rewritten log. "
            "Keep it in an HSM (custodes init --ledger-key pkcs11:...)."
        )
    if cosigning.witness_config(ws) is None:
        warnings.append(
            "No witness cosigns this ledger's checkpoints: a rewritten, re-signed log cannot "
            "be told from the real one. Configure one (custodes ledger use-witness URL --key "
            "VKEY)."
        )
    held = ledger_keys.held(ws)
    if held:
        warnings.append(
            f"Signing is held: {held} An administrator runs 'custodes ledger confirm-restore'."
        )
    return warnings
