"""SQLAlchemy Core tables of the transactional store.

The schema is owned by the Alembic migrations in ``migrations/versions``; this module mirrors it
for queries. A test checks that the two agree (``tests/test_store.py``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

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
    Column("at", DateTime(timezone=True), nullable=False),
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
