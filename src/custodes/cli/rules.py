"""rules list | show | check | lint | propose | approve | changes; agencies, officials and
agreements add | list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, group, guarded, iso_date, run, show
from custodes.services import rules as svc

rules_app = group("rules", "The law as data: provisions, checks with citations, evaluation.")
agencies_app = group("agencies", "Registry of requesting agencies and their safeguard status.")
officials_app = group("officials", "Registry of officials authorised to sign requests.")
agreements_app = group(
    "agreements",
    "Registered data-sharing agreements (overlays that can only add requirements).",
)

RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="A rule set folder (default: the reference §6103 rule set)."),
]


def _open(json_out: bool, fn: Any, *args: Any, view: Any, failed: Any = None) -> None:
    """Run a service that needs no workspace (public material)."""
    with guarded(json_out):
        result = fn(*args)
        show(result, json_out, view)
    if failed is not None and failed(result):
        raise typer.Exit(1)


@rules_app.command("list")
def rules_list(rules: RulesOpt = None, json_out: JsonOpt = False) -> None:
    """The provisions of the rule set, with its version and hash."""

    def view(rs: dict[str, Any]) -> None:
        render.rows(
            f"{rs['name']} {rs['version']} (sha256 {rs['sha256'][:12]}…)",
            rs["provisions"],
            [
                ("provision", "id"),
                ("citation", "citation"),
                ("title", "title"),
                ("may release", "releasable"),
            ],
        )
        render.say(rs["disclaimer"])

    _open(json_out, svc.describe, rules, view=view)


def _show_provision(info: dict[str, Any]) -> None:
    p = info["provision"]
    render.say(f"{p['citation']} — {p['title']}")
    render.kv(
        "Provision",
        {
            "source": p["source_url"],
            "may sign": p["signer_roles"],
            "may release": p["releasable"],
            "use limits": p["use_limits"],
            "retention": p["retention"],
            "approvals": p["approvals"],
        },
    )
    render.rows(
        "Requirements",
        info["checks"],
        [
            ("check", "id"),
            (
                "level",
                lambda c: (
                    c["level"] + (" (after matching)" if c["phase"] == "after_matching" else "")
                ),
            ),
            ("if it fails", "severity"),
            ("citation", "citation"),
            ("requirement", "sentence"),
        ],
    )
    render.say(p["note"])


@rules_app.command("show")
def rules_show(
    provision: Annotated[str, typer.Argument(help="Provision id, e.g. irc-6103-i-2.")],
    rules: RulesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One provision, readable: who may sign, every requirement with its citation."""

    _open(json_out, svc.provision, provision, rules, view=_show_provision)


def _show_evaluation(ev: Any) -> None:
    render.rows(
        "Request",
        [v.__dict__ for v in ev.request],
        [
            ("check", "check"),
            ("verdict", lambda v: "pass" if v["passed"] else v["severity"]),
            ("citation", "citation"),
            ("detail", "detail"),
        ],
    )
    render.rows(
        f"Items ({ev.items:,})",
        [v.__dict__ for v in ev.item],
        [
            ("check", "check"),
            (
                "failing items",
                lambda v: "pending (after matching)" if v["passed"] is None else v["failing"],
            ),
            ("if it fails", "severity"),
            ("citation", "citation"),
            ("examples", "examples"),
        ],
    )
    render.say(f"Rule set {ev.ruleset} sha256 {ev.ruleset_sha256}")
    render.say(
        "The request must be refused." if ev.refused else "The request may proceed to matching."
    )


@rules_app.command("check")
def rules_check(
    request_dir: Annotated[
        Path, typer.Argument(help="A request directory (envelope.json + items).")
    ],
    rules: RulesOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a request: intake's shape checks, request-level verdicts, then per check how
    many items fail, with example item ids (never personal data). Exit status 1 when the
    request must be refused."""

    run(
        home,
        json_out,
        svc.check,
        request_dir,
        rules,
        view=_show_evaluation,
        exit_status=lambda ev: int(ev.refused),
    )


@rules_app.command("lint")
def rules_lint(
    folder: Annotated[Path, typer.Argument(help="A rule set folder.")], json_out: JsonOpt = False
) -> None:
    """Validate a rule set: unknown checks, missing citations, SQL that does not compile for
    DuckDB or Spark, TRI released without a court order... Each problem with its file and
    line. Exit status 1 when there are problems."""

    def view(r: dict[str, Any]) -> None:
        for p in r["problems"]:
            render.say(p)
        if r["ok"]:
            render.say(
                f"ok {r['provisions']} provisions, {r['checks']} checks, sha256 {r['sha256']}"
            )

    _open(json_out, svc.lint, folder, view=view, failed=lambda r: not r["ok"])


@rules_app.command("propose")
def rules_propose(
    folder: Annotated[Path, typer.Argument(help="A rule-set folder (linted first).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose a changed rule set (rule steward). It takes effect only when a second rule
    steward approves its hash."""
    run(
        home,
        json_out,
        svc.propose,
        folder,
        view=lambda r: render.say(
            f"Proposed {r['name']} {r['version']} ({r['ruleset_sha256']}); a second rule steward "
            "must approve it ('custodes rules approve HASH')."
        ),
    )


@rules_app.command("approve")
def rules_approve(
    sha: Annotated[str, typer.Argument(help="The proposed rule set's hash (or a prefix).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Put a proposed rule set in force (a rule steward other than the proposer)."""
    run(
        home,
        json_out,
        svc.approve,
        sha,
        view=lambda r: render.say(
            f"Rule set {r['ruleset_sha256'][:12]}… is in force (approved by {r['approved_by']})."
        ),
    )


@rules_app.command("changes")
def rules_changes(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Rule-set changes: proposed, in force (active) and retired, with who did what."""
    columns: list[tuple[str, render.Cell]] = [
        ("rule set", lambda r: f"{r['name']} {r['sha256'][:12]}"),
        ("version", "version"),
        ("state", "state"),
        ("proposed by", "proposed_by"),
        ("approved by", "approved_by"),
    ]
    run(
        home,
        json_out,
        svc.changes,
        view=lambda rows: render.rows(
            "Rule-set changes",
            rows,
            columns,
            empty="No changes: the reference rule set is in force.",
        ),
    )


@agencies_app.command("add")
def agencies_add(
    name: Annotated[str, typer.Argument(help="The agency's name as requests give it.")],
    safeguards_current: Annotated[
        bool, typer.Option("--safeguards-current", help="Its safeguard review is current.")
    ] = False,
    open_findings: Annotated[
        int, typer.Option("--open-findings", help="Open safeguard findings.")
    ] = 0,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose an agency, or a change to its safeguards status: it takes effect when a second
    administrator confirms it ('custodes changes confirm ID'); both are in the ledger."""
    run(
        home,
        json_out,
        svc.add_agency,
        name,
        safeguards_current=safeguards_current,
        open_findings=open_findings,
        view=_proposed,
    )


def _proposed(r: dict[str, Any]) -> None:
    """A registry change waits for a second administrator (synthetic parties excepted)."""
    if r.get("pending"):
        render.say(
            f"Proposed: {r['summary']}. It takes effect when a second administrator confirms "
            f"it: 'custodes changes confirm {r['change']}'."
        )
    else:
        render.say("Recorded.")


@officials_app.command("add")
def officials_add(
    agency: Annotated[str, typer.Option("--agency")],
    name: Annotated[str, typer.Option("--name")],
    title: Annotated[str, typer.Option("--title")],
    role: Annotated[str, typer.Option("--role", help="e.g. head_of_agency, us_attorney.")],
    valid_from: Annotated[str, typer.Option("--from", help="YYYY-MM-DD")],
    valid_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose an official authorised to sign, with validity dates: in force when a second
    administrator confirms it ('custodes changes confirm ID'); both are in the ledger."""
    with guarded(json_out):
        start = iso_date(valid_from, "--from takes a date as YYYY-MM-DD.")
        end = iso_date(valid_to, "--to takes a date as YYYY-MM-DD.")
    run(
        home,
        json_out,
        svc.add_official,
        agency=agency,
        name=name,
        title=title,
        role=role,
        valid_from=start,
        valid_to=end,
        view=_proposed,
    )


@agreements_app.command("add")
def agreements_add(
    file: Annotated[Path, typer.Argument(help="An agreement overlay (YAML).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Propose a data-sharing agreement (it can only add requirements): in force when a second
    administrator confirms it ('custodes changes confirm ID'); both are in the ledger."""
    run(home, json_out, svc.add_agreement, file, view=_proposed)


def _registry(table: str, home: Path | None, json_out: bool) -> None:
    def view(rows: list[dict[str, Any]]) -> None:
        cols = [(k, k) for k in (rows[0] if rows else {})]
        render.rows(table.capitalize(), rows, cols, empty=f"No {table} registered.")

    run(home, json_out, svc.registry, table, view=view)


@agencies_app.command("list")
def agencies_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """The agencies in the registry."""
    _registry("agencies", home, json_out)


@officials_app.command("list")
def officials_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """The officials in the registry, with their validity dates."""
    _registry("officials", home, json_out)


@agreements_app.command("list")
def agreements_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """The registered agreements."""
    _registry("agreements", home, json_out)
