"""The transactional store: SQLAlchemy Core tables, Alembic migrations, engines."""
