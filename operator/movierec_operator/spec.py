"""The typed RecommenderModel spec: parsing, defaults and the checks the CRD schema cannot express."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from movierec_operator import constants

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

DEFAULT_CHECK_NAMES = (
    "success-rate",
    "latency-p95-seconds",
    "online-rmse",
    "engagement",
    "fairness-disparity-ratio",
)
# built in, but run only when spec.analysis lists them
OPTIONAL_CHECK_NAMES = ("fairness-group-ratio", "ab-engagement")
BUILT_IN_CHECK_NAMES = DEFAULT_CHECK_NAMES + OPTIONAL_CHECK_NAMES


class SpecError(ValueError):
    """The spec cannot be used; the message says which field and why."""


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``2m``, ``90s``, ``1h30m`` or ``500ms``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """A duration as people write it: ``1h2m5s``, ``5m1s``, ``45s`` (whole seconds; ``500ms``
    below one second)."""
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n)
    return text or "0s"


def promql_duration(seconds: float) -> str:
    """A PromQL range for ``seconds`` (whole milliseconds, the finest PromQL accepts)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Check(_Camel):
    """One analysis check: a metric and the bounds a canary must keep."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    query: str | None = None
    samples_query: str | None = None
    min: float | None = None
    max: float | None = None
    max_increase: float | None = Field(default=None, ge=0)
    min_ratio: float | None = Field(default=None, ge=0)
    # this check's own minimum: its samples may count other things than the rollout's
    # minSamples does (requests in the window, answers old enough to judge, users per arm)
    min_samples: int | None = Field(default=None, ge=0)

    @property
    def relative(self) -> bool:
        """True when the check compares the canary against the stable track."""
        return self.max_increase is not None or self.min_ratio is not None

    @model_validator(mode="after")
    def _has_bound(self) -> Check:
        if self.name == constants.DEPLOYMENT_CHECK:
            raise ValueError(
                f"check name {self.name!r} is reserved for the operator's availability check"
            )
        if all(b is None for b in (self.min, self.max, self.max_increase, self.min_ratio)):
            raise ValueError(f"check {self.name!r} needs min, max, maxIncrease or minRatio")
        if self.query is None and self.name not in BUILT_IN_CHECK_NAMES:
            raise ValueError(
                f"check {self.name!r} has no query and is not a built-in check "
                f"({', '.join(BUILT_IN_CHECK_NAMES)})"
            )
        return self


def default_checks() -> tuple[Check, ...]:
    """The checks used when ``spec.analysis`` is empty (ARCHITECTURE.md section 7)."""
    return (
        Check(name="success-rate", min=0.99),
        Check(name="latency-p95-seconds", max=0.4),
        Check(name="online-rmse", max_increase=0.05),
        Check(name="engagement", min_ratio=0.95),
        Check(name="fairness-disparity-ratio", min=0.8),
    )


class Rollout(_Camel):
    """How the canary walks: traffic steps, analysis interval and the judging thresholds."""

    steps: tuple[int, ...] = constants.DEFAULT_STEPS
    interval: str = constants.DEFAULT_INTERVAL
    analysis_window: str | None = None
    max_failed_checks: int = Field(default=constants.DEFAULT_MAX_FAILED_CHECKS, ge=1)
    min_samples: int = Field(default=constants.DEFAULT_MIN_SAMPLES, ge=0)
    inconclusive_deadline: str = constants.DEFAULT_INCONCLUSIVE_DEADLINE

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("steps must list at least one canary weight")
        if any(s < 1 or s > 100 for s in steps):
            raise ValueError(f"steps must be percentages from 1 to 100, got {list(steps)}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must be strictly increasing, got {list(steps)}")
        return steps

    @field_validator("interval", "analysis_window", "inconclusive_deadline")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def inconclusive_deadline_seconds(self) -> float:
        """How long the canary may stay inconclusive before it is rolled back."""
        return parse_duration(self.inconclusive_deadline)

    @property
    def window_seconds(self) -> float:
        """The PromQL range each check looks back over (defaults to the interval)."""
        return parse_duration(self.analysis_window or self.interval)


class ModelSpec(_Camel):
    """``spec`` of a RecommenderModel."""

    model_name: str = Field(min_length=1, max_length=256)
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    follow_alias: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,255}$")
    image: str | None = None
    replicas: int = Field(default=constants.DEFAULT_REPLICAS, ge=1, le=100)
    rollout: Rollout = Rollout()
    analysis: tuple[Check, ...] = ()
    force_promote: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.version is None) == (self.follow_alias is None):
            raise ValueError("set exactly one of version (pin) or followAlias (follow an alias)")
        names = [c.name for c in self.analysis]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"analysis check names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def checks(self) -> tuple[Check, ...]:
        """The checks to run: the spec's own, or the defaults when it lists none."""
        return self.analysis or default_checks()


def parse_spec(raw: Mapping[str, Any]) -> ModelSpec:
    """Parse ``spec`` or raise :class:`SpecError` with every problem on one line."""
    try:
        return ModelSpec.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SpecError(f"invalid spec: {problems}") from exc
