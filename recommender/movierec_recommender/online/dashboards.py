"""Grafana dashboards as typed Python, written as the chart's JSON (`charts/movierec/files/dashboards`).

`python -m movierec_recommender.online.dashboards OUT_DIR` regenerates the files; a test checks
the committed JSON equals this module's output and runs every panel's query on a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # the chart provisions this uid
WIDTH = 24  # Grafana's grid
ARM = "{{track}} v{{model_version}}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: Literal["timeseries", "stat"] = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    thresholds: tuple[tuple[str, float | None], ...] = ()  # (colour, from value), first from None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = ("movierec",)
    links: tuple[str, ...] = field(default_factory=tuple)

    def panels(self) -> Iterator[Panel]:
        for row in self.rows:
            yield from row.panels

    def to_json(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        next_id, y = 1, 0
        for row in self.rows:
            out.append(
                {
                    "type": "row",
                    "id": next_id,
                    "title": row.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                    "panels": [],
                }
            )
            next_id, y, x, row_height = next_id + 1, y + 1, 0, 0
            for panel in row.panels:
                if x + panel.width > WIDTH:
                    x, y, row_height = 0, y + row_height, 0
                out.append(_panel_json(panel, next_id, x, y))
                next_id, x, row_height = next_id + 1, x + panel.width, max(row_height, panel.height)
            y += row_height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "links": [{"title": "movierec dashboards", "type": "dashboards", "tags": ["movierec"]}],
            "templating": {"list": []},
            "annotations": {"list": []},
            "panels": out,
        }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for c, v in panel.thresholds],
        }
    body: dict[str, Any] = {
        "type": panel.kind,
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
            }
            for i, q in enumerate(panel.queries)
        ],
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    else:
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    return body


def _q(expr: str, legend: str = "") -> tuple[Query, ...]:
    return (Query(expr, legend),)


RED_GREEN = (("red", None), ("green", 0.8))

SERVICE = Dashboard(
    uid="movierec-service",
    title="movierec / service",
    description="Traffic, latency, errors, shedding and uptime of the recommendation API.",
    rows=(
        Row(
            "Traffic and errors",
            (
                Panel(
                    "Requests per second by component and status",
                    _q(
                        "sum by (component, status) (rate(movierec_requests_total[5m]))",
                        "{{component}} {{status}}",
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Availability (share of answers that are not 5xx, 5m)",
                    _q("1 - component:movierec_request_errors:ratio_rate5m", "{{component}}"),
                    description="Objective 99.5%; alerts burn the error budget over 5m to 3d.",
                    unit="percentunit",
                    max=1,
                ),
                Panel(
                    "Requests by track and model version",
                    _q(
                        'sum by (track, model_version) (rate(movierec_requests_total{component="recommender"}[5m]))',
                        ARM,
                    ),
                    unit="reqps",
                ),
                Panel(
                    "Answers within 800 ms (5m)",
                    _q("1 - component:movierec_request_slow:ratio_rate5m", "{{component}}"),
                    description="Objective 99% within 800 ms, the course's success criterion.",
                    unit="percentunit",
                    max=1,
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Latency percentiles (recommender)",
                    tuple(
                        Query(
                            f"histogram_quantile({q}, sum by (le) (rate("
                            'movierec_request_latency_seconds_bucket{component="recommender"}[5m])))',
                            f"p{round(q * 100)}",
                        )
                        for q in (0.5, 0.95, 0.99)
                    ),
                    unit="s",
                    width=24,
                ),
            ),
        ),
        Row(
            "Degradation",
            (
                Panel(
                    "Requests shed (fast 503) per second by reason",
                    _q(
                        "sum by (reason) (rate(movierec_load_shed_total[5m])) or vector(0)",
                        "{{reason}}",
                    ),
                    description="0 when nothing is shed (the counter appears on the first shed request).",
                    unit="reqps",
                ),
                Panel(
                    "Fallback answers per second by reason",
                    _q(
                        "sum by (reason) (rate(movierec_fallbacks_total[5m])) or vector(0)",
                        "{{reason}}",
                    ),
                    description="Unknown users, slow paths: answered from fallback lists.",
                    unit="reqps",
                ),
            ),
        ),
        Row(
            "Uptime",
            (
                Panel(
                    "Targets up",
                    _q("sum by (job) (up)", "{{job}}"),
                    kind="stat",
                    width=8,
                ),
                Panel(
                    "Uptime over 1h by target",
                    _q("avg_over_time(up[1h])", "{{job}} {{instance}}"),
                    unit="percentunit",
                    max=1,
                    width=16,
                ),
            ),
        ),
    ),
)

MODELS = Dashboard(
    uid="movierec-models",
    title="movierec / models",
    description="Online quality per track and model version, the A/B comparison, and rollouts.",
    rows=(
        Row(
            "Online quality per arm",
            (
                Panel(
                    "Online RMSE (served version's prediction vs later rating)",
                    _q("movierec_online_rmse", ARM),
                    description="Lower is better. Needs ratings given after the exposure.",
                ),
                Panel(
                    "Engagement: share of recommended movies watched",
                    _q('movierec_engagement_rate{group="all"}', ARM),
                    unit="percentunit",
                ),
                Panel(
                    "Completion: share of a started movie watched",
                    _q("movierec_engagement_completion", ARM),
                    unit="percentunit",
                ),
                Panel(
                    "Success (status 200 within 800 ms, from provenance)",
                    _q("movierec_online_success_rate", ARM),
                    unit="percentunit",
                    max=1,
                ),
                Panel(
                    "Answers and users in the evaluation window",
                    (
                        Query("movierec_online_requests", "answers " + ARM),
                        Query("movierec_online_users", "users " + ARM),
                        Query("movierec_engagement_samples", "engagement judged on " + ARM),
                    ),
                    description="Engagement counts answers at least one engagement window old.",
                ),
                Panel(
                    "Ratings behind the online RMSE",
                    _q("movierec_online_rmse_samples", ARM),
                ),
            ),
        ),
        Row(
            "A/B comparison (per-user engagement, Welch)",
            (
                Panel(
                    "Effect (B - A) with 95% interval",
                    (
                        Query("movierec_ab_effect", "effect {{experiment}}"),
                        Query("movierec_ab_effect_ci_low", "low {{experiment}}"),
                        Query("movierec_ab_effect_ci_high", "high {{experiment}}"),
                    ),
                ),
                Panel(
                    "p-value",
                    _q("movierec_ab_p_value", "{{experiment}}"),
                    kind="stat",
                    width=6,
                    thresholds=(("green", None), ("orange", 0.05)),
                ),
                Panel(
                    "Verdict",
                    _q("movierec_ab_verdict == 1", "{{verdict}}"),
                    description="inconclusive until both arms have the users the power needs.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Users per arm, and still needed for the power",
                    (
                        Query("movierec_ab_samples", "{{experiment}} {{arm}}"),
                        Query("movierec_ab_samples_needed", "{{experiment}} needed"),
                    ),
                    width=24,
                ),
            ),
        ),
        Row(
            "Rollouts",
            (
                Panel(
                    "Canary weight (percent of users)",
                    _q("movierec_rollout_canary_weight", "{{model}}"),
                    unit="percent",
                    max=100,
                ),
                Panel(
                    "Rollout phase",
                    _q("movierec_rollout_phase == 1", "{{model}} {{phase}}"),
                    kind="stat",
                ),
                Panel(
                    "Model versions served",
                    _q(
                        "count by (model_version, algo) (movierec_model_info == 1)",
                        "v{{model_version}} {{algo}}",
                    ),
                    kind="stat",
                    width=24,
                ),
            ),
        ),
    ),
)

DATA = Dashboard(
    uid="movierec-data",
    title="movierec / data",
    description="Ingestion rate and lag, dead letters, drift and poisoning quarantine.",
    rows=(
        Row(
            "Ingestion",
            (
                Panel(
                    "Events ingested per second by type",
                    _q("sum by (type) (rate(movierec_ingest_events_total[1h]))", "{{type}}"),
                    description="CronJob runs push their totals: rates are over an hour.",
                    unit="ops",
                ),
                Panel(
                    "Ingest lag (age of the newest event of the last batch)",
                    _q("max(movierec_ingest_lag_seconds)", "lag"),
                    unit="s",
                ),
                Panel(
                    "Messages waiting in Kafka",
                    _q("sum(movierec_ingest_consumer_lag_messages)", "backlog"),
                ),
                Panel(
                    "Time since the last committed batch",
                    _q("time() - max(movierec_ingest_last_success_timestamp_seconds)", "age"),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Dead letters",
            (
                Panel(
                    "Dead letters by reason (total)",
                    _q("sum by (reason) (movierec_ingest_dead_letters_total)", "{{reason}}"),
                    width=24,
                ),
            ),
        ),
        Row(
            "Data quality gate",
            (
                Panel(
                    "Drift effect by feature and test",
                    _q("movierec_drift_score", "{{feature}} {{test}}"),
                    description="PSI, Cramér's V, KS D; the gate fails above 0.25.",
                    thresholds=(("green", None), ("orange", 0.1), ("red", 0.25)),
                ),
                Panel(
                    "Quarantined suspect accounts by target movie",
                    _q("movierec_poisoning_suspects", "{{movie}}"),
                ),
                Panel(
                    "Quality gate passed",
                    _q("max(movierec_quality_gate_passed)", "passed"),
                    kind="stat",
                    width=24,
                    thresholds=(("red", None), ("green", 1)),
                ),
            ),
        ),
    ),
)

FAIRNESS = Dashboard(
    uid="movierec-fairness",
    title="movierec / fairness and feedback loops",
    description="Engagement across demographic groups and signs of the recommender feeding itself.",
    rows=(
        Row(
            "Fairness",
            (
                Panel(
                    "Disparity ratio (lowest / highest group engagement)",
                    _q("movierec_fairness_disparity_ratio", "{{attribute}} " + ARM),
                    description="1 is parity; the alert and the rollout check want at least 0.8.",
                    min=0,
                    max=1,
                    thresholds=RED_GREEN,
                ),
                Panel(
                    "Engagement by group",
                    _q('movierec_engagement_rate{group!="all"}', "{{group}} " + ARM),
                    unit="percentunit",
                ),
                Panel(
                    "Worst-off group against stable (engagement in the group, track / stable)",
                    _q("movierec_fairness_group_ratio", "{{attribute}} " + ARM),
                    description="Below 1: some group engages less under this track than under "
                    "stable; the fairness-group-ratio rollout check reads it.",
                    min=0,
                    thresholds=RED_GREEN,
                    width=24,
                ),
            ),
        ),
        Row(
            "Feedback loops",
            (
                Panel(
                    "Exposure Gini (0: every movie shown equally)",
                    _q("movierec_exposure_gini", ARM),
                    min=0,
                    max=1,
                ),
                Panel(
                    "Share of slots given to the most popular 5% of movies",
                    _q("movierec_popular_share", ARM),
                    unit="percentunit",
                ),
                Panel(
                    "Catalogue coverage",
                    _q("movierec_catalogue_coverage", ARM),
                    unit="percentunit",
                ),
                Panel(
                    "Self-confirmation: new ratings on movies recommended before",
                    _q("movierec_self_confirmation_ratio", ARM),
                    unit="percentunit",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (SERVICE, MODELS, DATA, FAIRNESS)


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard.to_json(), indent=2, ensure_ascii=False) + "\n"


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dashboard in DASHBOARDS:
        path = folder / f"{dashboard.uid}.json"
        path.write_text(render(dashboard), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="folder for the JSON files")
    for path in write_all(parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
