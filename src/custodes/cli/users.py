"""users add | grant | confirm | suspend | reinstate | key | totp | list | policy; changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

import typer

from custodes.cli import render
from custodes.cli.root import HomeOpt, JsonOpt, ReasonOpt, group, guarded, iso_date, run
from custodes.errors import InputError
from custodes.services import users as svc

users_app = group(
    "users",
    "Users and roles (administrators): add, grant, confirm, suspend, reinstate, list.",
)

RoleOpt = Annotated[
    list[str],
    typer.Option(
        "--role",
        help="requester, officer, approver, rule_steward, auditor or administrator (repeatable).",
    ),
]
BasisOpt = Annotated[
    str | None, typer.Option("--basis", help="Legal basis of the grant (e.g. a detail order).")
]
ExpiresOpt = Annotated[
    str | None, typer.Option("--expires", help="Last day of the grant, YYYY-MM-DD (inclusive).")
]
UserArg = Annotated[str, typer.Argument(help="The user.")]


def _last_day(value: str | None) -> dt.date | None:
    return iso_date(value, "--expires must be a date, YYYY-MM-DD.")


def _code(info: dict[str, Any]) -> None:
    """The enrolment code this administrator holds: a whole one only at the bootstrap, else
    the first half, the second going to whoever confirms the change."""
    if not info.get("enrolment_code"):
        return
    if info.get("enrolment_halves") == 2:
        render.say(
            f"First half of {info['user']}'s one-time enrolment code (give it to them in "
            f"person; valid {info['enrolment_hours']} hours). The second half goes to the "
            f"administrator who confirms change {info['change']} ('custodes changes confirm "
            f"{info['change']}'); {info['user']} enters both with 'custodes enrol "
            f"{info['user']}':\n{info['enrolment_code']}"
        )
    else:
        render.say(
            f"One-time enrolment code for {info['user']} (give it to them in person; valid "
            f"{info['enrolment_hours']} hours; they run 'custodes enrol {info['user']}'):\n"
            f"{info['enrolment_code']}"
        )


def confirmed_view(r: dict[str, Any]) -> None:
    """What a confirmation did, and the second half of a code when it completes one."""
    render.say(f"Confirmed change {r['change']} ({r['summary']}), proposed by {r['proposed_by']}.")
    if r.get("enrolment_code_second_half"):
        render.say(
            f"Second half of {r['user']}'s one-time enrolment code (give it to them in person; "
            f"valid {r['enrolment_hours']} hours from the first half; they enter both halves "
            f"with 'custodes enrol {r['user']}'):\n{r['enrolment_code_second_half']}"
        )


@users_app.command("add")
def users_add(
    user: Annotated[str, typer.Argument(help="The new user's name.")],
    role: RoleOpt,
    basis: BasisOpt = None,
    expires: ExpiresOpt = None,
    agency: Annotated[
        str | None,
        typer.Option("--agency", help="For a requester account: the agency it acts for."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", hidden=True, help="Refused: staff enrol themselves.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a user. Staff receive a one-time enrolment code and set their own password
    ('custodes enrol'); a privileged role takes effect when a second administrator confirms it
    ('custodes users confirm'). A requester account belongs to --agency and uses API keys."""
    with guarded(json_out):
        if password_stdin:
            raise InputError(
                "An administrator never sets a user's password: the user sets it with the "
                "enrolment code this command prints ('custodes enrol').",
                code="password_by_enrolment",
            )
        last = _last_day(expires)

    def view(info: dict[str, Any]) -> None:
        render.say(f"User {info['user']} created with role(s) {', '.join(info['roles'])}.")
        if info["pending"]:
            render.say(
                f"Pending until a second administrator confirms: {', '.join(info['pending'])} "
                f"('custodes users confirm {info['user']}')."
            )
        _code(info)

    run(home, json_out, svc.add, user, role, basis=basis, last_day=last, agency=agency, view=view)


@users_app.command("grant")
def users_grant(
    user: UserArg,
    role: Annotated[str, typer.Option("--role", help="The role to grant.")],
    basis: BasisOpt = None,
    expires: ExpiresOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Grant a role, optionally time-limited with its legal basis. Never to yourself; a
    privileged role takes effect when a second administrator confirms it."""
    with guarded(json_out):
        last = _last_day(expires)
    run(
        home,
        json_out,
        svc.grant,
        user,
        role,
        basis=basis,
        last_day=last,
        view=lambda r: render.say(
            f"Granted {r['role']} to {r['user']}"
            + (" (pending a second administrator's confirmation)." if r["pending"] else ".")
        ),
    )


@users_app.command("confirm")
def users_confirm(user: UserArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Confirm, as a second administrator, the one change another administrator proposed for
    a user (their roles, a key, a credential reset). With several pending, nothing is
    confirmed: they are listed, and you confirm one with 'custodes changes confirm ID'."""
    run(home, json_out, svc.confirm, user, view=confirmed_view)


@users_app.command("suspend")
def users_suspend(
    user: UserArg,
    reason: ReasonOpt,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Suspend a user at once: sessions and keys end in the same transaction, so their very
    next call (and any action of theirs not yet committed) is refused."""
    run(
        home,
        json_out,
        svc.suspend,
        user,
        reason,
        view=lambda r: render.say(
            f"{r['user']} suspended; {r['sessions_ended']} session(s) ended."
        ),
    )


@users_app.command("reinstate")
def users_reinstate(user: UserArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Reinstate a suspended user: one administrator asks, a second one confirms."""
    run(
        home,
        json_out,
        svc.reinstate,
        user,
        view=lambda r: render.say(
            f"{r['user']}: {r['status']}" + (f" ({r['pending']})" if "pending" in r else ".")
        ),
    )


@users_app.command("key")
def users_key(
    user: Annotated[str, typer.Argument(help="An agency's requester account.")],
    days: Annotated[int, typer.Option("--days", help="How long the key lives.")] = 365,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue an API key for an agency (requester) account: shown once, stored only as a hash,
    usable once a second administrator confirms it; suspension ends it at once."""
    run(
        home,
        json_out,
        svc.key,
        user,
        days=days,
        view=lambda r: render.say(
            f"Key for {r['user']} (shown once, valid {r['days']} days; a second administrator "
            f"runs 'custodes users confirm {r['user']}' before it works):\n{r['key']}"
        ),
    )


@users_app.command("totp")
def users_totp(user: UserArg, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Reset a user's credentials: their sessions end and their password and second factor
    are cleared now. You receive the first half of a new one-time enrolment code; a second
    administrator confirms the reset ('custodes changes confirm ID') and receives the second
    half; the user sets a new password and second factor with both ('custodes enrol')."""
    run(home, json_out, svc.reset, user, view=_code)


changes_app = group(
    "changes",
    "Changes waiting for a second administrator (roles, keys, credential resets, policy): "
    "list them, confirm one by its id.",
)


def _show_changes(rows: list[dict[str, Any]]) -> None:
    """One block per change, its whole id on a line of its own (a 64-character hash does not
    fit a table column at 80 columns, and it is what 'changes confirm' takes)."""
    if not rows:
        render.say("Nothing is waiting for a second administrator.")
        return
    for c in rows:
        render.say(
            f"{c['id']}\n  {c['kind']}: {c['summary']}\n  proposed by {c['proposed_by']} at "
            f"{c['proposed_at'].strftime('%Y-%m-%d %H:%M UTC')}"
        )


@changes_app.command("list")
def changes_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every change waiting for a second administrator: its id (the hash you confirm it by),
    its kind, what it changes, and who proposed it when."""
    run(home, json_out, svc.pending_changes, view=_show_changes)


@changes_app.command("confirm")
def changes_confirm(
    change: Annotated[str, typer.Argument(help="The change's id, from 'custodes changes list'.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Confirm one pending change by its id, as a second administrator: never one you
    proposed, never one about your own account. Confirming a new user or a credential reset
    gives you the second half of their enrolment code."""
    run(home, json_out, svc.confirm_change, change, view=confirmed_view)


def _show_users(rows: list[dict[str, Any]]) -> None:
    flat = [
        u | g
        for u in rows
        for g in u["grants"]
        or [{"role": "", "basis": None, "last_day": None, "expired": False, "pending": False}]
    ]
    render.rows(
        "Users",
        flat,
        [
            ("user", "user"),
            ("status", lambda r: r["status"] + ("" if r["enrolled"] else " (not enrolled)")),
            ("agency", "agency"),
            (
                "role",
                lambda r: (
                    r["role"]
                    + (" (expired)" if r["expired"] else "")
                    + (" (pending)" if r["pending"] else "")
                ),
            ),
            ("basis", "basis"),
            ("last day", "last_day"),
        ],
    )


@users_app.command("list")
def users_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Users, their status, and every grant's legal basis, last day and confirmation."""

    run(home, json_out, svc.listing, view=_show_users)


@users_app.command("policy")
def users_policy(
    totp_roles: Annotated[
        str | None,
        typer.Option(
            "--totp-roles",
            help="Propose the roles that must sign in with a one-time code (comma-separated; "
            "empty for none). A second administrator confirms with --confirm.",
        ),
    ] = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Confirm the pending change (a second administrator).")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The workspace's access policy, kept in the store and changed only by two
    administrators: without options, show it."""
    if confirm:
        run(home, json_out, svc.confirm_policy, "totp_roles", view=_kv("Policy in force"))
    elif totp_roles is not None:
        run(
            home,
            json_out,
            svc.propose_policy,
            "totp_roles",
            totp_roles,
            view=_kv("Policy change proposed"),
        )
    else:
        run(home, json_out, svc.policy, view=_show_policy)


def _kv(title: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: render.kv(title, r)


def _show_policy(rows: list[dict[str, Any]]) -> None:
    columns = [("policy", "key"), ("value", "value"), ("pending", "pending"), ("by", "pending_by")]
    render.rows("Policy", rows, columns)
