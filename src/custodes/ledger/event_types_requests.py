"""The declared ledger event types of requests, decisions (processing, review, release, recall),
reports and incidents (see `event_types`, which re-exports them)."""

from __future__ import annotations

from typing import Any

from custodes.ledger.events import OMIT, Declared, Omitted, body_key, declare, field_group

Absent = Omitted  # the annotation of a field that may be left out of the body


# --- field groups several types share (each type declares only what is its own) ----------------


@field_group
class AboutRecall(Declared):
    """The recall an event is about."""

    recall_id: str


@field_group
class AboutIncident(Declared):
    """The incident an event is about."""

    incident_id: str


# --- requests ---------------------------------------------------------------------------------


@declare
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
    # The request's first history row: its reason by keyed commitment (always null), and its
    # time is the event's; absent from bodies written before the history was compared so.
    reason_hmac: str | Absent | None = OMIT


@declare
class RequestTransition(Declared):
    """A request moved from one state of its lifecycle to another."""

    TYPE = "request.transition"
    from_: str | None = body_key("from")
    to: str
    # Its history row's reason (free text: a withdrawal's justification) by its keyed
    # commitment (`anchors.value_commit`), null for none; the row's time is the event's.
    # Absent from bodies written before the history was compared so.
    reason_hmac: str | Absent | None = OMIT


@declare
class RequestPaperConfirmed(Declared):
    """A second staff member confirmed a request keyed in from paper against its scan."""

    TYPE = "request.paper_confirmed"
    paper_sha256: str | None
    keyed_by: str | None


# --- decisions: processing, review, release, recall --------------------------------------------


@declare
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
class RequestMatched(Declared):
    """The request's items were matched against the master file (counts by result)."""

    TYPE = "request.matched"
    model_sha256: str
    identified: int
    review: int
    not_identified: int


@declare
class RequestDecided(Declared):
    """Every item got an outcome: the outcomes file's hash, counts per outcome, and each check
    that ran with its counts."""

    TYPE = "request.decided"
    outcomes_sha256: str
    counts: dict[str, int]
    checks: list[dict[str, Any]]


@declare
class ReviewResolved(Declared):
    """An officer resolved an item in review (the item by its salted commitment, the reason by
    its hash)."""

    TYPE = "review.resolved"
    item_sha256: str
    decision: str
    reason_sha256: str
    group: str | Absent = OMIT


@declare
class ReleasePrepared(Declared):
    """An officer prepared a release (its content's hash, how many disclosures, which
    fields)."""

    TYPE = "release.prepared"
    content_sha256: str
    disclosures: int
    fields: list[str]


@declare
class ReleaseApproved(Declared):
    """A second officer approved a prepared release."""

    TYPE = "release.approved"
    prepared_by: str
    content_sha256: str


@declare
class ReleaseRefused(Declared):
    """A release was refused because what it would release no longer matches what was
    approved."""

    TYPE = "release.refused"
    why: str


@declare
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
class ReleaseDone(Declared):
    """A release was completed: the response's hash, how many disclosed, the recipients."""

    TYPE = "release.done"
    response_sha256: str
    content_sha256: str
    disclosed: int
    recipients: list[str]
    recipients_sha256: str


@declare
class ReleaseDelivered(Declared):
    """The released response was delivered (downloaded) to the requester."""

    TYPE = "release.delivered"
    response_sha256: str
    rows: int


@declare
class RecallIssued(AboutRecall):
    """A recall of disclosures was issued (its notice by hash)."""

    TYPE = "recall.issued"
    notice_sha256: str


@declare
class DisclosureRecalled(AboutRecall):
    """One disclosure was recalled (the item by its salted commitment)."""

    TYPE = "disclosure.recalled"
    item_sha256: str


@declare
class RecallCertified(AboutRecall):
    """The recipients certified that a recall's information was returned or destroyed."""

    TYPE = "recall.certified"
    certified_on: str
    # Who certified (free text naming a person, shown with the recall) by its keyed commitment
    # (`anchors.value_commit`); absent from bodies written before the certifier was compared.
    certified_by_hmac: str | Absent | None = OMIT


@declare
class RecallAcknowledged(AboutRecall):
    """An agency acknowledged a recall notice."""

    TYPE = "recall.acknowledged"
    agency: str


# --- reports and incidents ---------------------------------------------------------------------


@declare
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
class IncidentOpened(AboutIncident):
    """An incident was opened (kind, when its report is due, its summary by hash)."""

    TYPE = "incident.opened"
    kind: str
    due: str
    summary_sha256: str


@declare
class IncidentReported(AboutIncident):
    """An incident was reported to the oversight body (late or not)."""

    TYPE = "incident.reported"
    late: bool


@declare
class IncidentClosed(AboutIncident):
    """An incident was closed with a finding."""

    TYPE = "incident.closed"
    finding: str
