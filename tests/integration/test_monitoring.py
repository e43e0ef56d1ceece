"""The chart's alerts and dashboard: every rule parses (`promtool check rules`), every alert
behaves as its `promtool test rules` unit tests say, every series they read is one EdgeOps
exports, and every dashboard query parses offline and runs on the devcluster's Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgeops.devcluster.build import ensure_helm
from tests.conftest import Cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "edgeops"
ALERT_TESTS = Path(__file__).parent / "monitoring" / "alerts-test.yaml"
DASHBOARD = CHART / "files" / "dashboards" / "edgeops-fleet.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed"
)
#: Grafana's variables, replaced by values Prometheus accepts.
GRAFANA_VARIABLES = {"$namespace": ".*", "$model": ".*", "$__rate_interval": "5m"}


def _rules(*sets: str) -> dict[str, Any]:
    """The `spec` of the chart's PrometheusRule, rendered with ``sets``."""
    args = ["template", "x", str(CHART), "--set", "prometheusRule.enabled=true"]
    # --set-json: --set would make 0.2 a string.
    args += [a for s in sets for a in ("--set-json", s)]
    result = subprocess.run(
        [str(ensure_helm()), *args, "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(yaml.safe_load(result.stdout)["spec"])


def _alerts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for query in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, query
    return [_substitute(q) for q in queries]


def _substitute(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return query


def _exported_series() -> set[str]:
    """Every series name EdgeOps exports: the names in its source, counters with their
    ``_total`` and histograms with their ``_bucket``/``_sum``/``_count``."""
    names: set[str] = set()
    for path in (ROOT / "operator" / "edgeops").rglob("*.py"):
        names |= set(re.findall(r"\"(edgeops_[a-z_]+)\"", path.read_text()))
    derived = {f"{n}{s}" for n in names for s in ("_total", "_bucket", "_sum", "_count")}
    return names | derived


@needs_promtool
def test_every_rule_parses(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_rules()))
    result = _promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_every_alert_has_a_runbook_and_a_severity() -> None:
    alerts = _alerts(_rules())
    assert {a["alert"] for a in alerts} == {
        "EdgeOpsOperatorDown",
        "EdgeOpsReconcileErrors",
        "EdgeOpsModelDrift",
        "EdgeOpsRolloutPaused",
        "EdgeOpsRolloutAborted",
        "EdgeOpsDevicesUnhealthy",
        "EdgeOpsDevicesSilent",
        "EdgeOpsDeviceUpdatesFailing",
        "EdgeOpsGatewayErrors",
        "EdgeOpsGatewayLatency",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        # A runbook: what it means and what to run or look at.
        description = alert["annotations"]["description"]
        assert len(description) > 200 and "`" in description, alert["alert"]


def test_rules_and_dashboard_read_only_series_edgeops_exports() -> None:
    exported = _exported_series()
    exprs = [a["expr"] for a in _alerts(_rules())] + _dashboard_queries()
    used = {n for e in exprs for n in re.findall(r"\b(edgeops_[a-z_]+)\b", e)}
    assert used - exported == set()
    # The families the issue asks for are all there.
    assert {
        "edgeops_operator_up",
        "edgeops_model_drift_detected",
        "edgeops_model_drift_statistic",
        "edgeops_model_drift_threshold",
        "edgeops_operator_objects",
        "edgeops_gateway_requests_total",
        "edgeops_gateway_request_duration_seconds_bucket",
        "edgeops_device_telemetry_reports_total",
    } <= used


@needs_promtool
def test_alerts_fire_as_their_unit_tests_say(tmp_path: Path) -> None:
    _write_for_unit_tests(tmp_path, _rules())
    result = _promtool("test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    # 9% of requests fail in the tests: with a 20% threshold the alert must not fire.
    _write_for_unit_tests(tmp_path, _rules("prometheusRule.gatewayErrorRatio=0.2"))
    result = _promtool("test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert result.returncode != 0
    assert "alertname: EdgeOpsGatewayErrors" in result.stdout + result.stderr


def _write_for_unit_tests(directory: Path, spec: dict[str, Any]) -> None:
    # promtool compares annotations exactly: the tests check summaries, not descriptions.
    for alert in _alerts(spec):
        alert["annotations"].pop("description")
    (directory / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(ALERT_TESTS, directory / ALERT_TESTS.name)


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 15
    # Each query as a recording rule: promtool parses them offline.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_a_sidecar_configmap_with_the_panels_asked_for() -> None:
    result = subprocess.run(
        [str(ensure_helm()), "template", "x", str(CHART), "--set", "dashboard.enabled=true",
         "--show-only", "templates/dashboard.yaml"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    config_map = yaml.safe_load(result.stdout)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["edgeops-fleet.json"])
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Fleet versions", "Rollout progress", "Drift", "Gateway and operator"]


def test_dashboard_queries_run_on_prometheus(cluster: Cluster) -> None:
    """Prometheus itself parses and evaluates every query (an error is HTTP 400)."""
    url = cluster.endpoints["prometheus"] + "/api/v1/query"
    for query in _dashboard_queries() + [a["expr"] for a in _alerts(_rules())]:
        answer = httpx.get(url, params={"query": query}, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "success", (
            query,
            answer.text,
        )
