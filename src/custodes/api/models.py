"""The API's request and response schemas (OpenAPI 3.1), each with an example.

Results the core returns as documents with many optional parts (an item's explanation, a
request's history) are typed loosely (`extra="allow"`) so the schema states what is always
there without restating the core.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from custodes.http.bodies import NewOfficial as NewOfficial  # the console's form too

# The examples' values that recur across the schemas, named once.
_AGENCY = "U.S. Immigration and Customs Enforcement"
_REQUEST_ID = "req-1a2b3c4d5e6f"
_RECALL_ID = "rcl-1a2b3c4d5e6f"


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(extra="allow", json_schema_extra={"examples": [example]})


def _shown(**example: Any) -> ConfigDict:
    """A body's one example in the schema (fields not declared are ignored)."""
    return ConfigDict(json_schema_extra={"examples": [example]})


class SignIn(BaseModel):
    model_config = _shown(name="olga", password="(her own password)", totp="123456")
    name: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=16, description="One-time code.")


class Session(BaseModel):
    model_config = _example(token="3q2-…", user="olga", expires_in_hours=12)
    token: str
    user: str
    expires_in_hours: int


class WhoAmI(BaseModel):
    model_config = _example(user="olga", roles=["officer"], kind="session", agency=None)
    user: str
    roles: list[str]


# The answer to a submission: `requests.intake.Submission` (the core's dataclass) as the API
# states it. Kept as the API's own model rather than serving the dataclass: the face may not
# import `requests` (tests/test_architecture.py), the example belongs to the API's schema
# rather than the core, and the dataclass's defaults would make `warnings` and
# `warnings_total` optional in the schema while every answer carries them.
class Submission(BaseModel):
    model_config = _example(
        request_id=_REQUEST_ID,
        provision="irc-6103-i-2",
        agency=_AGENCY,
        items=1000,
        state="received",
        content_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        duplicate=False,
        warnings=[],
        warnings_total=0,
    )
    request_id: str
    provision: str
    agency: str
    items: int
    state: str
    content_sha256: str
    duplicate: bool
    warnings: list[str]
    warnings_total: int


class InlineRequest(BaseModel):
    """A request sent as JSON: the envelope and the items inline."""

    model_config = _shown(
        envelope={"provision": "irc-6103-i-2", "agency": "…", "officials": []},
        items=[{"item_id": "item-1", "first_name": "…", "last_name": "…"}],
    )
    envelope: dict[str, Any]
    items: list[dict[str, str | None]] = Field(min_length=1, max_length=1_000_000)


class RequestSummary(BaseModel):
    model_config = _example(
        id=_REQUEST_ID, provision="irc-6103-i-2", agency="…", items=1000, state="decided"
    )
    id: str
    state: str


class Reason(BaseModel):
    model_config = _shown(reason="sent in error")
    reason: str = Field(min_length=1, max_length=2000)


class Moved(BaseModel):
    model_config = _example(request_id=_REQUEST_ID, state="withdrawn")
    request_id: str
    state: str


_JOB_EXAMPLE: JsonDict = {
    "id": "job-0123456789abcdef",
    "kind": "process",
    "request_id": _REQUEST_ID,
    "actor": "olga",
    "state": "running",
    "progress": {"stage": "score", "done": 1, "total": 4},
    "result": None,
    "problem": None,
    "created_at": "2026-11-30T12:00:00Z",
    "started_at": "2026-11-30T12:00:01Z",
    "finished_at": None,
}


class Job(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [_JOB_EXAMPLE]},
    )
    id: str
    kind: Literal["process", "train", "release", "submit"]
    request_id: str | None
    actor: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class OutcomesPage(BaseModel):
    model_config = _example(
        request_id=_REQUEST_ID,
        total=1000,
        offset=0,
        limit=100,
        items=[{"item_id": "item-1", "outcome": "WITHHOLD", "checks": ["address-on-record"]}],
    )
    request_id: str
    total: int
    offset: int
    limit: int
    items: list[dict[str, Any]]


class Document(BaseModel):
    """A result document of the core (an explanation, a next step, a review item...)."""

    model_config = _example(request_id=_REQUEST_ID)


class Resolution(BaseModel):
    model_config = _shown(
        decision="withhold", reason="identity not established", group="tin_conflict"
    )
    decision: Literal["withhold", "disclose"]
    reason: str = Field(min_length=1, max_length=2000)
    items: list[str] | None = Field(default=None, max_length=100_000)
    records: dict[str, str] | None = Field(
        default=None, description="With disclose: item id -> the record you identified."
    )
    group: str | None = Field(default=None, max_length=500)


class Resolved(BaseModel):
    model_config = _example(request_id=_REQUEST_ID, resolved=12, decision="WITHHOLD")
    request_id: str
    resolved: int
    decision: str


class Health(BaseModel):
    model_config = _example(status="ok", version="0.1.0")
    status: str
    version: str


class PersonAccounting(BaseModel):
    """A person's accounting is an inspection: the record id and purpose travel in the body,
    never in a URL."""

    model_config = _shown(
        record_id="rec-1a2b3c4d5e6f",
        purpose="accounting requested by the taxpayer",
        request="PA-2026-0001",
        privacy_act=True,
    )
    record_id: str = Field(min_length=1, max_length=64)
    purpose: str = Field(min_length=1, max_length=2000)
    request: str = Field(min_length=1, max_length=64)
    privacy_act: bool = False


class IncidentOpening(BaseModel):
    model_config = _shown(
        kind="disclosure",
        summary="addresses sent for items the officer had withheld",
        request_id=_REQUEST_ID,
    )
    kind: Literal["disclosure", "inspection"]
    summary: str = Field(min_length=1, max_length=5000)
    request_id: str | None = Field(default=None, max_length=64)


class IncidentClosing(BaseModel):
    model_config = _shown(finding="improper")
    finding: Literal["improper", "unfounded"]


class Incident(BaseModel):
    model_config = _example(incident_id="inc-1a2b3c4d5e6f", status="open")
    incident_id: str


class Inspection(BaseModel):
    """Inspecting a record: the id and purpose in the body (never a URL), the open request it
    serves."""

    model_config = _shown(
        record_id="rec-1a2b3c4d5e6f",
        purpose="compare the candidate's address with the list",
        request_id=_REQUEST_ID,
    )
    record_id: str = Field(min_length=1, max_length=64)
    purpose: str = Field(min_length=1, max_length=2000)
    request_id: str | None = Field(default=None, max_length=64)


class Recall(BaseModel):
    model_config = _shown(reason="court ruling of 2026-11-20", items=["item-0000013"])
    reason: str = Field(min_length=1, max_length=2000)
    items: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="Recall only these items of the request (item ids); every disclosure "
        "when left out.",
    )


class RecallAcknowledged(BaseModel):
    model_config = _example(agency="U.S. Department of Labor", at="2026-12-06T10:00:00+00:00")
    agency: str
    at: str


class RecallSummary(BaseModel):
    model_config = _example(
        recall_id=_RECALL_ID,
        at="2026-12-06T09:30:00+00:00",
        reason="court ruling of 2026-11-20",
        items=12,
        requests=[_REQUEST_ID],
        agencies=[_AGENCY],
        status="open",
        return_by="2027-01-05",
        certified_by=None,
        certified_on=None,
        notice=True,
        acknowledged=[],
    )
    recall_id: str
    at: str
    reason: str
    items: int
    requests: list[str]
    agencies: list[str]
    status: Literal["open", "overdue", "certified"]
    return_by: date
    certified_by: str | None
    certified_on: date | None
    notice: bool
    acknowledged: list[RecallAcknowledged]


class Acknowledgement(BaseModel):
    model_config = _example(
        recall_id=_RECALL_ID,
        agency=_AGENCY,
        acknowledged_at="2026-12-06T10:00:00+00:00",
        already=False,
    )
    recall_id: str
    agency: str
    acknowledged_at: str
    already: bool


class Certification(BaseModel):
    model_config = _shown(certified_by="Records Officer", certified_on="2026-12-01")
    certified_by: str = Field(min_length=1, max_length=200)
    certified_on: date


class NewUser(BaseModel):
    model_config = _shown(
        name="olga", role="officer", basis="detail order 7", last_day="2027-03-31"
    )
    name: str = Field(min_length=1, max_length=64)
    role: Literal["officer", "approver", "auditor", "rule_steward", "administrator", "requester"]
    basis: str = Field(min_length=1, max_length=500)
    last_day: date | None = None
    agency: str | None = Field(
        default=None, max_length=200, description="For a requester account: its agency."
    )


class NewGrant(BaseModel):
    model_config = _shown(role="auditor", basis="audit plan 2027", last_day="2027-06-30")
    role: Literal["officer", "approver", "auditor", "rule_steward", "administrator"]
    basis: str = Field(min_length=1, max_length=500)
    last_day: date | None = None


class NewAgency(BaseModel):
    model_config = _shown(name="Department of Labor", safeguards_current=True, open_findings=0)
    name: str = Field(min_length=1, max_length=200)
    safeguards_current: bool
    open_findings: int = Field(ge=0, le=100_000)


class Verification(BaseModel):
    model_config = _example(
        ok=True,
        size=1234,
        root="base64…",
        checked=["checkpoint signed by custodes.example/ledger (size 1234)"],
        problems=[],
    )
    ok: bool
    size: int
    root: str | None
    checked: list[str]
    problems: list[str]


class NewKey(BaseModel):
    model_config = _shown(days=90)
    days: int = Field(default=90, ge=1, le=366)


class PolicyChange(BaseModel):
    model_config = _shown(value="officer,approver")
    value: str = Field(max_length=500)
