"""The demo's HTML report: summary tables and plots (latency, offline vs online, engagement by group)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def plots(
    latencies: dict[str, list[float]], offline: dict[str, dict[str, float]], online: dict[str, Any]
) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each figure; matplotlib runs headless."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: list[tuple[str, str]] = []
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for track, lat in sorted(latencies.items()):
        if lat:
            ax.hist(np.asarray(lat), bins=40, alpha=0.6, label=track)
    ax.set_xlabel("latency seen by the client (ms)")
    ax.set_ylabel("requests")
    ax.legend()
    figs.append(("Latency by track", _png(fig)))
    plt.close(fig)

    tracks = sorted(online.get("tracks", {}))
    if tracks:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        off = [offline.get(t, {}).get("rmse", np.nan) for t in tracks]
        onl = [online["tracks"][t].get("online_rmse") or np.nan for t in tracks]
        x = np.arange(len(tracks))
        axes[0].bar(x - 0.2, off, 0.4, label="offline (holdout)")
        axes[0].bar(x + 0.2, onl, 0.4, label="online (later ratings)")
        axes[0].set_xticks(x, tracks)
        axes[0].set_title("RMSE")
        axes[0].legend()
        eng = [online["tracks"][t].get("engagement_rate") or 0.0 for t in tracks]
        ndcg = [offline.get(t, {}).get("ndcg@10", np.nan) for t in tracks]
        axes[1].bar(x - 0.2, ndcg, 0.4, label="offline NDCG@10")
        axes[1].bar(x + 0.2, eng, 0.4, label="online engagement")
        axes[1].set_xticks(x, tracks)
        axes[1].set_title("Ranking quality")
        axes[1].legend()
        figs.append(("Offline vs online", _png(fig)))
        plt.close(fig)

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, attr in zip(axes, ("age_group", "gender"), strict=True):
            groups = sorted(
                {
                    g
                    for t in tracks
                    for g in online["tracks"][t]["engagement_by_group"].get(attr, {})
                }
            )
            width = 0.8 / max(len(tracks), 1)
            for i, t in enumerate(tracks):
                rates = online["tracks"][t]["engagement_by_group"].get(attr, {})
                ax.bar(
                    np.arange(len(groups)) + i * width,
                    [rates.get(g, 0.0) for g in groups],
                    width,
                    label=t,
                )
            ax.set_xticks(np.arange(len(groups)) + width * (len(tracks) - 1) / 2, groups)
            ax.set_title(f"Engagement by {attr.replace('_', ' ')}")
            ax.legend()
        figs.append(("Engagement by group (fairness)", _png(fig)))
        plt.close(fig)
    return figs


def write_report(path: Path, summary: dict[str, Any], latencies: dict[str, list[float]]) -> Path:
    """Write a self-contained HTML report (plots inlined) and return its path."""
    offline = summary.get("offline", {})
    online = summary.get("online", {})
    sections = [f"<h1>movierec demo report</h1><p>{html.escape(summary.get('title', ''))}</p>"]
    sections.append("<h2>Pipeline</h2>" + _table(summary.get("steps", [])))
    sections.append(
        "<h2>Offline evaluation (time-based holdout)</h2>"
        + _table([{"algo": a, **m} for a, m in sorted(offline.items())])
    )
    track_rows = []
    for t, r in sorted(online.get("tracks", {}).items()):
        track_rows.append(
            {
                "track": t,
                "model versions": ",".join(r["model_versions"]),
                "requests": r["requests"],
                "success rate": r["success_rate"],
                "p50 ms": r["latency_p50_ms"],
                "p99 ms": r["latency_p99_ms"],
                "share watched": r["engagement_rate"],
                "any watched": r["session_engagement_rate"],
                "online RMSE": r["online_rmse"],
                "RMSE n": r["rmse_samples"],
                "disparity (age)": r["disparity"].get("age_group"),
                "disparity (gender)": r["disparity"].get("gender"),
                "exposure Gini": r["exposure_gini"],
            }
        )
    sections.append("<h2>Online evaluation per track</h2>" + _table(track_rows))
    ab_rows = [
        {
            "experiment": ab["experiment"],
            "share watched a": ab["user_level"]["mean_a"],
            "share watched b": ab["user_level"]["mean_b"],
            "p (per-user Welch)": ab["user_level"]["p_value"],
            "any watched a": ab["request_level"]["rate_a"],
            "any watched b": ab["request_level"]["rate_b"],
            "diff 95% CI": f"[{_fmt(ab['request_level']['ci_low'])}, {_fmt(ab['request_level']['ci_high'])}]",
            "p (answers, z)": ab["request_level"]["p_value"],
        }
        for ab in online.get("ab", [])
    ]
    sections.append("<h2>A/B test</h2>" + _table(ab_rows))
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
    sections.append("<h2>Personalised vs most popular (live, effect size)</h2>" + _table(versus))
    for title, png in plots(latencies, offline, online):
        sections.append(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{png}'/>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th{background:#f3f3f3}"
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>movierec demo</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>",
        encoding="utf-8",
    )
    return path
