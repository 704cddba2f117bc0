"""A gate report as text a person reads at a terminal (pure formatting)."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def render(report: dict[str, Any], passed: bool) -> str:
    """Verdict first, then what blocked, then every check, drift test and poisoning finding."""
    verdict = "PASSED" if report["passed"] else ("FORCED (overridden)" if passed else "BLOCKED")
    lines = [f"quality gate: {verdict}  report {report.get('report_id', '-')}"]
    w = report.get("window")
    if w:
        lines.append(
            f"window: {w['start']} .. {w['end']} ({w['hours']:g} h; reference from "
            f"{w['reference_start']}, {w['reference_windows']} windows)"
        )
    if report["blocking"]:
        lines.append("blocking: " + ", ".join(report["blocking"]))
    if report["warnings"]:
        lines.append("warnings: " + ", ".join(report["warnings"]))
    if report["checks"]:
        lines.append("checks:")
        for c in report["checks"]:
            detail = f"  [{c['detail']}]" if c.get("detail") else ""
            lines.append(
                f"  {c['name']:<18} {c['table']:<14} {c['count']:>8} / {c['total']:<8} "
                f"{c['rate']:7.2%}  {c['severity']}{detail}"
            )
    if report["drift"]:
        lines.append("drift (effect size decides; p-value must also be < alpha):")
        for d in report["drift"]:
            lines.append(
                f"  {d['feature']:<13} {d['test']:<5} {d['effect_name']}={_num(d['effect']):<8} "
                f"p={_num(d['p_value']):<9} (warn {d['warn']:g}, fail {d['fail']:g}) "
                f"n={d['n_ref']}/{d['n_new']}  {d['severity']}"
            )
    p = report["poisoning"]
    lines.append(
        f"poisoning: {len(p['suspect_movies'])} suspect movie(s) of {p['movies_tested']} "
        f"tested with history, {len(p['suspect_users'])} account(s), "
        f"{p['quarantined_pairs']} pair(s) quarantined" + (" (TRUNCATED)" if p["truncated"] else "")
    )
    for m in p["suspect_movies"]:
        extra = (
            f"young_accounts={m['young_accounts']}/{m['n_burst']} in {m['burst_minutes']:g} min "
            f"(expected {_num(m['expected'])})"
            if "young_accounts" in m
            else f"cramers_v={_num(m.get('cramers_v'))} "
            f"mean {_num(m.get('mean_history'))}->{_num(m.get('mean_recent'))}"
        )
        lines.append(
            f"  {m['movie_id']}  {m['signal']}  value={m['value']}  p={_num(m['p_value'])}  {extra}"
        )
    return "\n".join(lines)
