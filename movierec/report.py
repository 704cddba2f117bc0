"""The demo's HTML report: the Grafana dashboards' four views as tables and plots, and where each
dashboard lives in a real install."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from movierec_recommender.online import dashboards

from movierec import report_plots

GRAFANA = "<grafana>"  # the base URL of the install's Grafana
# report section -> the generated dashboard showing the same view in a real install
VIEWS = (
    ("service", dashboards.SERVICE),
    ("models", dashboards.MODELS),
    ("data", dashboards.DATA),
    ("fairness", dashboards.FAIRNESS),
)


def grafana_location(dashboard: dashboards.Dashboard) -> str:
    return (
        f"{GRAFANA}/d/{dashboard.uid} ('{dashboard.title}', folder movierec; "
        f"charts/movierec/files/dashboards/{dashboard.uid}.json)"
    )


def print_grafana() -> None:
    print("\nIn a real install (the chart provisions these Grafana dashboards):")
    for view, dashboard in VIEWS:
        print(f"  {view:<9} {grafana_location(dashboard)}")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(dict.fromkeys(c for r in rows for c in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figures(figs: report_plots.Figures) -> str:
    return "".join(
        f"<h3>{html.escape(t)}</h3><img src='data:image/png;base64,{png}'/>" for t, png in figs
    )


def _service(summary: dict[str, Any]) -> str:
    tracks = summary.get("online", {}).get("tracks", {})
    rows = [
        {
            "track": t,
            "answers": r["requests"],
            "users": r["users"],
            "success (200 within 800 ms)": r["success_rate"],
            "p50 ms": r.get("latency_p50_ms"),
            "p95 ms": r.get("latency_p95_ms"),
            "p99 ms": r.get("latency_p99_ms"),
            "client errors": summary.get("live_clients", {}).get(t, {}).get("errors"),
        }
        for t, r in sorted(tracks.items())
    ]
    counters = [
        {"service": name, **{k: int(v) for k, v in sorted(c.items())}}
        for name, c in sorted(summary.get("service_counters", {}).items())
    ]
    return (
        "<h3>Answers and latency per track (stored provenance)</h3>"
        + _table(rows)
        + "<h3>Errors, shedding and fallbacks (each service's /metrics counters)</h3>"
        + _table(counters)
        + _figures(report_plots.service(summary.get("store", {})))
    )


def _models(summary: dict[str, Any]) -> str:
    offline = summary.get("offline", {})
    online = summary.get("online", {})
    keys = ("model_version", "requests", "users", "online_rmse", "rmse_samples",
            "engagement_rate", "engagement_samples", "completion", "success_rate")  # fmt: skip
    per_track = [
        {"track": t, **{k: r.get(k) for k in keys}} for t, r in sorted(online["tracks"].items())
    ]
    versus = [
        {
            "comparison": f"{e['a']} vs {e['b']}",
            "users": f"{e['users_a']} / {e['users_b']}",
            "share watched a": e["mean_a"],
            "share watched b": e["mean_b"],
            "difference": e["difference"],
            "Cohen's d": e["cohens_d"],
            "p (per-user Welch)": e["p_value"],
        }
        for e in summary.get("versus_popular", {}).values()
    ]
    return (
        "<h3>Offline evaluation (time-based holdout)</h3>"
        + _table([{"algo": a, **m} for a, m in sorted(offline.items())])
        + f"<h3>Online, per track (engagement window {_fmt(online.get('window_minutes'))} min)</h3>"
        + _table(per_track)
        + "<h3>A/B against the baseline track (the evaluator's test, unit: user)</h3>"
        + _table(online.get("ab", []))
        + "<h3>Personalised vs most popular (client outcomes, effect size)</h3>"
        + _table(versus)
        + _figures(report_plots.models(offline, online["tracks"]))
    )


def _data(summary: dict[str, Any]) -> str:
    quality = summary.get("quality", {})
    dead = summary.get("store", {}).get("dead_letters", {})
    drift = [
        {k: d.get(k) for k in ("feature", "test", "effect_name", "effect", "p_value", "severity")}
        for d in quality.get("drift", [])
    ]
    poisoning = {k: v for k, v in quality.get("poisoning", {}).items() if not isinstance(v, list)}
    for k, v in quality.get("poisoning", {}).items():
        if isinstance(v, list):
            poisoning[k] = len(v)
    return (
        "<h3>Ingested lines per source</h3>"
        + _table([{"source": k, **v} for k, v in summary.get("ingest", {}).items()])
        + "<h3>Dead letters by reason (store)</h3>"
        + _table([{"reason": r, "lines": n} for r, n in dead.items()])
        + f"<h3>Quality gate: {'passed' if quality.get('passed') else 'blocked'}; drift</h3>"
        + _table(drift)
        + "<h3>Poisoning quarantine</h3>"
        + _table([poisoning] if poisoning else [])
        + _figures(report_plots.data(dead))
    )


def _fairness(summary: dict[str, Any]) -> str:
    tracks = summary.get("online", {}).get("tracks", {})
    rows = [
        {
            "track": t,
            "disparity (age)": r["disparity"].get("age_group"),
            "disparity (gender)": r["disparity"].get("gender"),
            "exposure Gini": r["exposure_gini"],
            "popular share": r["popular_share"],
            "coverage": r["coverage"],
            "self-confirmation": r["self_confirmation"],
            "self-confirmation n": r["self_confirmation_samples"],
        }
        for t, r in sorted(tracks.items())
    ]
    return _table(rows) + _figures(report_plots.fairness(tracks))


def write_report(path: Path, summary: dict[str, Any]) -> Path:
    """Write a self-contained HTML report (plots inlined) and return its path."""
    sections = [f"<h1>movierec demo report</h1><p>{html.escape(summary.get('title', ''))}</p>"]
    sections.append("<h2>Pipeline</h2>" + _table(summary.get("steps", [])))
    render = {"service": _service, "models": _models, "data": _data, "fairness": _fairness}
    for view, dashboard in VIEWS:
        sections.append(
            f"<h2>{html.escape(dashboard.title)}</h2>"
            f"<p class='where'>In Grafana: {html.escape(grafana_location(dashboard))}</p>"
            + render[view](summary)
        )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th{background:#f3f3f3}.where{color:#555}"
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>movierec demo</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>",
        encoding="utf-8",
    )
    return path
