"""Alembic environment: runs on the connection `movierec_ingestor.migrate` hands over."""

from __future__ import annotations

from alembic import context

from movierec_ingestor.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through movierec_ingestor.migrate.upgrade(engine)")

# Batch mode lets future ALTERs work on SQLite too (it rebuilds the table).
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
