"""Pure decisions of the pipeline: which candidate becomes the challenger, and whether it replaces
the champion. Both are table-tested; docs/training-pipeline.md states the same rules in prose."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from movierec_recommender.pipeline.config import PromotionRule
from movierec_recommender.pipeline.evaluate import FAIRNESS

RMSE, NDCG = "rmse", "ndcg@10"
COVERAGE, POPULAR_SHARE = "coverage", "popular_share"

PROMOTED, REJECTED, FORCED, FIRST = "promoted", "rejected", "forced", "first"


@dataclass(frozen=True)
class Decision:
    """Whether the challenger becomes champion, and a sentence a person can read."""

    promote: bool
    outcome: str  # promoted | rejected | forced | first
    reason: str


def select_best(candidates: Sequence[tuple[str, Mapping[str, float]]]) -> str:
    """The candidate (name, holdout metrics) to register: lowest RMSE; ties within 1e-9 go to the
    higher NDCG@10, then to the name, so the choice never depends on training order."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    best = min(
        candidates,
        key=lambda c: (round(c[1][RMSE], 9), -c[1].get(NDCG, 0.0), c[0]),
    )
    return best[0]


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    rule: PromotionRule,
    *,
    force_reason: str | None = None,
) -> Decision:
    """Promote when there is no champion, when forced, or when the challenger beats the champion
    on the same holdout: RMSE lower by at least ``min_rmse_gain`` (and strictly lower); NDCG@10,
    catalogue coverage, popularity share and the fairness ratio not worse beyond their tolerances
    (each compared when both sides have it: older champions may lack the newer metrics)."""
    if force_reason is not None:
        return Decision(True, FORCED, f"forced: {force_reason}")
    if champion is None:
        return Decision(True, FIRST, "no champion yet: the first challenger becomes champion")

    gain = champion[RMSE] - challenger[RMSE]
    failures = []
    if not (gain > 0 and gain >= rule.min_rmse_gain):
        failures.append(
            f"RMSE {challenger[RMSE]:.4f} vs champion {champion[RMSE]:.4f} "
            f"(gain {gain:+.4f}, need >= {rule.min_rmse_gain:g})"
        )
    if challenger[NDCG] < champion[NDCG] - rule.ndcg_tolerance:
        failures.append(f"NDCG@10 {challenger[NDCG]:.4f} < champion {champion[NDCG]:.4f}")
    both = set(challenger) & set(champion)
    if COVERAGE in both and challenger[COVERAGE] < champion[COVERAGE] - rule.coverage_tolerance:
        failures.append(
            f"coverage {challenger[COVERAGE]:.3f} < champion {champion[COVERAGE]:.3f} "
            f"(tolerance {rule.coverage_tolerance:g})"
        )
    popular_limit = champion.get(POPULAR_SHARE, 0.0) + rule.popular_share_tolerance
    if POPULAR_SHARE in both and challenger[POPULAR_SHARE] > popular_limit:
        failures.append(
            f"popularity share {challenger[POPULAR_SHARE]:.3f} > champion "
            f"{champion[POPULAR_SHARE]:.3f} (tolerance {rule.popular_share_tolerance:g})"
        )
    fairness_note = ""
    if FAIRNESS in challenger and FAIRNESS in champion:
        if challenger[FAIRNESS] < champion[FAIRNESS] - rule.fairness_tolerance:
            failures.append(
                f"fairness ratio {challenger[FAIRNESS]:.3f} < champion {champion[FAIRNESS]:.3f}"
            )
    else:
        fairness_note = "; fairness not compared (no user metadata)"
    if failures:
        return Decision(False, REJECTED, "not better than champion: " + "; ".join(failures))
    return Decision(
        True,
        PROMOTED,
        f"beats champion: RMSE {challenger[RMSE]:.4f} vs {champion[RMSE]:.4f}, "
        f"NDCG@10 {challenger[NDCG]:.4f} vs {champion[NDCG]:.4f}{fairness_note}",
    )
