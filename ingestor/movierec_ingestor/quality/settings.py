"""Thresholds and windows of the data-quality gate (env prefix `MOVIEREC_INGESTOR_QUALITY_`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CheckThresholds(BaseModel):
    """Schema, range and hygiene checks of the newest window."""

    # Every row in the store passed the ingest validator, so any invalid row means something
    # bypassed it or corrupted the data: the default tolerates none.
    max_schema_error_rate: float = Field(default=0.0, ge=0, le=1)
    # Producer clocks drift by seconds to minutes, not hours.
    future_skew_seconds: float = Field(default=300.0, ge=0)
    # Nothing was rated online before this; older times are epoch-0 or year-1 clock bugs. A
    # fixed floor, not an age, so replaying an old dataset (MovieLens 1997) stays valid.
    oldest_time: datetime = datetime(1995, 1, 1)
    duplicate_warn: float = Field(default=0.05, ge=0, le=1)
    duplicate_fail: float = Field(default=0.5, ge=0, le=1)
    dead_letter_warn: float = Field(default=0.05, ge=0, le=1)
    dead_letter_fail: float = Field(default=0.3, ge=0, le=1)
    # Optional metadata only (age, runtime, ...): warned on, never blocking.
    null_warn: float = Field(default=0.2, ge=0, le=1)


class DriftThresholds(BaseModel):
    """Drift of the newest window against the reference: significant AND large enough."""

    alpha: float = Field(default=0.01, gt=0, lt=1)
    # The usual credit-scoring bands: < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted.
    psi_warn: float = 0.1
    psi_fail: float = 0.25
    # For two equal samples and small shifts Cramér's V ≈ sqrt(PSI) / 2: these match the PSI bands.
    cramers_v_warn: float = 0.15
    cramers_v_fail: float = 0.25
    ks_warn: float = 0.1
    ks_fail: float = 0.25
    # Per side; below these a test is inconclusive ("skipped"), not a verdict on noise.
    min_ratings: int = Field(default=100, ge=2)
    min_ks_samples: int = Field(default=30, ge=2)


class PoisoningThresholds(BaseModel):
    """Per-movie shift and young-account extreme-rating bursts."""

    # Family-wise: Bonferroni over the movies tested.
    alpha: float = Field(default=0.01, gt=0, lt=1)
    # Ratings of the movie before the window.
    min_history: int = Field(default=30, ge=1)
    # Ratings of the movie in the window: the chi-squared approximation needs expected counts
    # of about 5 per cell, below that its p-values are too small and flag noise.
    min_recent: int = Field(default=30, ge=1)
    min_cramers_v: float = 0.3
    # Poisoning pushes or nukes: the share of 1s or 5s must grow this much, else the shift is
    # drift (the drift tests judge it), not an attack.
    min_extreme_gain: float = Field(default=0.15, gt=0, le=1)
    # First seen this recently (any event) counts as a young account ...
    young_hours: float = Field(default=72.0, gt=0)
    # ... with at most this many rated movies; more is an established profile.
    max_user_ratings: int = Field(default=50, ge=1)
    # Fewer young raters than this is not a coordinated push.
    min_burst_accounts: int = Field(default=5, ge=1)
    # A burst is this long: attacks come in little time, organic ratings spread out.
    burst_minutes: float = Field(default=60.0, gt=0)
    # Of the movie's ratings in the burst.
    min_burst_share: float = Field(default=0.2, gt=0, le=1)
    # Floor of the expected count of one extreme value on one movie in the window: a movie
    # without history is not judged against zero.
    min_expected: float = Field(default=0.5, gt=0)
    # Fakes agree: of the young accounts rating the movie in the burst, this share gave the
    # same extreme value. An organic new cohort with harsh or kind tastes is not unanimous.
    min_young_agreement: float = Field(default=0.6, gt=0, le=1)
    # A suspect account's ratings this close (either side) to its target rating are its
    # attack session, quarantined with it; its ratings at other times are kept.
    session_minutes: float = Field(default=60.0, gt=0)
    # Arrival (server) time replaces a rating's claimed time when the claim is older than its
    # arrival by more than this: backdated lines are judged by when they came. When most
    # recent rows are that late the store is being backfilled and arrival says nothing.
    max_lag_hours: float = Field(default=6.0, gt=0)
    # Bounds of the report and of one run's quarantine.
    max_movies: int = Field(default=50, ge=1)
    max_users: int = Field(default=1000, ge=1)


class QualitySettings(BaseSettings):
    """Everything the gate reads from the environment; nested fields use `__` (`DRIFT__ALPHA`)."""

    model_config = SettingsConfigDict(
        env_prefix="MOVIEREC_INGESTOR_QUALITY_", env_nested_delimiter="__", extra="ignore"
    )

    window_hours: float = Field(default=6.0, gt=0)
    # The reference is this many windows just before the newest.
    reference_windows: int = Field(default=4, ge=1)
    # The window ends before the newest share of the span's events (stragglers; see
    # data.resolve_window).
    tail_share: float = Field(default=0.01, ge=0, lt=0.5)
    # Label bound of movierec_poisoning_suspects.
    metrics_top_movies: int = Field(default=10, ge=1)
    checks: CheckThresholds = Field(default_factory=CheckThresholds)
    drift: DriftThresholds = Field(default_factory=DriftThresholds)
    poisoning: PoisoningThresholds = Field(default_factory=PoisoningThresholds)
