"""Roles, what each may do, and which roles one person may never hold together.

These tables are the rule: the door (`access.door`) consults `ACTIONS` for every call, and
`users` consults `EXCLUSIVE` and `PRIVILEGED` for every grant. Nothing else decides.
"""

from __future__ import annotations

ROLES = ("requester", "officer", "approver", "rule_steward", "auditor", "administrator")

# Roles that act on confidential data or on access itself: granting one takes effect only
# when a second administrator confirms it, and their holders set their own password.
PRIVILEGED = ("officer", "approver", "rule_steward", "auditor", "administrator")

# Separation of duties: roles one person may not hold together, and why.
EXCLUSIVE: dict[frozenset[str], str] = {
    frozenset({"administrator", "approver"}): "an administrator cannot approve releases",
    **{
        frozenset({"requester", role}): "a requesting agency's account is never staff"
        for role in PRIVILEGED
    },
}

# The resources a service's arguments name, and who reaches them: the door checks them once
# for every service that takes such an argument, so no service can forget. A request is
# reached by staff and, among agency accounts, only by its own agency's (another agency's is
# "unknown", 404: its existence does not leak). A recall is reached by staff and by the
# agencies whose requests it names (another agency's is "unknown", 404). A job is its
# starter's, and every job is open to the roles below.
RESOURCES = {"request_id": "request", "job_id": "job", "recall_id": "recall"}
SEES_EVERY_JOB = ("auditor",)

# Which roles may perform each action a service offers. The table is the rule.
ACTIONS: dict[str, tuple[str, ...]] = {
    "status": ("officer", "approver", "auditor", "administrator", "rule_steward"),
    "records.import": ("administrator",),
    "records.generate": ("administrator",),
    "records.summary": ("officer", "approver", "auditor", "administrator"),
    "records.show": ("officer", "auditor"),
    "records.flag": ("administrator",),
    "requests.generate": ("administrator",),
    "requests.list": ("officer", "approver", "auditor", "requester"),
    "requests.read": ("officer", "approver", "auditor", "requester"),
    "submit": ("requester", "officer"),
    "withdraw": ("requester", "officer"),
    "requests.confirm_paper": ("officer", "approver"),
    "rules.read": ("officer", "approver", "auditor", "rule_steward", "requester"),
    "rules.check": ("officer", "rule_steward", "requester"),
    "rules.change": ("rule_steward",),
    "registry.read": ("officer", "approver", "auditor", "administrator", "rule_steward"),
    "registry.change": ("administrator",),
    "match.train": ("officer",),
    "match.link": ("officer",),
    "match.evaluate": ("officer", "auditor"),
    "process": ("officer",),
    "explain": ("officer", "approver", "auditor"),
    "outcomes": ("officer", "approver", "auditor"),
    "review.read": ("officer", "approver"),
    "review.resolve": ("officer",),
    "prepare": ("officer",),
    "approve": ("approver",),
    "release": ("officer",),
    "response.download": ("requester", "officer"),
    "recall": ("officer",),
    "recalls.read": ("officer", "auditor", "requester"),
    "recall.acknowledge": ("requester",),
    "recall.certify": ("officer",),
    "ledger.read": ("auditor", "administrator", "officer"),
    "ledger.sign": ("administrator",),
    "ledger.export_bodies": ("auditor",),
    "users.read": ("administrator", "auditor"),
    # Access management, one action per power, so that a role can be given one alone
    # (e.g. suspend only) and the access log says which power was used.
    "users.add": ("administrator",),
    "users.grant": ("administrator",),
    "users.confirm": ("administrator",),
    "users.suspend": ("administrator",),
    "users.reinstate": ("administrator",),
    "users.key": ("administrator",),
    "users.reset": ("administrator",),
    "policy.change": ("administrator",),
    "audit": ("auditor",),
    "reports.read": ("auditor", "officer"),
    "reports.person": ("auditor", "officer"),
    "incident.open": ("auditor", "officer", "administrator"),
    "incident.close": ("auditor",),
    "incident.read": ("auditor", "officer", "administrator"),
    "jobs.read": ("officer", "approver", "auditor", "administrator", "rule_steward", "requester"),
    "jobs.cancel": ("officer", "approver", "administrator", "rule_steward", "requester"),
    "session": ROLES,
}
