"""The core's services: the only functions a face (cli, api, web) calls.

Every service that reads or changes a workspace is declared with `access.service(action)`:
it is called as ``service(ws, caller, ...)`` and runs only after the door checked the caller's
session and role and recorded the decision (see `custodes.access.door`). The few services that
need no caller create a workspace, sign in or enrol, or read public material (the reference
rule set, an exported ledger checked offline); they are listed in `OPEN`.

One module per group: workspace, records, requests, rules, matching, decisions, ledger, users,
audit, reports.
"""

# Services that take no caller, by design (see each one's docstring).
OPEN = (
    "custodes.services.workspace.init",
    "custodes.services.workspace.join",
    "custodes.services.workspace.login",
    "custodes.services.workspace.logout",
    "custodes.services.workspace.enrol",
    "custodes.services.workspace.open_workspace",
    "custodes.services.workspace.caller",
    "custodes.services.workspace.console_caller",
    "custodes.services.workspace.csrf_token",
    "custodes.services.workspace.system_use_notice",
    "custodes.services.rules.describe",
    "custodes.services.rules.provision",
    "custodes.services.rules.lint",
    "custodes.services.ledger.verify_path",
    "custodes.services.ledger.parse_key",
    "custodes.services.ledger.witness_keygen",
    "custodes.services.ledger.witness",
    "custodes.services.ledger.witness_server",
    "custodes.services.ledger.public_checkpoint",
    "custodes.services.ledger.public_tile",
    "custodes.services.ledger.public_receipt",
    "custodes.services.reports.verify",
)
