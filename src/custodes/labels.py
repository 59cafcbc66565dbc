"""Plain-language labels for the codes custodes uses: the one table every face and the door
use to name a state, a role, an action, a provision, a review reason or an error to a person.

The codes stay the contract (JSON, the API, the ledger, `--json`); a person reads the label.
A code with no entry reads as itself with underscores as spaces, so a new code is never shown
raw with `_` or `+`.
"""

from __future__ import annotations

import re

LABELS: dict[str, str] = {
    # request states
    "received": "received",
    "checked": "checked",
    "matched": "matched",
    "decided": "decided",
    "in_review": "in review",
    "prepared": "prepared, waiting for approval",
    "approved": "approved",
    "released": "released",
    "refused": "refused",
    "withdrawn": "withdrawn",
    "recalled": "recalled",
    # roles (staff, and the officials an envelope names)
    "requester": "requesting agency",
    "officer": "disclosure officer",
    "approver": "approver",
    "rule_steward": "rule steward",
    "auditor": "auditor",
    "administrator": "security administrator",
    "head_of_agency": "head of agency",
    "inspector_general": "inspector general",
    # actions the door decides (what a refusal says the caller may not do)
    "status": "see the workspace's status",
    "records.import": "import a master file",
    "records.generate": "generate a synthetic master file",
    "records.summary": "see the master file's summary",
    "records.show": "inspect a record",
    "records.flag": "flag a record as sensitive",
    "requests.generate": "generate a synthetic request",
    "requests.list": "list requests",
    "requests.read": "see a request",
    "submit": "submit a request",
    "withdraw": "withdraw a request",
    "requests.confirm_paper": "confirm a request keyed in from paper",
    "rules.read": "read the rule sets",
    "rules.check": "check a request against the rules",
    "rules.change": "propose or approve a rule set",
    "registry.read": "read the registries",
    "registry.change": "change the registries",
    "match.train": "train the matching model",
    "match.link": "match a request",
    "match.evaluate": "evaluate the matching",
    "process": "process a request",
    "explain": "see why an item was decided",
    "outcomes": "see a request's outcomes",
    "review.read": "see the review queue",
    "review.resolve": "resolve review items",
    "prepare": "prepare a release",
    "approve": "approve a release",
    "release": "release a response",
    "response.download": "download a response",
    "recall": "recall disclosures",
    "recalls.read": "see recalls",
    "recall.acknowledge": "acknowledge a recall notice",
    "recall.certify": "record a certification of destruction",
    "ledger.read": "read the ledger",
    "ledger.sign": "sign a ledger checkpoint",
    "ledger.export_bodies": "export the ledger's event bodies",
    "users.read": "see users and access",
    "users.add": "add users",
    "users.grant": "grant roles",
    "users.confirm": "confirm access changes",
    "users.suspend": "suspend users",
    "users.reinstate": "reinstate users",
    "users.key": "issue API keys",
    "users.reset": "reset credentials",
    "policy.change": "change the access policy",
    "audit": "run the inspection audit",
    "reports.read": "read the reports",
    "reports.person": "read a person's accounting",
    "incident.open": "open or report an incident",
    "incident.close": "close an incident",
    "incident.read": "see incidents",
    "jobs.read": "see jobs",
    "jobs.cancel": "cancel a job",
    "session": "use a session",
    # why an item is in review or was not identified (the sentences: matching.reasons)
    "no_candidate": "no similar record",
    "low_probability": "match probability too low",
    "near_tie": "another record scores almost as well",
    "first_name_differs": "first name differs",
    "first_name_uncorroborated": "first name close but unconfirmed",
    "first_name_missing": "no first name",
    "dob_differs": "date of birth differs",
    "dob_missing": "no date of birth",
    "tin_missing": "no TIN",
    "another_person": "another person",
    "insufficient_identifiers": "too few identifiers",
    "suffix_conflict": "suffixes differ (Jr/Sr)",
    "tin_conflict": "TIN is another record's",
    "tin_name_conflict": "TIN used by someone else",
    "namesake_risk": "a namesake is possible",
    "household": "same surname at the address",
    "generational": "same first name at the address",
    "twin": "same birthday at the address",
    "official-caseload": "the official's caseload is implausible",
}

_PROVISION = re.compile(r"irc-6103-([a-z0-9]+)(?:-([a-z0-9]+))?")


def label(code: str | None) -> str:
    """What a person reads for `code`: its entry; a §6103 provision as its citation
    ("§6103(i)(2)"); codes joined by `+` as a list; otherwise the code with spaces."""
    if code is None:
        return ""
    if code in LABELS:
        return LABELS[code]
    if "+" in code:
        return "; ".join(label(c) for c in code.split("+"))
    found = _PROVISION.fullmatch(code)
    if found:
        return "§6103" + "".join(f"({p})" for p in found.groups() if p)
    return code.replace("_", " ")
