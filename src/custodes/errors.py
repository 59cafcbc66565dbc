"""The errors custodes raises for things a user can cause, and the one registry of their codes.

    CustodesError                 every error a user can cause; a stable machine code
    ├── InputError                a file, argument or value that cannot be accepted     (422)
    │   └── ValidationFailed      rows that break a schema (carries the first problems) (422)
    ├── NotFound                  no such request, item, user, recall...                (404)
    ├── AccessDenied              the caller may not do this                             (403)
    │   └── Unauthenticated       no live session or key, or sign-in refused            (401)
    ├── RateLimited               too many attempts; try again later                     (429)
    ├── Overloaded                the server cannot take the call now; nothing was done (503)
    ├── ConflictError             the action clashes with the current state              (409)
    │   └── IntegrityError        something on disk or in the store was altered          (409)
    └── WorkspaceError            no usable workspace (missing, unreachable, exposed)    (503)

Every code is registered in `REGISTRY` with the class that raises it, so the same code is
always the same kind of error; a test walks the source and fails on an unregistered code or a
code raised with another class. The faces translate only through this module: the CLI prints
`error (code): message` and exits with `exit_code`; the API answers RFC 9457 problem details
with `status` and `title`.

Messages never contain names, TINs, dates of birth or addresses: they name the file, the
line and the column, and say what is wrong, not what the value was.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

# CLI exit statuses. Every error a user can cause exits 2 (the README's contract, relied on by
# scripts); 1 is kept for a result that says "no" (a refused request, a failed verification),
# 70 for an unexpected failure, 130 for an interruption.
EXIT_USER_ERROR = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted; run the same command again to resume.\n"


class CustodesError(Exception):
    """An error a user can cause. `code` is stable and machine-readable."""

    code = "error"
    status = 400
    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int:
        """The HTTP status the registry gives this code (the class's when not registered)."""
        entry = REGISTRY.get(self.code)
        return entry.http_status if entry else self.status

    @property
    def title(self) -> str:
        entry = REGISTRY.get(self.code)
        return entry.title if entry else self.code.replace("_", " ")

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InputError(CustodesError):
    code = "input"
    status = 422


class NotFound(CustodesError):
    code = "not_found"
    status = 404


class AccessDenied(CustodesError):
    """The caller may not do this: role, suspension, separation of duties."""

    code = "forbidden"
    status = 403


class Unauthenticated(AccessDenied):
    """No live session or key, or a sign-in that was refused."""

    code = "not_signed_in"
    status = 401


class RateLimited(CustodesError):
    """Too many attempts; `retry_after` says when to try again (seconds)."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 60) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        return super().to_dict() | {"retry_after": self.retry_after}


class Overloaded(CustodesError):
    """The server cannot take the call now (too busy, or stopping); nothing was done or
    recorded for it. `retry_after` says when to try again (seconds)."""

    code = "overloaded"
    status = 503

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        return super().to_dict() | {"retry_after": self.retry_after}


class ConflictError(CustodesError):
    code = "conflict"
    status = 409


class IntegrityError(ConflictError):
    """Something custodes recorded no longer matches what is on disk or in the store."""

    code = "integrity"


class WorkspaceError(CustodesError):
    code = "workspace"
    status = 503


@dataclass(frozen=True)
class Problem:
    """One validation problem, located without quoting the value."""

    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.column:
            where += f" [{self.column}]"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


class ValidationFailed(InputError):
    """Input rows that break the schema; nothing was loaded."""

    code = "validation_failed"

    def __init__(self, problems: list[Problem], total: int) -> None:
        self.problems = problems
        self.total = total
        shown = "\n".join(f"  {p}" for p in problems)
        more = f"\n  ... and {total - len(problems)} more" if total > len(problems) else ""
        super().__init__(
            f"{total} problem(s) found; nothing was loaded. First problems:\n{shown}{more}"
        )

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["total"] = self.total
        d["problems"] = [p.to_dict() for p in self.problems]
        return d


@dataclass(frozen=True)
class Code:
    kind: type[CustodesError]
    title: str
    status: int | None = None  # when it differs from the class's

    @property
    def http_status(self) -> int:
        return self.status or self.kind.status


def _codes(kind: type[CustodesError], **titles: str) -> dict[str, Code]:
    return {code: Code(kind, title) for code, title in titles.items()}


# The registry: every code a user can meet, its class and a short title (RFC 9457 `title`).
REGISTRY: dict[str, Code] = {
    **_codes(
        InputError,
        input="Input rejected",
        bad_argument="Bad argument",
        bad_cursor="Cursor not valid",
        idempotency_key_reused="Idempotency key reused with another payload",
        bad_encoding="Not UTF-8 text",
        bad_csv="Not a readable CSV file",
        bad_parquet="Not a readable Parquet file",
        bad_column_type="Column cannot be read as text",
        bad_column_name="Column name not allowed",
        unsupported_file_type="Unsupported file type",
        empty_file="Empty file",
        missing_columns="Missing columns",
        unknown_columns="Unknown columns",
        duplicate_columns="Column named twice",
        not_a_request="Not a request directory",
        missing_envelope="No envelope",
        bad_envelope="Envelope rejected",
        no_items="No items",
        empty_item_id="Empty item id",
        duplicate_item_id="Repeated item id",
        bad_item_id="Item id not allowed",
        oversize_field="Field too long",
        bad_ruleset="Rule set not valid",
        bad_agreement="Agreement not valid",
        bad_archive="Archive not usable",
        agreement_mismatch="Agreement for another provision",
        rule_sql_failed="A rule's SQL failed",
        bad_threshold="Threshold out of range",
        bad_role="Unknown or unusable role",
        bad_user_name="User name not allowed",
        weak_password="Password too short",
        bad_key="Not a verifier key",
        missing_key="Verifier key required",
        bad_policy="Witness policy not valid",
        bad_origin="Not a usable log origin",
        bad_index="No such ledger event",
        bad_size="No checkpoint of that size",
        bad_cosignature="Cosignature not valid",
        bad_state="Unknown request state",
        bad_record_id="Not a record id",
        bad_path="Path not usable",
        file_not_found="No such file or folder",
        unknown_provision="Unknown provision",
        no_purpose="Purpose required",
        no_case="Open request required",
        truth_mismatch="Truth file does not match",
        bad_date="Not a date",
        bad_year="No such report year",
        not_confirmed="Confirmation required",
        witness_unreachable="Witness unreachable",
        witness_refused="Witness refused",
        bad_pkcs11_uri="Not a usable PKCS#11 URI",
        password_by_enrolment="Staff set their own password",
        bad_report="Not a custodes report",
        bad_incident="Incident not valid",
        no_bodies="Export without event bodies",
        bad_export="Export not readable",
        bad_item_identification="Identified record not acceptable",
        personal_data="Personal data refused",
        bad_json="Body is not JSON",
        bad_multipart="Multipart body not readable",
        too_many_parts="Too many form fields or files",
    ),
    "file_too_large": Code(InputError, "File too large", 413),
    "body_too_large": Code(InputError, "Body too large", 413),
    "too_many_rows": Code(InputError, "Too many rows", 413),
    "unsupported_media_type": Code(InputError, "Unsupported media type", 415),
    "method_not_allowed": Code(InputError, "Method not allowed", 405),
    **_codes(
        NotFound,
        not_found="Not found",
        unknown_request="No such request",
        unknown_item="No such item",
        unknown_user="No such user",
        unknown_recall="No such recall",
        no_notice="Notice not in the store",
        unknown_ruleset="No such rule set",
        unknown_agency="No such agency",
        unknown_record="No such record",
        unknown_job="No such job",
        unknown_incident="No such incident",
        not_disclosed="Item was not disclosed",
        not_in_review="Item not in review",
        unknown_review_group="No such review group",
        unknown_change="No such change",
    ),
    **_codes(
        AccessDenied,
        forbidden="Not permitted",
        suspended="User suspended",
        separation_of_duties="Separation of duties",
        self_approval="Second person required",
        key_not_allowed="API keys are for agency accounts",
        other_agency="Another agency's request",
        agency_account_required="Agency account required",
        not_a_candidate="Record not a candidate of the request",
        totp_required="Second factor required",
        authority_tampered="Authority not matched by the ledger",
    ),
    **_codes(
        Unauthenticated,
        not_signed_in="Not signed in",
        session_ended="Session ended",
        not_a_console_session="Not a console session",
        bad_credentials="Sign-in refused",
        bad_totp="One-time code refused",
        bad_enrolment="Enrolment refused",
        console_session="Console session outside the console",
    ),
    **_codes(
        RateLimited,
        rate_limited="Too many requests",
        locked="Too many failed sign-ins",
        job_quota="Too many jobs waiting or running",
    ),
    **_codes(
        Overloaded,
        overloaded="Server busy",
        store_busy="Store busy",
        shutting_down="Server stopping",
    ),
    **_codes(
        ConflictError,
        conflict="Conflict",
        illegal_transition="Not allowed in this state",
        already_processing="Already being processed",
        concurrent_transition="Changed meanwhile",
        ledger_conflict="Ledger extended concurrently",
        ledger="Ledger refused",
        origin_mismatch="Ledger origin differs",
        origin_fixed="Ledger origin fixed",
        key_exists="Key exists",
        ledger_key_mismatch="Another ledger key",
        secrets_key_mismatch="Another secrets key",
        join_instead="Store already in use",
        already_bootstrapped="Already bootstrapped",
        workspace_exists="Workspace exists",
        not_a_deployment="Store not initialised",
        output_exists="Output exists",
        user_exists="User exists",
        already_suspended="Already suspended",
        user_suspended="User suspended",
        not_suspended="Not suspended",
        not_pending="Nothing to confirm",
        ambiguous_change="Several changes pending",
        already_granted="Role already held",
        paper_unconfirmed="Paper request not confirmed",
        last_administrators="Two administrators must remain",
        request_closed="Request not open",
        already_proposed="Already proposed",
        not_proposed="Not proposed",
        already_recalled="Already recalled",
        already_certified="Already certified",
        already_released="Already released",
        agreement_exists="Agreement exists",
        nothing_disclosed="Nothing disclosed",
        not_processed="Not processed yet",
        not_linked="Not linked yet",
        not_prepared="Not prepared",
        not_approved="Not approved",
        not_released="Not released",
        idempotency_key_in_use="Idempotency key in use",
        job_ended="Job already ended",
        review_open="Items still in review",
        rules_fail="Rules fail",
        blocking_flag="Blocking match flag",
        outcomes_changed="Outcomes changed",
        no_request="No request yet",
        no_master_file="No master file",
        master_exists="Master file exists",
        no_model="No linkage model",
        no_ledger_key="No ledger key",
        hsm_key_missing="No such key in the HSM",
        signing_held="Signing held after a restore",
        no_witness="No witness configured",
        no_checkpoint="No signed checkpoint",
        real_master_file="Imported master file",
        refused_request="Request refused",
        idempotency_mismatch="Idempotency key reused",
        idempotency_in_progress="Request still in progress",
        job_finished="Job already finished",
        incident_done="Incident already reported or closed",
        incident_not_reported="Incident not reported yet",
    ),
    **_codes(
        IntegrityError,
        integrity="Integrity check failed",
        ledger_corrupt="Ledger altered",
        store_tampered="Store altered outside custodes",
        model_tampered="Model file altered",
        file_tampered="File altered since it was recorded",
        ruleset_tampered="Rule set altered",
        master_corrupt="Master file damaged",
        release_tampered="Release files altered",
        notice_tampered="Recall notice altered",
        bad_model="Not a model file",
        bad_ledger_key="Ledger key unreadable",
        restore_inconsistent="Log does not extend the witness's checkpoint",
    ),
    **_codes(
        WorkspaceError,
        workspace="Workspace not usable",
        no_workspace="No workspace",
        store_unreachable="Store unreachable",
        store_outdated="Store schema outdated",
        store_missing="Store missing",
        store_mismatch="Another store",
        unrecorded_workspace="Workspace not recorded",
        bad_record="Workspace record unreadable",
        bad_store_url="Store URL not usable",
        workspace_exposed="Workspace readable by others",
        sessions_unsafe="Session folder not safe",
        no_secrets_key="No secrets key",
        bad_configuration="Configuration not usable",
        hsm_unavailable="HSM not usable",
        read_only="Workspace or store read-only",
    ),
    "disk_full": Code(WorkspaceError, "Disk full", 507),
}


_READ_ONLY = (errno.EROFS,)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SQLITE = {
    "SQLITE_READONLY": "read_only",
    "SQLITE_FULL": "disk_full",
    "SQLITE_IOERR": "disk_full",  # a write the filesystem refused (a size limit, a full disk)
}
_FAULT = {
    "read_only": "The workspace or its store is read-only; nothing was committed by the "
    "failing step. Make it writable and run the same command again.",
    "disk_full": "The disk (or the process's file-size limit) is full; nothing was committed by "
    "the failing step. Free space and run the same command again.",
    "store_unreachable": "The connection to the store was lost; nothing was committed by the "
    "failing step. Run the same command again when the store is back.",
}


def _by_message(text: str) -> str | None:
    if os.strerror(errno.EROFS) in text:
        return "read_only"
    if any(os.strerror(e) in text for e in _FULL):
        return "disk_full"
    return None


def from_fault(exc: BaseException | None) -> CustodesError | None:
    """The coded error for a fault of the machine, not of the input: a read-only filesystem or
    store, a full disk or a file-size limit (`OSError` by errno, SQLite by its error name), a
    lost connection to PostgreSQL. None for anything else. Looks through the chain of causes
    (SQLAlchemy wraps the driver's error); names no path and quotes no message (a driver's
    message may hold data). Each face calls it before it would report an internal error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = None
        if isinstance(exc, OSError) and exc.errno in _READ_ONLY:
            code = "read_only"
        elif isinstance(exc, OSError) and exc.errno in _FULL:
            code = "disk_full"
        elif (name := getattr(exc, "sqlite_errorname", None)) is not None:
            code = _SQLITE.get("_".join(str(name).split("_")[:2]))  # SQLITE_IOERR_WRITE -> IOERR
        elif isinstance(exc, OSError) or type(exc).__name__ == "IOException":
            # pyarrow's OSError has no errno, DuckDB's IOException is no OSError: both carry
            # the system's message (strerror), which is all there is to go by
            code = _by_message(str(exc))
        elif any(  # psycopg's, or a subclass (AdminShutdown: the server restarted)
            k.__module__.startswith("psycopg")
            and k.__name__ in ("OperationalError", "InterfaceError")
            for k in type(exc).__mro__
        ):
            code = "store_unreachable"
        if code is not None:
            return fail(code, _FAULT[code])
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None)
    return None


def registered(code: str) -> Code | None:
    return REGISTRY.get(code)


def fail(code: str, message: str) -> CustodesError:
    """The error for `code`, of the class the registry gives it (raise the result)."""
    entry = REGISTRY.get(code)
    kind = entry.kind if entry else CustodesError
    if kind is ValidationFailed:  # pragma: no cover - built with its problems instead
        raise TypeError("build ValidationFailed with its problems")
    return kind(message, code=code)
