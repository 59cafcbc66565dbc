"""Ledger services: the key, checkpoints, exports, proofs, witnesses, and verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from custodes.access import CheckedCall, service
from custodes.decisions import integrity
from custodes.errors import ConflictError, InputError
from custodes.ledger import audit, checkpoints, cosigning, keys, publish
from custodes.ledger.policy import Policy, PolicyError
from custodes.ledger.verify import Report as Report  # (the faces name it from here)
from custodes.ledger.verify import verify_export, verify_receipt
from custodes.store.archive import unpacked
from custodes.store.files import out_file, write_new
from custodes.tlog import witness as wit
from custodes.tlog.note import Checkpoint, Note, NoteError, Signer, Verifier
from custodes.workspace import Workspace

# What the HTTP face needs of the witness, named here (a face imports only the services).
Witness = wit.Witness
WITNESS_MAX_BODY = wit.MAX_BODY


def parse_key(value: str) -> Verifier:
    """A verifier key given as the key string itself, or as a file holding it."""
    text = value
    path = Path(value)
    if "+" not in value or path.is_file():
        if not path.is_file():
            raise InputError(f"{value}: neither a verifier key nor a file.", code="bad_key")
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{value}: not a readable text file.", code="bad_key") from None
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise InputError(f"Verifier key: {exc}.", code="bad_key") from None


def _policy(path: Path | None) -> Policy | None:
    if path is None:
        return None
    try:
        return Policy.parse(path.read_text(encoding="utf-8"))
    except (PolicyError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {exc}", code="bad_policy") from None


@service("ledger.sign")
def keygen(call: CheckedCall, origin: str | None = None, hsm: str | None = None) -> dict[str, Any]:
    """Create the ledger's signing key (normally done by 'custodes init'); with `hsm` (a
    PKCS#11 URI) use the Ed25519 key already made in that token."""
    signer = keys.keygen(call.ws, origin, hsm)
    return {
        "origin": signer.name,
        "vkey": signer.verifier.vkey,
        "key_file": str(keys.key_path(call.ws)),
        "hsm": keys.hsm_uri(call.ws) is not None,
    }


@service("ledger.read")
def key(call: CheckedCall) -> dict[str, Any]:
    return {"vkey": checkpoints.verifier(call.ws).vkey}


@service("ledger.read")
def status(call: CheckedCall) -> dict[str, Any]:
    return checkpoints.status(call.ws)


@service("ledger.sign")
def checkpoint(call: CheckedCall) -> dict[str, Any]:
    """Sign a checkpoint of the current tree (only if it extends the last one)."""
    cp, note = checkpoints.checkpoint(call)
    return {"origin": cp.origin, "size": cp.size, "note": note.render()}


@service("ledger.read")
def export(call: CheckedCall, folder: Path) -> dict[str, Any]:
    """The ledger as a C2SP tlog-tiles directory (no personal data, verifiable offline)."""
    return publish.export(call, folder)


@service("ledger.export_bodies")
def export_bodies(call: CheckedCall, folder: Path) -> dict[str, Any]:
    """The export plus every event body and salt (for auditors; recorded in the ledger)."""
    return publish.export(call, folder, bodies=True)


@service("ledger.read")
def verify_store(
    call: CheckedCall,
    key: Verifier | None = None,
    *,
    witness: Verifier | None = None,
    witness_url: str | None = None,
) -> Report:
    """Re-derive the whole ledger from the store and compare with everything stored and with
    the last checkpoint kept outside the store; with `witness`, that the log extends the last
    checkpoint that witness cosigned (asked of the witness at `witness_url` or the configured
    one, else taken from the stored cosigned checkpoints); then check every business table the
    ledger's events commit to (requests, outcomes, reviews, releases, disclosures, recalls,
    grants, suspensions, the access log) against those events."""
    report = audit.audit_store(call.ws, key, witness=witness, witness_url=witness_url)
    business = integrity.audit(call.ws)
    report.checked += business.checked
    for problem in business.problems:
        report.fail(problem)
    return report


def verify_path(
    path: Path,
    key: Verifier | None,
    *,
    previous: Path | None = None,
    policy: Path | None = None,
    body: Path | None = None,
    witness: Verifier | None = None,
) -> Report:
    """Verify an export folder or a receipt file offline. Open: outsiders verify."""
    if key is None:
        raise InputError("--key is required to verify an export or a receipt.", code="missing_key")
    if witness is not None:
        raise InputError(
            "--witness checks the workspace's store; for an export or a receipt name the "
            "witnesses in a --policy file.",
            code="bad_argument",
        )
    pol = _policy(policy)
    if path.is_dir():
        try:
            prev = previous.read_text(encoding="utf-8") if previous else None
        except UnicodeDecodeError:
            raise InputError(
                f"{previous}: not a checkpoint (not UTF-8 text).", code="bad_argument"
            ) from None
        return verify_export(path, key, previous=prev, policy=pol)
    if path.is_file():
        try:
            body_doc = json.loads(body.read_text(encoding="utf-8")) if body else None
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(
                f"{body or path}: not a readable receipt or body.", code="bad_argument"
            ) from None
        return verify_receipt(text, key, policy=pol, body=body_doc)
    raise InputError(f"{path}: no such file or folder.", code="file_not_found")


@service("ledger.read")
def check_receipt(call: CheckedCall, text: str) -> dict[str, Any]:
    """Check a receipt someone holds (its text) against this log's key: signature, inclusion,
    and any cosignatures. Nothing is stored."""
    if len(text) > 1 << 16:
        raise InputError("A receipt is at most 64 KiB of text.", code="bad_argument")
    return verify_receipt(text.replace("\r\n", "\n"), checkpoints.verifier(call.ws)).to_dict()


@service("ledger.read")
def check_export(call: CheckedCall, archive: IO[bytes]) -> dict[str, Any]:
    """Check an export someone holds (a zip or tar archive of its folder) against this log's
    key (every tile, entry bundle, the checkpoint's signature and, when it has them, every event
    body against its leaf) and against the live log (a prefix of it). Nothing is stored."""
    with unpacked(archive, "ledger export") as folder:
        return audit.check_export(call.ws, folder).to_dict()


@service("ledger.read")
def prove(call: CheckedCall, index: int, *, out: Path | None = None) -> dict[str, Any]:
    """A self-contained receipt (c2sp.org/tlog-proof@v1) that one event is in the ledger (no
    body: a receipt carries only hashes)."""
    if out is not None:
        out_file(out)
    receipt, _ = publish.prove(call, index)
    if out is not None:
        write_new(out, receipt.encode())
    return {"index": index, "receipt": receipt, "out": str(out) if out else None}


@service("ledger.export_bodies")
def prove_with_body(
    call: CheckedCall, index: int, body_out: Path, *, out: Path | None = None
) -> dict[str, Any]:
    """A receipt and the event's body and salt (for the holder of a receipt: what the leaf
    commits to). Auditors only, like an export with bodies, and recorded: a `file.written`
    event (who, which event, the file's hash) commits before the file appears."""
    for p in (out, body_out):
        if p is not None:
            out_file(p)
    receipt = publish.write_body(call, index, body_out)
    if out is not None:
        write_new(out, receipt.encode())
    return {"index": index, "receipt": receipt, "out": str(out) if out else None}


@service("ledger.sign")
def cosign(call: CheckedCall, url: str, witness: Verifier) -> dict[str, Any]:
    """Ask a witness to cosign the latest checkpoint (proving consistency with what it saw)."""
    return checkpoints.cosign(call, url, witness)


@service("ledger.sign")
def use_witness(call: CheckedCall, url: str, witness: Verifier) -> dict[str, Any]:
    """Make `witness` (at `url`) the witness whose cosignature every checkpoint needs, and have
    it cosign the latest checkpoint now (recorded in the ledger)."""
    return _use_witness(call, url, witness)


def _use_witness(call: CheckedCall, url: str, witness: Verifier) -> dict[str, Any]:
    with call.transaction() as conn:
        cosigning.set_witness(conn, url, witness, call.actor)
    cp, _ = checkpoints.checkpoint(call)
    return {"url": url, "witness": witness.name, "vkey": witness.vkey, "size": cp.size}


@service("ledger.sign")
def confirm_restore(call: CheckedCall) -> dict[str, Any]:
    """Lift the hold on signing of a restored workspace once its log is shown to extend the
    last checkpoint the witness cosigned (administrators; recorded in the ledger)."""
    return checkpoints.confirm_restore(call)


@service("ledger.sign")
def run_witness(call: CheckedCall, folder: Path, port: int | None = None) -> dict[str, Any]:
    """A witness for this ledger in its own process and folder (`folder`, outside the
    workspace: its key, its state, its log), started unless it already runs, and made the
    workspace's witness. For the demo and single-machine set-ups; in production the witness is
    its own service under its own user (docs/ledger.md). `port`: 7380 when free, else
    any free port."""
    folder = folder.resolve()
    if folder.is_relative_to(call.ws.home):
        raise InputError("The witness's folder must be outside the workspace.", code="bad_path")
    log_key = checkpoints.verifier(call.ws)
    port = port or (wit.DEFAULT_PORT if wit.port_free(wit.DEFAULT_PORT) else wit.free_port())
    pid, url, vkey = wit.spawn(folder, "witness.local", [log_key.vkey], "127.0.0.1", port)
    info = _use_witness(call, url, Verifier.parse(vkey))
    return info | {"pid": pid, "folder": str(folder)}


def witness_keygen(name: str, key_file: Path) -> Verifier:
    """A witness's key (cosignature/v1). Open: run by the oversight body on its machine."""
    if key_file.exists() or key_file.is_symlink():
        raise ConflictError(f"{key_file} already exists.", code="key_exists")
    return wit.keygen(name, key_file).verifier


def witness(key_file: Path, logs: list[str], state: Path) -> wit.Witness:
    """A witness (C2SP tlog-witness) for the logs named by their verifier keys. Open: run by
    an oversight body, standalone (`custodes witness serve`) or inside `custodes serve`."""
    try:
        signer = Signer.decode(key_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        raise InputError(f"{key_file}: {exc}", code="bad_key") from None
    if not logs:
        raise InputError("Name at least one log to witness (its verifier key).", code="missing_key")
    return wit.Witness(state, signer, [parse_key(v) for v in logs])


def witness_server(key_file: Path, logs: list[str], state: Path, host: str, port: int) -> Any:
    """A witness HTTP server (POST /add-checkpoint) for the logs named. Open."""
    return wit.make_server(witness(key_file, logs, state), host, port)


__all__ = ["Checkpoint", "Note"]


def public_checkpoint(ws: Workspace) -> bytes:
    """The latest signed checkpoint (open to anyone: it identifies no person)."""
    return publish.public_checkpoint(ws)


def public_receipt(ws: Workspace, index: int) -> str:
    """A receipt for one event against the latest signed checkpoint (open to anyone: a salted
    commitment and hashes, no person)."""
    return publish.public_receipt(ws, index)


def public_tile(ws: Workspace, path: str) -> tuple[bytes, bool]:
    """A tlog-tiles tile or entry bundle (open to anyone: leaves are salted commitments)."""
    return publish.public_tile(ws, path)
