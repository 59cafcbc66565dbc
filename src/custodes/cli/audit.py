"""audit inspections."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, group, run
from custodes.services import audit as svc

audit_app = group("audit", "What auditors look for (inspection trail).")

FINDINGS = (
    "without_open_request",
    "by_submitter",
    "sensitive",
    "volume_spikes",
    "actions_by_suspended_users",
    "incidents_overdue",
)


@audit_app.command("inspections")
def audit_inspections(
    spike: Annotated[
        int,
        typer.Option(
            "--spike", min=1, help="Inspections by one user in one day that count as a spike."
        ),
    ] = 50,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every inspection allowed, with the ground it was allowed on; inspections not tied to a
    candidate of an open request; inspections by the person who submitted or keyed in the
    request they name; of sensitive records; volume spikes per user; any action by a suspended
    user (which must be none); and incidents whose 24-hour report is overdue."""

    def view(rep: dict[str, Any]) -> None:
        render.kv(
            "Inspection audit",
            {"inspections recorded": rep["inspections"], "allowed": len(rep["allowed"])}
            | {k: len(rep[k]) for k in FINDINGS},
        )
        for key in ("allowed", *FINDINGS):
            if rep[key]:
                render.rows(
                    key.replace("_", " "), rep[key], [(k, k) for k in rep[key][0]], limit=100
                )

    run(home, json_out, svc.inspections, spike=spike, view=view)
