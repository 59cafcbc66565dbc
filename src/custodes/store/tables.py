"""SQLAlchemy Core tables of the transactional store.

The schema is owned by the Alembic migrations in ``migrations/versions``; this module mirrors it
for queries. A test checks that the two agree (``tests/test_store.py``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A moment in UTC, read back with its time zone from every store: PostgreSQL keeps the
    zone, SQLite's text does not (its naive value is UTC, as custodes writes only UTC), so
    every face shows the same `+00:00` timestamps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[dt.datetime]:
        return dt.datetime

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# One row per `records import` or `records generate`: what came in, what changed.
imports = Table(
    "imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # import | generate
    Column("at", UTCDateTime(), nullable=False),
    Column("people_sha256", String(64), nullable=False),
    Column("addresses_sha256", String(64), nullable=False),
    Column("people_rows", BigInteger, nullable=False),
    Column("address_rows", BigInteger, nullable=False),
    Column("people_added", BigInteger, nullable=False),
    Column("people_changed", BigInteger, nullable=False),
    Column("addresses_added", BigInteger, nullable=False),
    Column("addresses_changed", BigInteger, nullable=False),
    Column("master_sha256", String(64), nullable=False),
)

# Every file custodes reads back (master-file generations, request items, standardized items,
# match results, models, outcomes, responses, recall notices): its path relative to the
# workspace and the `file.stored` ledger event that records its SHA-256 (custodes.ledger.files).
# The hash is taken from the event's body, never from this row, so editing the row alone
# changes nothing it vouches for; `ledger verify` checks each row names its path's latest event.
files = Table(
    "files",
    metadata,
    Column("path", String(400), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("event_idx", BigInteger, nullable=False),
)

# --- ledger (RFC 9162 Merkle log; see custodes.ledger) ---------------------------------------

# One row per leaf: the event body (canonical JSON, no personal data), its salt and the
# commitment SHA-256("custodes/event/v1\n" || salt || body) that is the leaf's entry.
ledger_events = Table(
    "ledger_events",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128)),
    Column("request_id", String(64), index=True),
    Column("record_id", String(64), index=True),
    Column("body", Text, nullable=False),
    Column("salt", LargeBinary(32), nullable=False),
    Column("commitment", LargeBinary(32), nullable=False),
)

# Hashes of perfect subtrees from level 4 up (lower levels are recomputed from 16 leaves).
ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# The single row of tree state, advanced by compare-and-swap on `size` (appends) and on
# `checkpoint_size` (signing), so two writers can never fork the log.
ledger_state = Table(
    "ledger_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("checkpoint_size", BigInteger),
)

ledger_checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

ledger_cosignatures = Table(
    "ledger_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(255), primary_key=True),
    Column("line", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

# --- registries (rules) -----------------------------------------------------------------------

agencies = Table(
    "agencies",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("safeguards_current", Boolean, nullable=False),
    Column("open_findings", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

officials = Table(
    "officials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agency", String(200), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("title", String(200), nullable=False),
    Column("role", String(64), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

agreements = Table(
    "agreements",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("provision", String(64), nullable=False),
    Column("agency", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

# --- requests (intake and lifecycle) ----------------------------------------------------------

requests = Table(
    "requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("provision", String(64), nullable=False),
    Column("agency", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("content_sha256", String(64), nullable=False, unique=True),
    Column("envelope_sha256", String(64), nullable=False),
    Column("items_sha256", String(64), nullable=False),
    Column("items", BigInteger, nullable=False),
    Column("submitted_at", UTCDateTime(), nullable=False),
    Column("submitted_by", String(128)),
    # A request keyed in by staff from paper: the scan's hash, and the second staff member who
    # confirmed it (it is not processed before). NULL for a request from an agency's account.
    Column("paper_sha256", String(64)),
    Column("paper_confirmed_by", String(128)),
    Column("paper_confirmed_at", UTCDateTime()),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

request_transitions = Table(
    "request_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False, index=True),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128)),
    Column("reason", Text),
)

# --- decisions, review, two-person release ----------------------------------------------------

review_resolutions = Table(
    "review_resolutions",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("record_id", String(64)),  # DISCLOSE: the record the officer identified
)

releases = Table(
    "releases",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("outcomes_sha256", String(64), nullable=False),
    Column("prepared_by", String(128), nullable=False),
    Column("prepared_at", UTCDateTime(), nullable=False),
    Column("approved_by", String(128)),
    Column("approved_at", UTCDateTime()),
    Column("intent_at", UTCDateTime()),
    Column("released_by", String(128)),
    Column("released_at", UTCDateTime()),
    Column("response_sha256", String(64)),
    Column("checkpoint", Text),
)

disclosures = Table(
    "disclosures",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("record_id", String(64), nullable=False, index=True),
    Column("fields", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

recalls = Table(
    "recalls",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("items", Integer, nullable=False),
    Column("certified_by", String(200)),
    Column("certified_on", Date),
    Column("certificate", Text),
    Column("recorded_by", String(128)),
    Column("notice", Text),  # the return-or-destroy notice (JSON); its hash is in recall.issued
)

recall_items = Table(
    "recall_items",
    metadata,
    Column("recall_id", String(32), primary_key=True),
    Column("request_id", String(32), primary_key=True),
    Column("item_id", String(128), primary_key=True),
)

# A recipient agency's acknowledgement that it received a recall's notice (once per agency).
recall_acknowledgements = Table(
    "recall_acknowledgements",
    metadata,
    Column("recall_id", String(32), primary_key=True),
    Column("agency", String(200), primary_key=True),
    Column("acknowledged_by", String(128), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

# --- access: users, grants, sessions, keys, inspections ---------------------------------------

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("password_hash", Text),  # NULL until the user enrols with their one-time code
    Column("totp_secret", Text),  # encrypted with the workspace's secrets key
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(64)),
    Column("status_reason", Text),
    Column("status_at", UTCDateTime()),
    Column("status_by", String(64)),
    Column("reinstate_requested_by", String(64)),
    Column("agency", String(200)),  # requester accounts: the agency they act for
    Column("totp_last_step", BigInteger),  # the last one-time code used (no reuse)
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

grants = Table(
    "grants",
    metadata,
    Column("user_name", String(64), primary_key=True),
    Column("role", String(32), primary_key=True),
    Column("basis", Text),
    Column("expires_at", UTCDateTime()),
    Column("granted_by", String(64), nullable=False),
    Column("granted_at", UTCDateTime(), nullable=False),
    # Privileged roles count only once a second administrator confirmed the grant.
    Column("confirmed_by", String(64)),
    Column("confirmed_at", UTCDateTime()),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("issued_by", String(64)),  # API keys: the administrator who issued it
    Column("confirmed_by", String(64)),  # API keys: the second administrator
    Column("ended_at", UTCDateTime()),
    Column("ended_reason", String(32)),  # signed_out, suspended, issuer_suspended, idle
    Column("last_used_at", UTCDateTime()),  # for the inactivity timeout
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

# One-time enrolment codes (stored as hashes): a new user sets their own password with one.
enrolments = Table(
    "enrolments",
    metadata,
    Column("code_sha256", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("issued_by", String(64), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    # Split knowledge: a code in two halves needs its second half, issued by a second
    # administrator when they confirm the change (`code_sha256` is the first half's hash).
    # Only the bootstrap's second administrator gets a whole code (halves = 1).
    Column("halves", Integer, nullable=False, server_default="1"),
    Column("second_sha256", String(64)),
    Column("second_by", String(64)),
    Column("second_at", UTCDateTime()),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

# One queue of pending changes: each waits for a second administrator, who confirms it by its
# id (the hash of what it changes), so a confirmation names the one change the confirmer saw.
changes = Table(
    "changes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("subject", String(200), nullable=False, index=True),
    Column("slot", String(300), nullable=False, index=True),  # a newer change supersedes
    Column("summary", Text, nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON
    Column("proposed_by", String(64), nullable=False),
    Column("proposed_at", UTCDateTime(), nullable=False),
    Column("confirmed_by", String(64)),
    Column("confirmed_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    Column("ended_reason", String(32)),
)

# Failed sign-ins per account name (existing or not, so the answers do not differ).
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", UTCDateTime()),
    Column("last_failure", UTCDateTime(), nullable=False),
)

# Workspace policy (e.g. which roles need a second factor): changed by two administrators.
policy = Table(
    "policy",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text),
    Column("set_by", String(64)),
    Column("confirmed_by", String(64)),
    Column("set_at", UTCDateTime()),
    Column("pending", Text),
    Column("pending_by", String(64)),
    Column("pending_at", UTCDateTime()),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

access_log = Table(
    "access_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("user_name", String(64)),
    Column("action", String(64), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("reason", Text),
    Column("record_id", String(64), index=True),
    Column("purpose", Text),
    Column("request_id", String(32)),
)

sensitive_records = Table(
    "sensitive_records",
    metadata,
    Column("record_id", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("flagged_by", String(64), nullable=False),
    Column("flagged_at", UTCDateTime(), nullable=False),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

ruleset_changes = Table(
    "ruleset_changes",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("proposed_by", String(64), nullable=False),
    Column("proposed_at", UTCDateTime(), nullable=False),
    Column("approved_by", String(64)),
    Column("approved_at", UTCDateTime()),
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)

# Long work started over HTTP (process, train, release): durable, one row per job. A job runs
# in the server that accepted it, as its caller; a server that restarts fails the jobs it held
# (never runs one twice): the caller starts the work again, which resumes where it stopped.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("request_id", String(32), index=True),
    Column("actor", String(64), nullable=False),
    Column("runner", String(128), nullable=False),  # host:pid of the server process running it
    Column("state", String(16), nullable=False),  # queued, running, succeeded, failed, cancelled
    Column("progress", Text),  # JSON: the last stage and counts reported
    Column("result", Text),  # JSON
    Column("problem", Text),  # JSON: the error's code, title, detail
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
)

# Idempotency keys on submission (IETF draft "The Idempotency-Key HTTP Header Field"): the same
# key and payload return the first answer; another payload under the key is refused.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(64), primary_key=True),  # the caller's account name
    Column("key", String(255), primary_key=True),
    Column("payload_sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # running, done
    Column("response", Text),  # JSON
    Column("created_at", UTCDateTime(), nullable=False),
)

# Incidents: a suspected improper disclosure or inspection. Opening one starts the 24-hour
# clock for the report to the inspector general and the Office of Safeguards (IRS Publication
# 1075); its finding, once closed, marks the disclosures of its request as found improper.
incidents = Table(
    "incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # disclosure, inspection
    Column("request_id", String(32)),
    Column("summary", Text, nullable=False),  # staff's words, in the store only (hash in ledger)
    Column("opened_by", String(64), nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("reported_by", String(64)),
    Column("reported_at", UTCDateTime()),
    Column("closed_by", String(64)),
    Column("closed_at", UTCDateTime()),
    Column("finding", String(16)),  # improper, unfounded
    Column("anchor", BigInteger),  # the ledger event that anchors the row (anchors.py)
)
