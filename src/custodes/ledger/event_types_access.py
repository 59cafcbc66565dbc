"""The declared ledger event types of access, the ledger itself, the records, matching, rules and
registries (see `event_types`, which re-exports them)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from custodes.ledger.events import OMIT, Declared, Omitted, declare, field_group

Absent = Omitted  # the annotation of a field that may be left out of the body


# --- field groups several types share (each type declares only what is its own) ----------------


@field_group
class AboutUser(Declared):
    """The user an access event is about."""

    user: str


@field_group
class PolicyValue(Declared):
    """A policy key and the value proposed or confirmed for it."""

    key: str
    value: str


@field_group
class Inspection(Declared):
    """An inspection of master-file records: its purpose by the keyed commitment its access-log
    row's event carries (`purpose_hmac`; the purpose is free text that may name a person), why
    it was refused (if it was), what was inspected and the reference given. Events written
    before 2026-12-07 carry the purpose's plain SHA-256 instead (`purpose_sha256`), which
    anyone holding the ledger could test guesses against."""

    refusal: str | None
    purpose_hmac: str | Absent | None = OMIT
    purpose_sha256: str | Absent = OMIT
    what: str | Absent = OMIT
    reference: str | Absent | None = OMIT


@field_group
class WorkspaceFile(Declared):
    """A file custodes stored in the workspace (its role, its path there)."""

    role: str
    path: str


@field_group
class RegistryChange(Declared):
    """How a registry row changed: directly (no second administrator), or by a confirmed
    proposal (who proposed it, the change's id)."""

    direct: bool | Absent = OMIT
    proposed_by: str | Absent = OMIT
    change_id: str | Absent = OMIT


# --- access: users, grants, sessions, policy ----------------------------------------------------


@declare
class Access(Declared):
    """One row of the access log (every call through the door, allowed or refused), so a
    deleted row is detected."""

    TYPE = "access"
    log_id: int
    action: str
    allowed: bool
    reason: str | None
    # The row's purpose (an inspection's free text) by its keyed commitment
    # (`anchors.value_commit`), null for none; absent from bodies written before it was kept.
    purpose_hmac: str | Absent | None = OMIT


@declare
class UserCreated(AboutUser):
    """A user was created (the bootstrap administrator, or by an administrator: roles pending
    a second administrator's confirmation)."""

    TYPE = "user.created"
    roles: list[str]
    bootstrap: bool
    expires: str | Absent | None = OMIT
    # the roles not yet in force (a list since dual control)
    pending_confirmation: list[str] | bool | Absent = OMIT
    change: str | Absent | None = OMIT
    enrolment_halves: int | Absent | None = OMIT


@declare
class UserEnrolmentIssued(AboutUser):
    """A new enrolment code was issued to a user, in two halves (a reset)."""

    TYPE = "user.enrolment_issued"
    change: str | None
    enrolment_halves: int


@declare
class UserEnrolled(AboutUser):
    """A user enrolled with their code (set a password, and a second factor if required)."""

    TYPE = "user.enrolled"
    second_factor: bool


@declare
class UserGranted(AboutUser):
    """A role was granted to a user (in force, or pending a second administrator)."""

    TYPE = "user.granted"
    role: str
    expires: str | None
    pending_confirmation: bool
    change: str | None  # the pending change's id (None: in force at once)


@declare
class UserConfirmed(AboutUser):
    """A second administrator confirmed a pending change about a user (roles, a key, a reset)."""

    TYPE = "user.confirmed"
    change: str
    proposed_by: str
    roles: list[str] = field(default_factory=list)
    keys: int = 0
    enrolment_second_half: bool | Absent = OMIT


@declare
class UserSuspended(AboutUser):
    """A user was suspended: their sessions, keys, enrolment codes and pending grants ended in
    the same transaction."""

    TYPE = "user.suspended"
    sessions_ended: int
    issued_keys_ended: int
    enrolment_codes_ended: int
    pending_grants_withdrawn: int


@declare
class UserReinstateRequested(AboutUser):
    """An administrator asked to reinstate a suspended user (a second one must confirm)."""

    TYPE = "user.reinstate_requested"


@declare
class UserReinstated(AboutUser):
    """A second administrator reinstated a suspended user."""

    TYPE = "user.reinstated"
    requested_by: str | None


@declare
class UserLocked(AboutUser):
    """A user's account was locked after repeated failed sign-ins."""

    TYPE = "user.locked"
    failures: int
    seconds: int


@declare
class UserKeyIssued(AboutUser):
    """An API key was issued to a user (pending a second administrator's confirmation)."""

    TYPE = "user.key_issued"
    days: int
    change: str | None


@declare
class PolicyProposed(PolicyValue):
    """An administrator proposed a policy value (in force once a second one confirms)."""

    TYPE = "policy.proposed"
    change: str | None


@declare
class PolicyConfirmed(PolicyValue):
    """A second administrator confirmed a proposed policy value: it is in force."""

    TYPE = "policy.confirmed"
    proposed_by: str | None
    change: str


@declare
class RecordFlaggedSensitive(Declared):
    """A master-file record was flagged sensitive (its inspections stand out in the audit)."""

    TYPE = "record.flagged_sensitive"


@declare
class RecordInspected(Inspection):
    """A user inspected a master-file record (or a table of them), for a purpose given by a
    keyed commitment."""

    TYPE = "record.inspected"


@declare
class RecordInspectionRefused(Inspection):
    """An inspection of a master-file record was refused (no open request names it, …)."""

    TYPE = "record.inspection_refused"


# --- ledger: files, witnesses, anchors ---------------------------------------------------------


@declare
class FileWritten(Declared):
    """custodes wrote a file a user asked for (an export, bodies, a receipt, a synthetic
    request): what, how many rows, its hash."""

    TYPE = "file.written"
    what: str
    rows: int
    sha256: str
    event: int | Absent = OMIT


@declare
class FileStored(WorkspaceFile):
    """custodes stored a file it will read back (role, path in the workspace, hash): checked
    against this event whenever it is read."""

    TYPE = "file.stored"
    sha256: str


@declare
class FileRefused(WorkspaceFile):
    """A stored file did not match its `file.stored` event when read back: it was not used."""

    TYPE = "file.refused"
    why: str


@declare
class LedgerWitnessConfigured(Declared):
    """A witness (its verifier key and URL) was configured to cosign the checkpoints."""

    TYPE = "ledger.witness_configured"
    witness: str
    url: str


@declare
class LedgerRestoreConfirmed(Declared):
    """A restored store was confirmed against a witness's latest cosigned checkpoint."""

    TYPE = "ledger.restore_confirmed"
    witness: str
    witnessed_size: int
    size: int


@declare
class Anchor(Declared):
    """A row that confers authority was written (or deleted: `gone`): a keyed commitment to
    its content, checked where the row is used."""

    TYPE = "anchor"
    table: str
    row: str
    commit: str
    gone: bool | Absent = OMIT


@declare
class AnchorAdopted(Declared):
    """The rows made before anchoring existed were anchored once, on upgrade (counts per
    table)."""

    TYPE = "anchor.adopted"
    rows: dict[str, int]


# --- records and matching ----------------------------------------------------------------------


@declare
class MasterImportProposed(Declared):
    """An import of the master file was proposed (a second administrator confirms it)."""

    TYPE = "master.import_proposed"
    change_id: str
    master_sha256: str


@declare
class MasterImported(Declared):
    """The master file changed: the hashes of its tables and the counts added and changed."""

    TYPE = "master.imported"
    kind: str
    people_sha256: str
    addresses_sha256: str
    master_sha256: str
    people_added: int
    people_changed: int
    addresses_added: int
    addresses_changed: int
    proposed_by: str | Absent = OMIT
    change_id: str | Absent = OMIT


@declare
class ModelTrained(Declared):
    """The matching model was trained on the master file."""

    TYPE = "model.trained"
    model_sha256: str
    master_sha256: str


# --- rules and registries ----------------------------------------------------------------------


@declare
class RulesetProposed(Declared):
    """A rule set was proposed (in force once a second rule steward approves it)."""

    TYPE = "ruleset.proposed"
    ruleset_sha256: str


@declare
class RulesetApproved(Declared):
    """A second rule steward put a proposed rule set in force."""

    TYPE = "ruleset.approved"
    ruleset_sha256: str
    proposed_by: str


@declare
class RegistryAgency(RegistryChange):
    """An agency's registry row was added or updated (its safeguards status, open findings)."""

    TYPE = "registry.agency"
    agency: str
    safeguards_current: bool
    open_findings: int
    change: str


@declare
class RegistryOfficial(RegistryChange):
    """An official's registry row (agency, title, role, validity) was added or updated."""

    TYPE = "registry.official"
    official: str
    agency: str
    title: str
    role: str
    valid_from: Any
    valid_to: Any


@declare
class RegistryAgreement(RegistryChange):
    """An agreement (a provision's terms with an agency, by its document's hash) was
    recorded."""

    TYPE = "registry.agreement"
    agreement: str
    provision: str
    sha256: str


@declare
class RegistryProposed(Declared):
    """A change to a registry was proposed (a second administrator confirms it)."""

    TYPE = "registry.proposed"
    kind: str
    change_id: str
