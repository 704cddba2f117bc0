"""The demo report's figures (matplotlib, headless), one function per dashboard view."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

Figures = list[tuple[str, str]]  # (title, base64 PNG)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def service(store: dict[str, Any]) -> Figures:
    """Traffic per track over the live phase; latency as served (provenance) and as seen by users."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for track, buckets in sorted(store.get("traffic_per_s", {}).items()):
        xs = list(range(max(int(k) for k in buckets) + 1))
        ys = [buckets.get(str(x), 0) for x in xs]
        axes[0].step(xs, ys, where="post", label=track)
    axes[0].set_xlabel("seconds into the live phase")
    axes[0].set_ylabel("answers / s")
    axes[0].set_title("Traffic by track (stored provenance)")
    axes[0].legend()
    for name, key in (("served", "served_latency_ms"), ("client", "client_latency_ms")):
        for track, lat in sorted(store.get(key, {}).items()):
            if lat:
                axes[1].hist(np.asarray(lat), bins=40, alpha=0.5, label=f"{track} ({name})")
    axes[1].set_xlabel("latency (ms)")
    axes[1].set_ylabel("answers")
    axes[1].set_title("Latency: in the service vs at the client")
    axes[1].legend(fontsize=7)
    return [("Traffic and latency", _png(fig))]


def models(offline: dict[str, dict[str, float]], tracks: dict[str, Any]) -> Figures:
    plt = _plt()
    names = sorted(tracks)
    if not names:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    x = np.arange(len(names))
    axes[0].bar(x - 0.2, [offline.get(t, {}).get("rmse", np.nan) for t in names], 0.4,
                label="offline (holdout)")  # fmt: skip
    axes[0].bar(x + 0.2, [_nan(tracks[t]["online_rmse"]) for t in names], 0.4,
                label="online (later ratings)")  # fmt: skip
    axes[0].set_xticks(x, names)
    axes[0].set_title("RMSE per track")
    axes[0].legend()
    axes[1].bar(x - 0.2, [_nan(tracks[t]["engagement_rate"]) for t in names], 0.4,
                label="engagement")  # fmt: skip
    axes[1].bar(x + 0.2, [_nan(tracks[t]["completion"]) for t in names], 0.4, label="completion")
    axes[1].set_xticks(x, names)
    axes[1].set_title("Engagement per track")
    axes[1].legend()
    return [("Online RMSE and engagement", _png(fig))]


def data(dead_letters: dict[str, int]) -> Figures:
    if not dead_letters:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(dead_letters) + 1))
    reasons = list(dead_letters)
    ax.barh(reasons, [dead_letters[r] for r in reasons])
    ax.invert_yaxis()
    ax.set_xlabel("dead letters")
    return [("Dead letters by reason", _png(fig))]


def fairness(tracks: dict[str, Any]) -> Figures:
    plt = _plt()
    names = sorted(tracks)
    if not names:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    width = 0.8 / len(names)
    for ax, attr in zip(axes[:2], ("age_group", "gender"), strict=True):
        groups = sorted({g for t in names for g in tracks[t]["engagement_by_group"].get(attr, {})})
        for i, t in enumerate(names):
            rates = tracks[t]["engagement_by_group"].get(attr, {})
            ax.bar(np.arange(len(groups)) + i * width, [rates.get(g, 0.0) for g in groups],
                   width, label=t)  # fmt: skip
        ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, groups)
        ax.set_title(f"Engagement by {attr.replace('_', ' ')}")
        ax.legend(fontsize=7)
    signals = ("exposure_gini", "popular_share", "coverage", "self_confirmation")
    for i, t in enumerate(names):
        axes[2].bar(np.arange(len(signals)) + i * width,
                    [_nan(tracks[t].get(s)) for s in signals], width, label=t)  # fmt: skip
    axes[2].set_xticks(np.arange(len(signals)) + width * (len(names) - 1) / 2,
                       ["Gini", "popular", "coverage", "self-conf."])  # fmt: skip
    axes[2].set_title("Feedback-loop signals")
    axes[2].legend(fontsize=7)
    return [("Fairness and feedback loops", _png(fig))]
