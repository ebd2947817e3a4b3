"""Alembic migrations of the status database (:func:`broker.statusdb.store.migrate` runs them)."""
