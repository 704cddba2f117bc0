"""Alembic migrations of the movierec schema, run programmatically by `movierec_ingestor.migrate`."""
