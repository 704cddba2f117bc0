"""The operator's own rollout metrics (ARCHITECTURE.md section 8)."""

from __future__ import annotations

from movierec_operator.constants import Phase
from movierec_operator.metrics import RolloutMetrics


def test_rollout_metrics_show_weight_and_exactly_one_phase() -> None:
    metrics = RolloutMetrics()
    metrics.observe("prod/movies", Phase.PROGRESSING, 25)
    metrics.observe("prod/movies", Phase.HOLDING, 25)
    get = metrics.registry.get_sample_value
    assert get("movierec_rollout_canary_weight", {"model": "prod/movies"}) == 25
    phases = {
        p: get("movierec_rollout_phase", {"model": "prod/movies", "phase": str(p)}) for p in Phase
    }
    assert phases == {p: (1.0 if p == Phase.HOLDING else 0.0) for p in Phase}
