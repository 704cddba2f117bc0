"""The pipeline's pure parts: promotion rule, candidate choice, demographic groups, fairness ratio,
data hash, and the CLI's refusal of bad options (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from movierec_recommender.data import RatingsData
from movierec_recommender.pipeline.config import PromotionRule
from movierec_recommender.pipeline.demographics import age_bucket, build_groups
from movierec_recommender.pipeline.evaluate import group_ratio
from movierec_recommender.pipeline.lineage import data_sha256, snapshot
from movierec_recommender.pipeline.promotion import decide, select_best

from movierec.cli import main

CHAMP = {"rmse": 0.90, "ndcg@10": 0.30, "fairness_ratio": 0.80}
RULE = PromotionRule(min_rmse_gain=0.01)


@pytest.mark.parametrize(
    ("challenger", "champion", "force", "outcome"),
    [
        (CHAMP, None, None, "first"),
        ({"rmse": 2.0, "ndcg@10": 0.0}, CHAMP, "hotfix", "forced"),
        ({"rmse": 0.88, "ndcg@10": 0.30, "fairness_ratio": 0.80}, CHAMP, None, "promoted"),
        ({"rmse": 0.895, "ndcg@10": 0.40, "fairness_ratio": 0.90}, CHAMP, None, "rejected"),
        ({"rmse": 0.80, "ndcg@10": 0.29, "fairness_ratio": 0.90}, CHAMP, None, "rejected"),
        ({"rmse": 0.80, "ndcg@10": 0.35, "fairness_ratio": 0.79}, CHAMP, None, "rejected"),
        ({"rmse": 0.80, "ndcg@10": 0.35}, CHAMP, None, "promoted"),  # no metadata: not compared
        ({"rmse": 0.95, "ndcg@10": 0.35, "fairness_ratio": 0.9}, CHAMP, None, "rejected"),
        # ranking guards: coverage may drop and popularity share rise by at most 0.05
        ({**CHAMP, "rmse": 0.8, "coverage": 0.10}, {**CHAMP, "coverage": 0.20}, None, "rejected"),
        ({**CHAMP, "rmse": 0.8, "coverage": 0.16}, {**CHAMP, "coverage": 0.20}, None, "promoted"),
        (
            {**CHAMP, "rmse": 0.8, "popular_share": 0.9},
            {**CHAMP, "popular_share": 0.7},
            None,
            "rejected",
        ),
        (
            {**CHAMP, "rmse": 0.8, "popular_share": 0.74},
            {**CHAMP, "popular_share": 0.7},
            None,
            "promoted",
        ),
    ],
)
def test_promotion_rule(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    force: str | None,
    outcome: str,
) -> None:
    decision = decide(challenger, champion, RULE, force_reason=force)
    assert decision.outcome == outcome
    assert decision.promote is (outcome != "rejected")
    if force:
        assert force in decision.reason


def test_equal_rmse_is_not_a_win_even_with_no_margin() -> None:
    decision = decide(CHAMP, CHAMP, PromotionRule(min_rmse_gain=0.0))
    assert not decision.promote and "RMSE" in decision.reason


def test_rejection_names_every_failed_condition() -> None:
    reason = decide({"rmse": 1.0, "ndcg@10": 0.1, "fairness_ratio": 0.1}, CHAMP, RULE).reason
    assert "RMSE" in reason and "NDCG@10" in reason and "fairness" in reason


def test_the_lowest_rmse_is_registered_ties_go_to_ndcg_then_name() -> None:
    assert select_best([("user-user", {"rmse": 0.9}), ("item-item", {"rmse": 0.8})]) == "item-item"
    tied = [
        ("user-user", {"rmse": 0.8, "ndcg@10": 0.4}),
        ("item-item", {"rmse": 0.8, "ndcg@10": 0.3}),
    ]
    assert select_best(tied) == "user-user"
    same = [
        ("user-user", {"rmse": 0.8, "ndcg@10": 0.3}),
        ("item-item", {"rmse": 0.8, "ndcg@10": 0.3}),
    ]
    assert select_best(same) == select_best(same[::-1]) == "item-item"


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (None, None),
        (float("nan"), None),
        (0, None),
        (12, "<18"),
        (18, "18-24"),
        (24, "18-24"),
        (25, "25-34"),
        (44, "35-44"),
        (55, "45-55"),
        (56, "56+"),
        (99, "56+"),
        (150, None),
    ],
)
def test_age_buckets(age: float | None, band: str | None) -> None:
    assert age_bucket(age) == band


def test_groups_skip_unknown_metadata_and_attributes_nobody_has() -> None:
    groups = build_groups([(1, 30, "m"), (2, None, " F "), (3, 70, None)])
    assert groups == {"age": {"1": "25-34", "3": "56+"}, "gender": {"1": "M", "2": "F"}}
    assert build_groups([(1, None, None)]) == {}


def test_fairness_ratio_is_worst_over_best_group() -> None:
    assert group_ratio({"M": 0.2, "F": 0.4}) == pytest.approx(0.5)
    assert group_ratio({"M": 0.2}) is None  # one group: nothing to compare
    assert group_ratio({"M": 0.0, "F": 0.0}) is None  # no signal at all


def _data(rows: list[tuple[str, str, float, int]]) -> RatingsData:
    users, movies, ratings, times = zip(*rows, strict=True)
    return RatingsData.from_arrays(users, movies, ratings, times)


def test_data_hash_ignores_row_order_and_sees_any_change() -> None:
    rows = [("1", "a", 4.0, 10), ("2", "b", 3.0, 20), ("1", "b", 5.0, 30)]
    base = data_sha256(_data(rows))
    assert data_sha256(_data(rows[::-1])) == base
    assert data_sha256(_data([*rows[:2], ("1", "b", 4.0, 30)])) != base
    assert data_sha256(_data([*rows[:2], ("1", "b", 5.0, 31)])) != base
    lineage = snapshot(_data(rows), source="db")
    assert (lineage.rows, lineage.users, lineage.movies) == (3, 2, 2)
    assert (lineage.time_min, lineage.time_max) == ("1970-01-01T00:00:10Z", "1970-01-01T00:00:30Z")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--force-promote"], "--reason"),
        (["--force-promote", "--reason", "  "], "--reason"),
        (["--holdout-fraction", "1.5"], "holdout_fraction"),
        (["--min-rmse-gain", "-1"], "min_rmse_gain"),
    ],
)
def test_bad_options_exit_2_before_touching_anything(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/never-created.db"
    code = main(["retrain", "--db", db, "--name", "m", "--tracking-uri", db, *options])
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither database was created


def test_promote_needs_a_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/never-created.db"
    code = main(
        ["promote", "--name", "m", "--version", "1", "--reason", " ", "--tracking-uri", uri]
    )
    assert code == 2
    assert "--reason" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one data source"),
        ({"db_url": "sqlite://", "ratings_csv": "r.csv"}, "exactly one data source"),
        ({"ratings_csv": "r.csv", "promote": False}, "quality gate needs the database"),
        ({"ratings_csv": "r.csv", "gate": False}, "promotion needs a registered model name"),
    ],
)
def test_one_pipeline_config_refuses_impossible_step_sets(
    options: dict[str, object], message: str
) -> None:
    from movierec_recommender.pipeline.config import PipelineConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        PipelineConfig.model_validate(options)
    # `train` = the same pipeline with gate and promotion off
    assert not PipelineConfig(ratings_csv="r.csv", gate=False, promote=False).promote
