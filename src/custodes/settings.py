"""Every `CUSTODES_*` setting, in one table: name, type, default, meaning.

This module is the only place custodes reads its settings from the environment (and the only
place `custodes serve` writes them, to hand its options to the server processes). It imports
only the errors, so every room may read it. A module asks for a setting by its name through
one of the typed accessors below; a name not in the table is a programming error (`KeyError`),
so a setting cannot be read without being documented. docs/operations.md's settings section is
generated from this table (`markdown()`), and tests/test_settings.py fails when the two differ,
when src names a setting the table lacks, or when the table holds a setting nothing reads.

Validation that belongs to one caller (a range, a coded error) stays with that caller: the
accessors return what the environment holds, or the table's default.
(Hand-written rather than pydantic-settings: the table is plain data the docs test also reads,
and the readers keep their own coded errors.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from custodes.errors import WorkspaceError


@dataclass(frozen=True)
class Setting:
    name: str
    type: str  # what the value is: text, path, url, integer, number, bytes, flag, list, secret
    default: str  # as the docs show it ("" when there is none)
    meaning: str


GIB = 1 << 30
MIB = 1 << 20

SETTINGS: tuple[Setting, ...] = (
    # The workspace and its keys.
    Setting("CUSTODES_HOME", "path", "./custodes-data", "The workspace folder (or `--home`)."),
    Setting(
        "CUSTODES_STORE_URL",
        "url",
        "the store the workspace recorded (SQLite in the folder)",
        "The transactional store (or `--store-url`); a URL differing from the recorded one is "
        "refused unless it reaches the same store.",
    ),
    Setting(
        "CUSTODES_LEDGER_KEY",
        "path or PKCS#11 URI",
        "`keys/ledger.key` in the workspace",
        "Where this host finds the ledger's signing key: a key file, or a `pkcs11:` URI (HSM).",
    ),
    Setting(
        "CUSTODES_SECRETS_KEY",
        "path",
        "`keys/secrets.key` in the workspace",
        "Where this host finds the secrets key (second factors, item commitments, forms).",
    ),
    Setting(
        "CUSTODES_PKCS11_PIN",
        "secret",
        "",
        "The HSM user PIN when the key's URI names no `pin-source` file.",
    ),
    Setting(
        "CUSTODES_PKCS11_MODULE",
        "path",
        "",
        "The PKCS#11 library when the key's URI names no `module-path`.",
    ),
    # Signing in.
    Setting(
        "CUSTODES_SESSION",
        "secret",
        "the session stored for this shell user",
        "The CLI's session token or API key (nothing is then stored or forgotten).",
    ),
    Setting(
        "CUSTODES_IDLE_MINUTES",
        "number",
        "15",
        "Inactivity timeout of a session, in minutes (more than 0, at most a week; AC-11/AC-12).",
    ),
    Setting(
        "CUSTODES_SYSTEM_USE_NOTICE",
        "path",
        "the packaged notice for systems holding FTI",
        "A UTF-8 file with the agency's system-use notification shown before sign-in (AC-8).",
    ),
    Setting(
        "CUSTODES_TRUSTED_PROXY",
        "list",
        "",
        "Addresses or networks (comma or space separated) whose X-Forwarded-For names the "
        "client a sign-in is throttled by (or `serve --trusted-proxy`).",
    ),
    # The server.
    Setting(
        "CUSTODES_BEHIND_TLS_PROXY",
        "flag",
        "",
        "Set to let `custodes serve` listen beyond the loopback interface (TLS is the proxy's).",
    ),
    Setting(
        "CUSTODES_INSECURE_COOKIES",
        "flag",
        "",
        "Set to give the console's cookie a plain name without Secure (plain-HTTP tests only).",
    ),
    Setting(
        "CUSTODES_ADMIT_READS",
        "integer",
        "2",
        "Read calls admitted at once (1–1024; or `serve --admit-reads`).",
    ),
    Setting(
        "CUSTODES_ADMIT_WRITES",
        "integer",
        "4",
        "Write calls admitted at once (1–1024; or `serve --admit-writes`).",
    ),
    Setting(
        "CUSTODES_ADMIT_WAIT_MS",
        "integer",
        "250",
        "How long a call waits for admission before `503 overloaded`, in ms (0–60000).",
    ),
    Setting(
        "CUSTODES_ADMIT_QUEUE",
        "integer",
        "64",
        "Places in each class's admission queue (1–100000).",
    ),
    Setting(
        "CUSTODES_GRACE",
        "integer",
        "10",
        "Seconds a stopping server gives the calls it holds (0–3600; or `serve --grace`).",
    ),
    Setting(
        "CUSTODES_API_THREADS",
        "integer",
        "0 (sized from the admission limits)",
        "Request threads of a server process.",
    ),
    Setting(
        "CUSTODES_API_MAX_BODY",
        "bytes",
        str(MIB),
        "Largest body of a JSON call or console form.",
    ),
    Setting(
        "CUSTODES_API_MAX_INLINE",
        "bytes",
        str(32 * MIB),
        "Largest submission with its items inline as JSON.",
    ),
    Setting(
        "CUSTODES_API_MAX_UPLOAD",
        "bytes",
        str(2 * GIB),
        "Largest file upload (a request's items, an import).",
    ),
    Setting(
        "CUSTODES_JOB_QUOTA",
        "integer",
        "4",
        "Jobs one caller may have waiting or running (1–1000; or `serve --job-quota`).",
    ),
    Setting(
        "CUSTODES_JOB_WORKER",
        "text",
        "thread",
        "Where a server runs its jobs: `process`, a worker process at a lower CPU priority "
        "(set by `serve`), or `thread`, in the server's own process (tests).",
    ),
    Setting(
        "CUSTODES_WITNESS_KEY",
        "path",
        "",
        "The witness key of the witness this server also runs (set by `serve --witness-key`).",
    ),
    Setting(
        "CUSTODES_WITNESS_LOGS",
        "list",
        "",
        "The logs that witness cosigns, space separated (set by `serve --witness-log`).",
    ),
    Setting(
        "CUSTODES_WITNESS_STATE",
        "path",
        "`witness.db` in the workspace",
        "That witness's state (set by `serve --witness-state`).",
    ),
    # Intake and files.
    Setting("CUSTODES_MAX_FIELD_CHARS", "integer", "500", "Longest field of a request's items."),
    Setting("CUSTODES_MAX_ITEMS_BYTES", "bytes", str(2 * GIB), "Largest items file of a request."),
    Setting("CUSTODES_MAX_ITEMS", "integer", "5000000", "Most items in one request."),
    Setting(
        "CUSTODES_MAX_ARCHIVE",
        "bytes",
        str(GIB),
        "Largest member of an archive custodes reads (an export, a backup bundle).",
    ),
    # Matching.
    Setting(
        "CUSTODES_MATCH_CHUNK_ITEMS",
        "integer",
        "250000",
        "Items a request's matching scores per chunk (the caller is re-checked between).",
    ),
    Setting(
        "CUSTODES_MEMORY_LIMIT",
        "size",
        "a share of the machine's memory",
        "DuckDB's memory limit for bulk work (matching, imports): a DuckDB size such as `4GB`.",
    ),
    Setting(
        "CUSTODES_SPARK_MASTER",
        "url",
        "local[2]",
        "The Spark master matching runs on with `--engine spark`.",
    ),
    Setting(
        "CUSTODES_SPARK_PARTITIONS", "integer", "8", "Spark's shuffle partitions for matching."
    ),
    Setting("CUSTODES_SPARK_MEMORY", "text", "2g", "Spark's driver memory for matching."),
    Setting(
        "CUSTODES_SPARK_EXECUTOR_MEMORY", "text", "1g", "Spark's executor memory for matching."
    ),
    Setting(
        "CUSTODES_SPARK_DRIVER_HOST",
        "text",
        "",
        "The address Spark's executors reach the driver at (a standalone cluster).",
    ),
    # Reports and diagnostics.
    Setting(
        "CUSTODES_ISSUING_OFFICE",
        "text",
        "",
        "The office named on reports (or `--office`).",
    ),
    Setting(
        "CUSTODES_DEBUG",
        "flag",
        "",
        "Set for a CLI traceback (it may contain personal data) and Splink's own logging.",
    ),
    Setting(
        "CUSTODES_FAILPOINT",
        "text",
        "",
        "Tests only: `NAME[:N]` kills the process at the N-th pass of a named point "
        "(failpoints.py); `count` counts them.",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def raw(name: str) -> str | None:
    """The environment's value of a setting in the table, or None when unset."""
    return os.environ.get(BY_NAME[name].name)


def text(name: str, default: str = "") -> str:
    """The setting's value, or `default` when unset or empty."""
    return raw(name) or default


def flag(name: str) -> bool:
    """True when the setting is set to anything but the empty string."""
    return bool(raw(name))


def items(name: str) -> list[str]:
    """A list setting: its parts, separated by commas or spaces."""
    return text(name).replace(",", " ").split()


def integer(name: str, default: int) -> int:
    """A whole number: the environment's value, or `default` when unset; anything else is a
    coded error naming the setting (the readers with a range check their own; see `raw`)."""
    value = text(name).strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()):
        raise WorkspaceError(f"{name} must be a whole number.", code="bad_configuration")
    return int(value)


def put(name: str, value: str) -> None:
    """Hand a setting to the processes this one starts (`custodes serve`)."""
    os.environ[BY_NAME[name].name] = value


def markdown() -> str:
    """The docs' table of settings (docs/operations.md, between the markers)."""
    lines = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = s.default if s.default else "—"
        if s.type in ("bytes", "integer") and default.isdigit():
            default = f"`{default}`"
        lines.append(f"| `{s.name}` | {s.type} | {default} | {s.meaning} |")
    return "\n".join(lines) + "\n"
