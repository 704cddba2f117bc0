"""Demographic groups shared by fairness metrics, online evaluation and cold-start fallbacks."""

from __future__ import annotations

import math

# MovieLens 1M's age bands, the usual reporting buckets for this domain. One definition, so the
# offline fairness ratio, the online disparity and the serving fallback speak of the same groups.
AGE_EDGES = (18, 25, 35, 45, 56)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-55", "56+")


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
