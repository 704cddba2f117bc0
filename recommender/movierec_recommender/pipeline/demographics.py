"""Demographic groups of users (age bucket, gender) from the store's `users` table, for fairness."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from movierec_recommender.demographics import AGE_LABELS, age_bucket, gender_group

log = logging.getLogger(__name__)

__all__ = ["AGE_LABELS", "Groups", "age_bucket", "build_groups", "gender_group", "load_groups"]

Groups = dict[str, dict[str, str]]  # attribute -> user id -> group label


def build_groups(rows: Iterable[tuple[object, float | None, str | None]]) -> Groups:
    """(user_id, age, gender) rows as {"age": {user: band}, "gender": {user: label}}."""
    groups: Groups = {"age": {}, "gender": {}}
    for user_id, age, gender in rows:
        user = str(user_id)
        band = age_bucket(None if age is None else float(age))
        if band is not None:
            groups["age"][user] = band
        label = gender_group(gender)
        if label is not None:
            groups["gender"][user] = label
    return {attribute: members for attribute, members in groups.items() if members}


def load_groups(db_url: str) -> Groups:
    """The demographic groups of every user with metadata; empty when there is none."""
    import sqlalchemy as sa
    from movierec_ingestor.db import create_engine

    engine = create_engine(db_url)
    try:
        if "users" not in sa.inspect(engine).get_table_names():
            log.info("no users table: fairness metrics are skipped")
            return {}
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT user_id, age, gender FROM users")).all()
    finally:
        engine.dispose()
    return build_groups((row[0], row[1], row[2]) for row in rows)
