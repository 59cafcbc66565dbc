"""Every type of event custodes writes to its ledger, declared: the type string, what it means
(the docstring, which docs/ledger.md's "Event types" section is generated from), and the keys of
its body as typed fields. `log.append` takes only events built from these (see
`events.declare`); the readers parse a body back into its type with `parse`.

A field left `OMIT` is absent from the body (some events of a type carry the key, others do
not); a field whose value is `None` is written as `null`. Types whose data carries variable
keys hold them in one `dict` field (the body nests them under that key, as it always has).

    python -m custodes.ledger.event_types --markdown   # the generated section
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from custodes.ledger.events import OMIT, REGISTRY, Declared, Omitted, body_key, declare

Absent = Omitted  # the annotation of a field that may be left out of the body


# --- access: users, grants, sessions, policy ----------------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class Access(Declared):
    """One row of the access log (every call through the door, allowed or refused), so a
    deleted row is detected."""

    TYPE = "access"
    log_id: int
    action: str
    allowed: bool
    reason: str | None


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserCreated(Declared):
    """A user was created (the bootstrap administrator, or by an administrator: roles pending
    a second administrator's confirmation)."""

    TYPE = "user.created"
    user: str
    roles: list[str]
    bootstrap: bool
    expires: str | Absent | None = OMIT
    # the roles not yet in force (a list since dual control)
    pending_confirmation: list[str] | bool | Absent = OMIT
    change: str | Absent | None = OMIT
    enrolment_halves: int | Absent | None = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserEnrolmentIssued(Declared):
    """A new enrolment code was issued to a user, in two halves (a reset)."""

    TYPE = "user.enrolment_issued"
    user: str
    change: str | None
    enrolment_halves: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserEnrolled(Declared):
    """A user enrolled with their code (set a password, and a second factor if required)."""

    TYPE = "user.enrolled"
    user: str
    second_factor: bool


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserGranted(Declared):
    """A role was granted to a user (in force, or pending a second administrator)."""

    TYPE = "user.granted"
    user: str
    role: str
    expires: str | None
    pending_confirmation: bool
    change: str | None  # the pending change's id (None: in force at once)


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserConfirmed(Declared):
    """A second administrator confirmed a pending change about a user (roles, a key, a reset)."""

    TYPE = "user.confirmed"
    user: str
    change: str
    proposed_by: str
    roles: list[str] = field(default_factory=list)
    keys: int = 0
    enrolment_second_half: bool | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserSuspended(Declared):
    """A user was suspended: their sessions, keys, enrolment codes and pending grants ended in
    the same transaction."""

    TYPE = "user.suspended"
    user: str
    sessions_ended: int
    issued_keys_ended: int
    enrolment_codes_ended: int
    pending_grants_withdrawn: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserReinstateRequested(Declared):
    """An administrator asked to reinstate a suspended user (a second one must confirm)."""

    TYPE = "user.reinstate_requested"
    user: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserReinstated(Declared):
    """A second administrator reinstated a suspended user."""

    TYPE = "user.reinstated"
    user: str
    requested_by: str | None


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserLocked(Declared):
    """A user's account was locked after repeated failed sign-ins."""

    TYPE = "user.locked"
    user: str
    failures: int
    seconds: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class UserKeyIssued(Declared):
    """An API key was issued to a user (pending a second administrator's confirmation)."""

    TYPE = "user.key_issued"
    user: str
    days: int
    change: str | None


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyProposed(Declared):
    """An administrator proposed a policy value (in force once a second one confirms)."""

    TYPE = "policy.proposed"
    key: str
    value: str
    change: str | None


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfirmed(Declared):
    """A second administrator confirmed a proposed policy value: it is in force."""

    TYPE = "policy.confirmed"
    key: str
    value: str
    proposed_by: str | None
    change: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordFlaggedSensitive(Declared):
    """A master-file record was flagged sensitive (its inspections stand out in the audit)."""

    TYPE = "record.flagged_sensitive"


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordInspected(Declared):
    """A user inspected a master-file record (or a table of them), for a purpose given by its
    hash."""

    TYPE = "record.inspected"
    purpose_sha256: str
    refusal: str | None
    what: str | Absent = OMIT
    reference: str | Absent | None = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordInspectionRefused(Declared):
    """An inspection of a master-file record was refused (no open request names it, …)."""

    TYPE = "record.inspection_refused"
    purpose_sha256: str
    refusal: str | None
    what: str | Absent = OMIT
    reference: str | Absent | None = OMIT


# --- ledger: files, witnesses, anchors ---------------------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class FileWritten(Declared):
    """custodes wrote a file a user asked for (an export, bodies, a receipt, a synthetic
    request): what, how many rows, its hash."""

    TYPE = "file.written"
    what: str
    rows: int
    sha256: str
    event: int | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class FileStored(Declared):
    """custodes stored a file it will read back (role, path in the workspace, hash): checked
    against this event whenever it is read."""

    TYPE = "file.stored"
    role: str
    path: str
    sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class FileRefused(Declared):
    """A stored file did not match its `file.stored` event when read back: it was not used."""

    TYPE = "file.refused"
    role: str
    path: str
    why: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerWitnessConfigured(Declared):
    """A witness (its verifier key and URL) was configured to cosign the checkpoints."""

    TYPE = "ledger.witness_configured"
    witness: str
    url: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRestoreConfirmed(Declared):
    """A restored store was confirmed against a witness's latest cosigned checkpoint."""

    TYPE = "ledger.restore_confirmed"
    witness: str
    witnessed_size: int
    size: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor(Declared):
    """A row that confers authority was written (or deleted: `gone`): a keyed commitment to
    its content, checked where the row is used."""

    TYPE = "anchor"
    table: str
    row: str
    commit: str
    gone: bool | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorAdopted(Declared):
    """The rows made before anchoring existed were anchored once, on upgrade (counts per
    table)."""

    TYPE = "anchor.adopted"
    rows: dict[str, int]


# --- records and matching ----------------------------------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class MasterImportProposed(Declared):
    """An import of the master file was proposed (a second administrator confirms it)."""

    TYPE = "master.import_proposed"
    change_id: str
    master_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
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
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelTrained(Declared):
    """The matching model was trained on the master file."""

    TYPE = "model.trained"
    model_sha256: str
    master_sha256: str


# --- rules and registries ----------------------------------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RulesetProposed(Declared):
    """A rule set was proposed (in force once a second rule steward approves it)."""

    TYPE = "ruleset.proposed"
    ruleset_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RulesetApproved(Declared):
    """A second rule steward put a proposed rule set in force."""

    TYPE = "ruleset.approved"
    ruleset_sha256: str
    proposed_by: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryAgency(Declared):
    """An agency's registry row was added or updated (its safeguards status, open findings)."""

    TYPE = "registry.agency"
    agency: str
    safeguards_current: bool
    open_findings: int
    change: str
    direct: bool | Absent = OMIT
    proposed_by: str | Absent = OMIT
    change_id: str | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryOfficial(Declared):
    """An official's registry row (agency, title, role, validity) was added or updated."""

    TYPE = "registry.official"
    official: str
    agency: str
    title: str
    role: str
    valid_from: Any
    valid_to: Any
    direct: bool | Absent = OMIT
    proposed_by: str | Absent = OMIT
    change_id: str | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryAgreement(Declared):
    """An agreement (a provision's terms with an agency, by its document's hash) was
    recorded."""

    TYPE = "registry.agreement"
    agreement: str
    provision: str
    sha256: str
    direct: bool | Absent = OMIT
    proposed_by: str | Absent = OMIT
    change_id: str | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryProposed(Declared):
    """A change to a registry was proposed (a second administrator confirms it)."""

    TYPE = "registry.proposed"
    kind: str
    change_id: str


# --- requests ---------------------------------------------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived(Declared):
    """A request was received: its provision, agency, files' hashes, item count, and what the
    accounting of disclosures needs (periods, fields, the reason by its hash)."""

    TYPE = "request.received"
    provision: str
    agency: str
    envelope_sha256: str
    items_sha256: str
    content_sha256: str
    items: int
    dob_warnings: int
    taxable_periods: list[int]
    fields_requested: list[str]
    reason_sha256: str | None
    received_on_paper: bool
    paper_sha256: str | None


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestTransition(Declared):
    """A request moved from one state of its lifecycle to another."""

    TYPE = "request.transition"
    from_: str | None = body_key("from")
    to: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestPaperConfirmed(Declared):
    """A second staff member confirmed a request keyed in from paper against its scan."""

    TYPE = "request.paper_confirmed"
    paper_sha256: str | None
    keyed_by: str | None


# --- decisions: processing, review, release, recall --------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestChecked(Declared):
    """The request-level checks ran (under a rule set, by its hash): which failed, and the
    items failing each item-level check."""

    TYPE = "request.checked"
    ruleset_sha256: str
    refused: bool
    failing_request_checks: list[str]
    request_checks: list[dict[str, Any]]
    failing_items_by_check: dict[str, int]


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestMatched(Declared):
    """The request's items were matched against the master file (counts by result)."""

    TYPE = "request.matched"
    model_sha256: str
    identified: int
    review: int
    not_identified: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestDecided(Declared):
    """Every item got an outcome: the outcomes file's hash, counts per outcome, and each check
    that ran with its counts."""

    TYPE = "request.decided"
    outcomes_sha256: str
    counts: dict[str, int]
    checks: list[dict[str, Any]]


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewResolved(Declared):
    """An officer resolved an item in review (the item by its salted commitment, the reason by
    its hash)."""

    TYPE = "review.resolved"
    item_sha256: str
    decision: str
    reason_sha256: str
    group: str | Absent = OMIT


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReleasePrepared(Declared):
    """An officer prepared a release (its content's hash, how many disclosures, which
    fields)."""

    TYPE = "release.prepared"
    content_sha256: str
    disclosures: int
    fields: list[str]


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseApproved(Declared):
    """A second officer approved a prepared release."""

    TYPE = "release.approved"
    prepared_by: str
    content_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseRefused(Declared):
    """A release was refused because what it would release no longer matches what was
    approved."""

    TYPE = "release.refused"
    why: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class Disclosure(Declared):
    """One person's information was disclosed: the record, the item by its salted commitment,
    the fields, the provision, the recipients by hash, the rule set and model."""

    TYPE = "disclosure"
    item_sha256: str
    fields: list[str]
    provision: str
    agency: str | None
    recipients_sha256: str
    ruleset_sha256: str
    model_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseDone(Declared):
    """A release was completed: the response's hash, how many disclosed, the recipients."""

    TYPE = "release.done"
    response_sha256: str
    content_sha256: str
    disclosed: int
    recipients: list[str]
    recipients_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseDelivered(Declared):
    """The released response was delivered (downloaded) to the requester."""

    TYPE = "release.delivered"
    response_sha256: str
    rows: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RecallIssued(Declared):
    """A recall of disclosures was issued (its notice by hash)."""

    TYPE = "recall.issued"
    recall_id: str
    notice_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosureRecalled(Declared):
    """One disclosure was recalled (the item by its salted commitment)."""

    TYPE = "disclosure.recalled"
    item_sha256: str
    recall_id: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RecallCertified(Declared):
    """The recipients certified that a recall's information was returned or destroyed."""

    TYPE = "recall.certified"
    recall_id: str
    certified_on: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class RecallAcknowledged(Declared):
    """An agency acknowledged a recall notice."""

    TYPE = "recall.acknowledged"
    recall_id: str
    agency: str


# --- reports and incidents ---------------------------------------------------------------------


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class ReportGenerated(Declared):
    """A report was generated (its kind, parameters, the ledger size it covers, format and
    hash)."""

    TYPE = "report.generated"
    report: str
    parameters: dict[str, Any]
    ledger_size: int | None
    format: str | None
    sha256: str | None
    rows: int


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentOpened(Declared):
    """An incident was opened (kind, when its report is due, its summary by hash)."""

    TYPE = "incident.opened"
    incident_id: str
    kind: str
    due: str
    summary_sha256: str


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentReported(Declared):
    """An incident was reported to the oversight body (late or not)."""

    TYPE = "incident.reported"
    incident_id: str
    late: bool


@declare
@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentClosed(Declared):
    """An incident was closed with a finding."""

    TYPE = "incident.closed"
    incident_id: str
    finding: str


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Other:
    """A body whose type this version does not declare (written by an older or newer one), or
    no body at all: read as it is, never written."""

    type: str
    body: dict[str, Any]


T = TypeVar("T", bound=Declared)


def parse(body: Any) -> Declared | Other:
    """A body read back, as its declared type. A key an older version did not write reads as
    the field's default (`OMIT`, `[]`, `0`) or `None`, and a key this version does not know is
    left out of the typed view (still in the body): what was written by another version never
    crashes a reader. A type not declared here reads as `Other`."""
    if not isinstance(body, dict):
        return Other("", {})
    name = body.get("type")
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        return Other(str(body.get("type")), body)
    return _build(cls, body)


def parse_as(cls: type[T], body: Any) -> T | None:
    """A body as `cls`, or None when it is of another type."""
    got = parse(body)
    return got if isinstance(got, cls) else None


def _build(cls: type[T], body: dict[str, Any]) -> T:
    kw = {a: body[k] for a, k in cls.KEYS if k in body}
    if len(kw) < len(cls.KEYS):  # an older body: a required key it lacks reads None
        for f, (a, _) in zip(fields(cls), cls.KEYS, strict=True):
            if a not in kw and f.default is MISSING and f.default_factory is MISSING:
                kw[a] = None
    return cls(**kw)


# --- the documentation ------------------------------------------------------------------------


def declared() -> list[type[Declared]]:
    """custodes's own declared types, by type string (a test may declare its own: left out)."""
    return sorted(
        (c for c in REGISTRY.values() if c.__module__.startswith("custodes.")),
        key=lambda c: c.TYPE,
    )


def _annotation(cls: type[Declared], name: str) -> str:
    text = str(cls.__annotations__.get(name, "")).replace("Absent", "").replace("| ", "|")
    parts = [p.strip() for p in text.split("|") if p.strip()]
    return " \\| ".join(parts)


def markdown() -> str:
    """The "Event types" section of docs/ledger.md (between its markers), from the models."""
    lines = [
        "| type | meaning | keys (beyond v, type, time, actor, request_id, record_id) |",
        "|---|---|---|",
    ]
    for cls in declared():
        doc = " ".join((cls.__doc__ or "").split())
        keys = []
        for f, (attr, k) in zip(fields(cls), cls.KEYS, strict=True):
            optional = f.default is OMIT
            t = _annotation(cls, attr)
            keys.append(f"`{k}`{'?' if optional else ''}: {t}")
        lines.append(f"| `{cls.TYPE}` | {doc} | {', '.join(keys) or '—'} |")
    lines.append("")
    lines.append("`?`: the key is absent from the bodies of this type that do not need it.")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[1:] != ["--markdown"]:
        print("usage: python -m custodes.ledger.event_types --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


__all__ = [
    "OMIT",
    "REGISTRY",
    "Declared",
    "Other",
    "declared",
    "markdown",
    "parse",
    "parse_as",
]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv))
