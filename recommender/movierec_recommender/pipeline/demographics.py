"""Demographic groups of users (age bucket, gender) from the store's `users` table, for fairness."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

log = logging.getLogger(__name__)

# MovieLens 1M's age bands, the usual reporting buckets for this domain.
AGE_EDGES = (18, 25, 35, 45, 56)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-55", "56+")

Groups = dict[str, dict[str, str]]  # attribute -> user id -> group label


def age_bucket(age: float | None) -> str | None:
    """The age band of ``age``; None when unknown or implausible."""
    if age is None or (isinstance(age, float) and math.isnan(age)) or not 0 < age < 130:
        return None
    for edge, label in zip(AGE_EDGES, AGE_LABELS, strict=False):
        if age < edge:
            return label
    return AGE_LABELS[-1]


def gender_group(gender: str | None) -> str | None:
    """A normalised gender label; None when unknown."""
    if gender is None or not isinstance(gender, str) or not gender.strip():
        return None
    return gender.strip().upper()


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
