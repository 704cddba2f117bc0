"""Alembic revisions, oldest first (packaged so an installed wheel can migrate)."""
