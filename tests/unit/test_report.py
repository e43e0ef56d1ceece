"""`edgeops report` without a cluster: the operator's drift series, the plots and the page
from hand-built model objects (the devcluster test in test_drift_monitor.py covers the
reads)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from edgeops import cli
from edgeops.api.edgemodel import DriftSummary, FeatureDrift
from edgeops.metrics import drift as drift_metrics
from edgeops.report import charts, page
from edgeops.report.data import Curve, FeatureHistory, ReportData
from edgeops.report.gather import step_seconds
from edgeops.report.write import write_report

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
T0 = NOW.timestamp() - 600


def _feature(
    name: str, statistic: float | None, threshold: float | None, verdict: str
) -> FeatureDrift:
    return FeatureDrift(
        feature=name, method="psi", verdict=verdict, statistic=statistic, threshold=threshold,
        samples=400, reason=f"{name}: psi {statistic} vs threshold {threshold}",
    )  # fmt: skip


def _summary(*features: FeatureDrift, verdict: str = "Drift", version: int = 1) -> DriftSummary:
    return DriftSummary(
        version=version, verdict=verdict, concept_verdict="Inconclusive",
        measured_at="2026-11-29T12:00:00Z", features=list(features), window="30s",
    )  # fmt: skip


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_drift_series_follow_the_last_measurement_and_leave_with_the_model() -> None:
    labels = {"namespace": "plant", "model": "m"}
    drift_metrics.publish("plant", "m", _summary(
        _feature("temp", 0.9, 0.3, "Drift"), _feature("hum", 0.1, 0.3, "NoDrift"),
    ))  # fmt: skip
    temp = {**labels, "version": "1", "feature": "temp", "method": "psi"}
    assert _sample("edgeops_model_drift_statistic", **temp) == pytest.approx(0.9)
    assert _sample("edgeops_model_drift_threshold", **temp) == pytest.approx(0.3)
    assert _sample("edgeops_model_drift_detected", **labels, type="data") == 1.0
    # Inconclusive is neither drift nor no drift: no series rather than a 0.
    assert _sample("edgeops_model_drift_detected", **labels, type="concept") is None
    stamp = _sample("edgeops_model_drift_last_measurement_timestamp_seconds", **labels)
    assert stamp == NOW.timestamp()

    # v2 measured, with one feature Inconclusive: v1's series go, hum has no statistic.
    drift_metrics.publish("plant", "m", _summary(
        _feature("temp", 0.05, 0.3, "NoDrift"), _feature("hum", None, None, "Inconclusive"),
        verdict="NoDrift", version=2,
    ))  # fmt: skip
    assert _sample("edgeops_model_drift_statistic", **temp) is None
    assert _sample("edgeops_model_drift_statistic", **{**temp, "version": "2"}) == 0.05
    hum = {**labels, "version": "2", "feature": "hum", "method": "psi"}
    assert _sample("edgeops_model_drift_statistic", **hum) is None
    assert _sample("edgeops_model_drift_detected", **labels, type="data") == 0.0

    drift_metrics.publish("plant", "m", None)
    assert _sample("edgeops_model_drift_statistic", **{**temp, "version": "2"}) is None
    assert _sample("edgeops_model_drift_detected", **labels, type="data") is None
    assert _sample("edgeops_model_drift_last_measurement_timestamp_seconds", **labels) is None


def _png_shape(png: bytes | None) -> tuple[int, ...]:
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    return tuple(imread(io.BytesIO(png), format="png").shape)


def _history(feature: str, values: list[float], threshold: float) -> FeatureHistory:
    points = [(T0 + 30 * i, v) for i, v in enumerate(values)]
    return FeatureHistory(feature, "1", "psi", points, [(t, threshold) for t, _ in points])


def test_plots_are_pngs_and_absent_without_data() -> None:
    histories = [_history("temp", [0.1, 0.2, 0.9, 1.2], 0.3), _history("hum", [0.1] * 4, 0.3)]
    height, width, _ = _png_shape(charts.drift_over_time(histories))
    assert width > height > 100
    assert charts.drift_over_time([]) is None
    assert charts.drift_over_time([FeatureHistory("x", "1", "psi", [], [])]) is None
    # Features beyond MAX_FEATURE_PLOTS are left out of the plot (the table has them all).
    many = [_history(f"f{i}", [0.01 * i] * 3, 0.3) for i in range(40)]
    assert (
        _png_shape(charts.drift_over_time(many))[0]
        < 4 * _png_shape(charts.drift_over_time(histories))[0]
    )

    status = [
        {"feature": "temp", "statistic": 0.9, "threshold": 0.3, "verdict": "Drift"},
        {"feature": "hum", "statistic": None, "threshold": None, "verdict": "Inconclusive"},
    ]
    _png_shape(charts.drift_last(status))
    assert charts.drift_last(status[1:]) is None

    curves = [Curve("v1", [(T0, 5.0), (T0 + 60, 1.0)]), Curve("v2", [(T0 + 60, 4.0)])]
    _png_shape(charts.traffic(curves))
    assert charts.traffic([Curve("v1", [])]) is None

    rollout = {
        "metadata": {"name": "m-v2"}, "spec": {"version": 2},
        "status": {"phase": "Progressing", "steps": [
            {"step": 0, "percent": 10, "startedAt": "2026-11-29T11:50:00Z",
             "completedAt": "2026-11-29T11:53:00Z", "counts": {"targeted": 10, "updated": 10}},
            {"step": 1, "percent": 50, "startedAt": "2026-11-29T11:53:00Z",
             "counts": {"targeted": 50, "updated": 20, "failed": 2}},
        ]},
    }  # fmt: skip
    _png_shape(charts.rollout_progress(rollout, NOW))
    assert charts.rollout_progress({"status": {}}, NOW) is None


def _model(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "plant"},
        "spec": {"retrain": {"onDrift": {"enabled": True}}},
        "status": status,
    }


def test_the_page_shows_the_numbers_and_escapes_what_devices_and_users_wrote() -> None:
    hostile = "<script>alert(1)</script>"
    drift = _summary(_feature(hostile, 0.9, 0.3, "Drift")).model_dump(by_alias=True, mode="json")
    version = {
        "number": 2, "state": "Approved", "created": "2026-11-29T11:00:00Z",
        "trainingRun": "m-r2", "datasetVersion": "ab" * 32,
        "metrics": {"overall": {"accuracy": 0.9375}},
        "gates": {"passed": True, "checks": []}, "signature": {"keyId": "k1"},
    }  # fmt: skip
    data = ReportData(
        "plant", "m", NOW, 3600,
        _model(currentVersion=2, fleetVersion=1, drift=drift, versions=[version]),
        runs={"m-r2": {"metadata": {"name": "m-r2", "annotations": {
            "edgeops.dev/trigger-reasons": "Drift (v1: temp psi 0.9 > 0.3)"}},
            "spec": {"reason": "Drift"}}},
        lineage=[{"device": "d1", "version": 1, "rollout": None, "update": "Committed",
                  "trainingRun": "m-r1", "datasetVersion": None}],
        events=[{"type": "Warning", "reason": "DriftDetected", "message": hostile, "count": 2}],
        problems=["traffic (Prometheus): PrometheusError: unreachable"],
    )  # fmt: skip
    html = page.render(data, {"rollouts": {}})
    assert hostile not in html and "&lt;script&gt;" in html
    assert "0.9" in html and "0.3" in html  # statistic and threshold
    assert "Drift (v1: temp psi 0.9 &gt; 0.3)" in html  # the run's trigger, escaped
    assert "0.9375" in html and "abababababab" in html and "k1" in html
    assert "PrometheusError: unreachable" in html
    assert "<td>d1</td><td>1</td>\n<td>-</td><td>Committed</td><td>m-r1</td>" in html
    assert "over the last 1 h" in html

    many = [{"device": f"d{i}", "version": 1} for i in range(page.MAX_DEVICE_ROWS + 1)]
    data.lineage = many
    html = page.render(data, {"rollouts": {}})
    assert "d500" not in html and f"{len(many)} devices" in html


def test_a_report_directory_holds_the_page_and_every_plot_it_links(tmp_path: Path) -> None:
    drift = _summary(_feature("temp", 0.9, 0.3, "Drift")).model_dump(by_alias=True, mode="json")
    step = {"step": 0, "percent": 100, "startedAt": "2026-11-29T11:50:00Z", "counts": {}}
    rollout = {"metadata": {"name": "m-v2/x"}, "spec": {"version": 2}, "status": {"steps": [step]}}
    data = ReportData(
        "plant", "m", NOW, 600, _model(drift=drift), rollouts=[rollout],
        drift_history=[_history("temp", [0.1, 0.9], 0.3)],
        traffic=[Curve("v1", [(T0, 1.0), (T0 + 30, 2.0)])],
    )  # fmt: skip
    index = write_report(data, tmp_path / "out")
    html = index.read_text()
    files = sorted(p.name for p in index.parent.iterdir())
    assert files == ["drift-last.png", "drift-over-time.png", "index.html", "rollout-m-v2_x.png",
                     "traffic.png"]  # fmt: skip
    for name in (f for f in files if f.endswith(".png")):
        assert f'src="{name}"' in html
    assert all((index.parent / f).stat().st_mode & 0o044 for f in files)  # readable by others


def test_step_and_since_validation() -> None:
    assert step_seconds(60) == 5.0 and step_seconds(24 * 3600) == 360.0
    result = CliRunner().invoke(cli.app, ["report", "m", "--since", "yesterday"])
    assert result.exit_code == 2 and "--since" in result.output
