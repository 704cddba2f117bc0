"""The chart's alert rules: promtool accepts them, every alert fires and stays quiet when it
should (promtool test rules), and every alert carries severity, summary, description and a
runbook entry that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import promstack
from tests.monitoring.alert_cases import CASES, Case

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "charts/movierec/files/rules").glob("*.yaml"))
RUNBOOKS = ROOT / "docs/runbooks.md"
RUNBOOK_BASE = "https://github.com/movierec/movierec/blob/main/docs/runbooks.md#"


def alert_rules() -> dict[str, dict[str, Any]]:
    """Every alerting rule of the chart by name."""
    rules = {}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in rules, f"{rule['alert']} defined twice"
                    rules[rule["alert"]] = rule
    return rules


@pytest.fixture(scope="module")
def promtool() -> Path:
    return promstack.ensure_installed().promtool


def test_promtool_checks_the_rule_files(promtool: Path) -> None:
    done = subprocess.run(
        [str(promtool), "check", "rules", *map(str, RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_annotated_and_has_a_runbook_entry() -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    for name, rule in alert_rules().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert notes["runbook_url"] == RUNBOOK_BASE + name.lower(), name
        assert name in headings, f"docs/runbooks.md lacks a '## {name}' entry"


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    names = set(alert_rules())
    assert {c.alert for c in CASES if c.fires} == names
    assert {c.alert for c in CASES if not c.fires} == names


def _render(template: str, labels: dict[str, str], value: float) -> str:
    """The subset of Go templating the rules use: $labels.NAME and $value | printf."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    return re.sub(r'\{\{ \$value \| printf "([^"]+)" \}\}', lambda m: m.group(1) % value, text)


def _unit_test(case: Case, rule: dict[str, Any]) -> dict[str, Any]:
    expected: list[dict[str, Any]] = []
    if case.fires:
        labels = {**case.labels, **rule["labels"]}
        expected.append(
            {
                "exp_labels": labels,
                "exp_annotations": {
                    k: _render(v, labels, case.value) for k, v in rule["annotations"].items()
                },
            }
        )
    unit = case.interval[-1]
    eval_time = f"{case.eval_steps * int(case.interval[:-1])}{unit}"
    return {
        "interval": case.interval,
        "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
        "alert_rule_test": [
            {"eval_time": eval_time, "alertname": case.alert, "exp_alerts": expected}
        ],
    }


# Without a single 5xx the error ratio is 0, not missing (dashboards and alerts need a value).
NO_ERRORS = {
    "interval": "1m",
    "input_series": [
        {"series": 'movierec_requests_total{component="router",status="200"}', "values": "0+60x20"}
    ],
    "promql_expr_test": [
        {
            "expr": "component:movierec_request_errors:ratio_rate5m",
            "eval_time": "10m",
            "exp_samples": [
                {
                    "labels": 'component:movierec_request_errors:ratio_rate5m{component="router"}',
                    "value": 0,
                }
            ],
        }
    ],
}


def test_promtool_unit_tests(promtool: Path, tmp_path: Path) -> None:
    rules = alert_rules()
    files = []
    # promtool evaluates rules at one interval per file: a file per case interval
    for interval in sorted({c.interval for c in CASES}):
        tests = [_unit_test(c, rules[c.alert]) for c in CASES if c.interval == interval]
        if interval == "1m":
            tests.append(NO_ERRORS)
        spec = {
            "rule_files": [str(p) for p in RULES],
            "evaluation_interval": interval,
            "tests": tests,
        }
        files.append(tmp_path / f"alerts_{interval}_test.yaml")
        files[-1].write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run(
        [str(promtool), "test", "rules", *map(str, files)],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
