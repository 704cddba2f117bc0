"""Input series under which each alert of the chart must fire, and others under which it must not.

Series use promtool's expanding notation ("0+10x60": 0, 10, ... 600), one value per interval
(a minute unless the case says otherwise).
`labels` are the firing alert's labels without the rule's own (severity, slo), `value` the value
its annotations render.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    alert: str
    series: dict[str, str]
    eval_steps: int  # evaluate after this many intervals
    fires: bool
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0
    interval: str = "1m"  # of the series and of rule evaluation


def _requests(component: str, ok: int, errors: int, n: int = 130) -> dict[str, str]:
    return {
        f'movierec_requests_total{{component="{component}",status="200"}}': f"0+{ok}x{n}",
        f'movierec_requests_total{{component="{component}",status="503"}}': f"0+{errors}x{n}",
    }


def _latency(component: str, fast: int, total: int, n: int = 130) -> dict[str, str]:
    return {
        f'movierec_request_latency_seconds_bucket{{component="{component}",le="0.8"}}': f"0+{fast}x{n}",
        f'movierec_request_latency_seconds_count{{component="{component}"}}': f"0+{total}x{n}",
    }


POD = 'namespace="ml",pod="rec-1",instance="10.0.0.1:8082"'
UP = 'up{app="movierec-recommender",namespace="ml",job="movierec-pods",instance="10.0.0.%d:8082"}'
CANARY = 'track="canary",model_version="7"'
STABLE = 'track="stable",model_version="6"'

CASES = [
    # --- SLOs: 10% errors burn the 0.5% budget 20x; 1% burns it 2x (slow only) ---------------
    Case("MovierecAvailabilityBudgetBurnFast", _requests("router", 90, 10), 60, True,
         {"component": "router"}, 0.1),
    Case("MovierecAvailabilityBudgetBurnFast", _requests("router", 99, 1), 60, False),
    Case("MovierecAvailabilityBudgetBurnSlow", _requests("router", 99, 1), 125, True,
         {"component": "router"}, 0.01),
    Case("MovierecAvailabilityBudgetBurnSlow", _requests("router", 999, 1), 125, False),
    Case("MovierecLatencyBudgetBurnFast", _latency("recommender", 80, 100), 60, True,
         {"component": "recommender"}, 0.2),
    Case("MovierecLatencyBudgetBurnFast", _latency("recommender", 98, 100), 60, False),
    Case("MovierecLatencyBudgetBurnSlow", _latency("recommender", 98, 100), 125, True,
         {"component": "recommender"}, 0.02),
    Case("MovierecLatencyBudgetBurnSlow", _latency("recommender", 999, 1000), 125, False),
    # --- service ----------------------------------------------------------------------------------
    Case("MovierecRecommenderUnavailable", {UP % 1: "1 1 1 0 0 0 0 0"}, 7, True,
         {"namespace": "ml"}),
    # one of two pods down: the other still answers
    Case("MovierecRecommenderUnavailable", {UP % 1: "1 1 1 0 0 0 0 0", UP % 2: "1x8"}, 7, False),
    Case("MovierecHighErrorRate", _requests("recommender", 90, 10, 30), 15, True,
         {"component": "recommender"}, 0.1),
    Case("MovierecHighErrorRate", _requests("recommender", 99, 1, 30), 15, False),
    Case("MovierecLoadShedding",
         {f'movierec_load_shed_total{{{POD},reason="queue_full"}}': "0+5x30",
          f'movierec_requests_total{{{POD},component="recommender",status="200"}}': "0+100x30"},
         20, True, {"namespace": "ml", "pod": "rec-1", "instance": "10.0.0.1:8082"}, 0.05),
    Case("MovierecLoadShedding",
         {f'movierec_load_shed_total{{{POD},reason="queue_full"}}': "0x30",
          f'movierec_requests_total{{{POD},component="recommender",status="200"}}': "0+100x30"},
         20, False),
    Case("MovierecTargetDown", {'up{job="movierec-pods",instance="10.0.0.9:9108"}': "0x10"}, 6,
         True, {"job": "movierec-pods", "instance": "10.0.0.9:9108"}, 0),
    Case("MovierecTargetDown", {'up{job="movierec-pods",instance="10.0.0.9:9108"}': "1x10"}, 6,
         False),
    # --- data -------------------------------------------------------------------------------------
    Case("MovierecIngestLagHigh", {"movierec_ingest_lag_seconds": "1200x20"}, 15, True, {}, 1200),
    Case("MovierecIngestLagHigh", {"movierec_ingest_lag_seconds": "60x20"}, 15, False),
    # timestamps relative to promtool's clock, which starts at 0
    Case("MovierecIngestStalled", {"movierec_ingest_last_success_timestamp_seconds": "-20000x30"},
         20, True, {}, 21200),
    Case("MovierecIngestStalled", {"movierec_ingest_last_success_timestamp_seconds": "0+60x30"},
         20, False),
    Case("MovierecKafkaConsumerLag",
         {'movierec_ingest_consumer_lag_messages{partition="0"}': "20000x30"}, 20, True, {},
         20000),
    Case("MovierecKafkaConsumerLag",
         {'movierec_ingest_consumer_lag_messages{partition="0"}': "100x30"}, 20, False),
    Case("MovierecDeadLetterSpike",
         {'movierec_ingest_dead_letters_total{reason="bad_time"}': "0+10x30",
          'movierec_ingest_events_total{type="watch"}': "0+90x30"}, 25, True, {}, 0.1),
    Case("MovierecDeadLetterSpike",
         {'movierec_ingest_dead_letters_total{reason="bad_time"}': "0+1x30",
          'movierec_ingest_events_total{type="watch"}': "0+99x30"}, 25, False),
    Case("MovierecDriftDetected", {'movierec_drift_score{feature="rating",test="psi"}': "0.4x20"},
         10, True, {"feature": "rating", "test": "psi"}, 0.4),
    Case("MovierecDriftDetected", {'movierec_drift_score{feature="rating",test="psi"}': "0.1x20"},
         10, False),
    Case("MovierecPoisoningQuarantine",
         {'movierec_poisoning_suspects{movie="the+matrix+1999"}': "12x10"}, 5, True,
         {"movie": "the+matrix+1999"}, 12),
    Case("MovierecPoisoningQuarantine",
         {'movierec_poisoning_suspects{movie="the+matrix+1999"}': "0x10"}, 5, False),
    # --- models -----------------------------------------------------------------------------------
    Case("MovierecFairnessRatioLow",
         {f'movierec_fairness_disparity_ratio{{attribute="gender",{CANARY}}}': "0.6x60",
          f"movierec_online_requests{{{CANARY}}}": "500x60"}, 45, True,
         {"attribute": "gender", "track": "canary", "model_version": "7"}, 0.6),
    # as unfair, but too few answers to judge
    Case("MovierecFairnessRatioLow",
         {f'movierec_fairness_disparity_ratio{{attribute="gender",{CANARY}}}': "0.6x60",
          f"movierec_online_requests{{{CANARY}}}": "50x60"}, 45, False),
    Case("MovierecOnlineRMSECanaryRegression",
         {f"movierec_online_rmse{{{STABLE}}}": "1.0x30", f"movierec_online_rmse{{{CANARY}}}": "1.2x30",
          f"movierec_online_rmse_samples{{{CANARY}}}": "500x30"}, 20, True,
         {"track": "canary", "model_version": "7"}, 1.2),
    Case("MovierecOnlineRMSECanaryRegression",
         {f"movierec_online_rmse{{{STABLE}}}": "1.0x30", f"movierec_online_rmse{{{CANARY}}}": "1.02x30",
          f"movierec_online_rmse_samples{{{CANARY}}}": "500x30"}, 20, False),
    # hourly: two days of history at a minute's resolution would make promtool slow
    Case("MovierecOnlineRMSERegression",
         {f"movierec_online_rmse{{{STABLE}}}": "1x48 1.3x12",
          f"movierec_online_rmse_samples{{{STABLE}}}": "500x60"}, 55, True,
         {"model_version": "6"}, 1.3, "1h"),
    Case("MovierecOnlineRMSERegression",
         {f"movierec_online_rmse{{{STABLE}}}": "1x48 1.05x12",
          f"movierec_online_rmse_samples{{{STABLE}}}": "500x60"}, 55, False, interval="1h"),
    Case("MovierecEvaluatorStale",
         {"movierec_online_last_success_timestamp_seconds": "-2000x30"}, 10, True, {}, 2600),
    Case("MovierecEvaluatorStale",
         {"movierec_online_last_success_timestamp_seconds": "0+60x30"}, 10, False),
    Case("MovierecRolloutStuck",
         {'movierec_rollout_phase{model="movies",phase="Holding"}': "1x120",
          'movierec_rollout_canary_weight{model="movies"}': "10x120"}, 100, True,
         {"model": "movies"}, 1),
    # the weight stepped up 50 minutes ago: progressing, not stuck
    Case("MovierecRolloutStuck",
         {'movierec_rollout_phase{model="movies",phase="Holding"}': "1x120",
          'movierec_rollout_canary_weight{model="movies"}': "10x50 25x70"}, 100, False),
    Case("MovierecRolloutFailed",
         {'movierec_rollout_phase{model="movies",phase="Failed"}': "0 0 1 1 1 1"}, 5, True,
         {"model": "movies"}, 1),
    Case("MovierecRolloutFailed",
         {'movierec_rollout_phase{model="movies",phase="Failed"}': "0x10"}, 5, False),
    Case("MovierecRolloutRolledBack",
         {'movierec_rollout_phase{model="movies",phase="RolledBack"}': "0 0 1 1 1 1"}, 5, True,
         {"model": "movies"}, 1),
    Case("MovierecRolloutRolledBack",
         {'movierec_rollout_phase{model="movies",phase="RolledBack"}': "0x10"}, 5, False),
    Case("MovierecModelStale",
         {"movierec_retrain_last_success_timestamp_seconds": "-180000x30"}, 20, True, {}, 181200),
    Case("MovierecModelStale",
         {"movierec_retrain_last_success_timestamp_seconds": "0+60x30"}, 20, False),
]  # fmt: skip
