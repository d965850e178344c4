"""Alembic migrations of the registry database, run by ``db.migration``."""
