"""Latency on the target, not the build machine (issue 16, item 12): a budget for an MCU or
a profiled CPU is checked against an estimate from the model's operation counts (read from
the real exported graph) and the hardware's profile; a host timing is labelled ``host``
and never gates an MCU target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgeops.api.common import ArtifactRef, EvaluationMetrics
from edgeops.api.edgemodel import EdgeModelSpec, ModelVersion
from edgeops.policy import gates, hardware

#: A 6 -> 32 -> 16 -> 2 dense classifier: 6*32 + 32*16 + 16*2 = 736 multiply-accumulates.
DENSE_MACS = 736


def _spec(*targets: dict[str, Any]) -> EdgeModelSpec:
    return EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx", "tflite-int8", "tflm"]},
            "targets": list(targets),
        }
    )


def _esp32(**extra: Any) -> dict[str, Any]:
    return {"name": "esp32", "targetType": "mcu", "format": "tflm", "maxLatencyMs": 0.01, **extra}


def _latency(spec: EdgeModelSpec, overall: dict[str, float], name: str) -> Any:
    artifacts = [
        ArtifactRef(uri="s3://b/a", size=1, sha256="a" * 64, format=t.format) for t in spec.targets
    ]
    verdict = gates.evaluate(spec, EvaluationMetrics(overall=overall), artifacts, None)
    return next(c for c in verdict.checks if c.name == f"latency/{name}")


def test_an_esp32_budget_is_checked_against_the_estimate_not_the_host() -> None:
    # The issue's case: the int8 model timed at 0.0065 ms on the x86 host.
    overall = {
        "tflite_int8_latency_ms": 0.0065,
        "tflm_macs": DENSE_MACS,
        "tflm_elementwise_ops": 2,
        "tflm_operators": 4,
    }
    check = _latency(_spec(_esp32(hardware="esp32-s3")), overall, "esp32")
    # 736 / 100e6 s + 2 / 60e6 s + 4 x 10 us = 0.04739 ms on the ESP32-S3 profile.
    expected = (736 / 100e6 + 2 / 60e6 + 4 * 10e-6) * 1000
    assert check.value == pytest.approx(expected) and round(check.value, 5) == 0.04739
    assert not check.passed and check.source == "estimate"
    assert check.message.startswith(
        "esp32 tflm latency 0.04739 ms not <= 0.01 ms (source: estimate for esp32-s3: "
        "736 MACs at 1e+08/s + 2 element ops at 6e+07/s + 4 operators x 10 us; "
        "espressif/esp-tflite-micro README"
    )
    roomy = _latency(_spec(_esp32(hardware="ESP32-S3", maxLatencyMs=0.05)), overall, "esp32")
    assert roomy.passed and roomy.value == pytest.approx(expected)


def test_a_host_timing_never_gates_an_mcu() -> None:
    overall = {"tflite_int8_latency_ms": 0.0065, "tflite_int8_accuracy": 0.9}
    unset = _latency(_spec(_esp32()), overall, "esp32")
    assert not unset.passed and unset.value is None and unset.source is None
    assert "targets[].hardware is not set (profiles: esp32-s3, cortex-m7" in unset.message
    assert "a timing on the evaluator's host never gates an MCU" in unset.message
    unknown = _latency(_spec(_esp32(hardware="gd32vf103")), overall, "esp32")
    assert not unknown.passed
    assert "no hardware profile for 'gd32vf103' (known: esp32-s3, " in unknown.message
    no_counts = _latency(_spec(_esp32(hardware="esp32-s3")), overall, "esp32")
    assert not no_counts.passed
    assert "the evaluation reported no operation counts for the model" in no_counts.message


def test_linux_targets_use_their_profile_or_a_labelled_host_timing() -> None:
    overall = {"onnx_latency_ms": 0.02, "onnx_macs": 1e6, "onnx_elementwise_ops": 0}
    overall["onnx_operators"] = 10
    pi = {"name": "pi4", "targetType": "linux", "format": "onnx", "maxLatencyMs": 1}
    host = _latency(_spec(pi), overall, "pi4")
    assert host.passed and host.source == "host" and host.value == 0.02
    assert "latency 0.02 ms <= 1 ms (source: host, timed on the evaluator's CPU" in host.message
    profiled = _latency(_spec({**pi, "hardware": "raspberry-pi-4"}), overall, "pi4")
    # 1 M MACs at 2 G MAC/s + 10 operators x 2 us = 0.52 ms.
    assert profiled.source == "estimate" and profiled.value == pytest.approx(0.52)
    assert "source: estimate for raspberry-pi-4: 1000000 MACs" in profiled.message


def test_profiles_name_their_source() -> None:
    assert hardware.profile_for(" Raspberry-Pi-4 ") is hardware.profile_for("rpi4")
    assert hardware.profile_for(None) is None and hardware.profile_for("x86") is None
    for profile in hardware.PROFILES:
        assert profile.source and profile.macs_per_second > 0
        assert profile.target_type in ("mcu", "linux")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real 6 -> 32 -> 16 -> 2 Keras model, exported as int8 TFLite, TFLite-Micro and
    ONNX by the trainer's own export functions."""
    tf = pytest.importorskip("tensorflow", reason="needs the train extra")
    from edgeops.training import exports, tflm

    out = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(6,)),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(2, activation="softmax"),
        ]
    )
    int8 = exports.export_tflite_int8(model, out, x, x)
    onnx = exports.export_onnx(model, out, x, model.predict(x, verbose=0))
    int8_bytes = Path(int8.files["model_int8.tflite"]).read_bytes()
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w") as tar:
        for name, text in tflm.model_data_files(int8_bytes).items():
            data = text.encode()
            info = tarfile.TarInfo(f"tflm/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {
        "x": x,
        "y": y,
        "tflite-int8": int8_bytes,
        "onnx": Path(onnx.files["model.onnx"]).read_bytes(),
        "tflm": bundle.getvalue(),
    }


def test_operation_counts_are_read_from_the_exported_graphs(exported: dict[str, Any]) -> None:
    from edgeops.training.opcount import count_onnx, count_tflite

    int8 = count_tflite(exported["tflite-int8"])
    onnx = count_onnx(exported["onnx"])
    assert int8.macs == onnx.macs == DENSE_MACS
    assert int8.operators >= 3 and onnx.operators >= 3


def test_the_evaluator_reports_counts_and_the_gate_estimates_from_them(
    exported: dict[str, Any],
) -> None:
    from edgeops.training.evaluate import LATENCY_SOURCE, evaluate_exports
    from edgeops.training.pipeline import TrainingData

    x, y = exported["x"], exported["y"]
    data = TrainingData(x, y, x[:0], y[:0], x, y, ["neg", "pos"], [f"f{i}" for i in range(6)])
    blobs = {f: exported[f] for f in ("onnx", "tflite-int8", "tflm")}
    _, _, flat = evaluate_exports(data, blobs)
    assert flat["tflm_macs"] == flat["tflite_int8_macs"] == flat["onnx_macs"] == DENSE_MACS
    assert "tflm_latency_ms" not in flat  # nothing times an MCU on the host
    assert flat["tflite_int8_latency_ms"] > 0 and LATENCY_SOURCE["source"] == "host"
    check = _latency(_spec(_esp32(hardware="esp32-s3", maxLatencyMs=50)), flat, "esp32")
    counts = (flat["tflm_macs"], flat["tflm_elementwise_ops"], flat["tflm_operators"])
    expected = hardware.estimate_ms(hardware.PROFILES[0], *counts)
    assert check.passed and check.source == "estimate" and check.value == pytest.approx(expected)
    assert check.value != flat["tflite_int8_latency_ms"]


# --- relative latency gates (trial bug 9): estimates, never host timing noise ---

_PI4 = {"name": "pi4", "targetType": "linux", "hardware": "raspberry-pi-4", "format": "onnx"}
_SLOWER = {"maxDegradation": 0.2, "mode": "relative", "higherIsBetter": False}
#: The dense model on ONNX: 736 MACs, 40 element ops, 4 operators.
_SMALL = {"onnx_macs": 736.0, "onnx_elementwise_ops": 40.0, "onnx_operators": 4.0}


def _relative(
    target: dict[str, Any], metric: str, overall: dict[str, float], before: dict[str, float]
) -> Any:
    spec = EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx", "tflite-int8", "tflm"]},
            "targets": [target],
            "gates": {"relative": [{"metric": metric, **_SLOWER}]},
        }
    )
    current = ModelVersion(
        number=1,
        training_run="r",
        created="2026-01-01T00:00:00Z",
        state="Approved",
        metrics=EvaluationMetrics(overall=before),
    )
    verdict = gates.evaluate(spec, EvaluationMetrics(overall=overall), [], current)
    return next(c for c in verdict.checks if c.name == f"relative/{metric}")


def test_a_relative_latency_gate_compares_estimates_for_a_profiled_target() -> None:
    # The trial's case: the same model timed 0.0123 ms after 0.012 ms on the shared host
    # (+2.5 %, noise) was rejected by a 0 % gate; on the estimate it is the same model.
    same = _relative(
        _PI4,
        "onnx_latency_ms",
        {**_SMALL, "onnx_latency_ms": 0.0123},
        {**_SMALL, "onnx_latency_ms": 0.012},
    )
    # 736 / 2e9 s + 40 / 1e9 s + 4 x 2 us = 0.008408 ms on the raspberry-pi-4 profile.
    assert same.passed and same.source == "estimate"
    assert same.value == pytest.approx(0.008408) and same.threshold == pytest.approx(0.0100896)
    assert same.message == (
        "onnx_latency_ms=0.008408 ms vs current v1 0.008408 ms (change +0, allowed worsening "
        "0.001682 (20% of 0.008408)): <= 0.01009 (source: estimate for pi4 on raspberry-pi-4 "
        "from operation counts: 736 MACs, 40 element ops, 4 operators; v1: 736 MACs, 40 "
        "element ops, 4 operators; host timings not compared)"
    )
    # Twice the MACs and two more operators: 0.012776 ms, 52 % slower, is rejected.
    bigger = {"onnx_macs": 1472.0, "onnx_elementwise_ops": 40.0, "onnx_operators": 6.0}
    slower = _relative(_PI4, "onnx_latency_ms", bigger, _SMALL)
    assert not slower.passed and slower.value == pytest.approx(0.012776)
    assert "(change +0.004368, allowed worsening 0.001682 (20% of 0.008408)): not <= 0.01009" in (
        slower.message
    )
    # A current version evaluated before operation counts existed: nothing to compare.
    old = _relative(_PI4, "onnx_latency_ms", bigger, {"onnx_latency_ms": 0.012})
    assert old.passed and old.message.endswith("v1 has no operation counts to compare with")


def test_a_relative_latency_gate_labels_host_timings_and_never_gates_an_mcu_on_them() -> None:
    gateway = {"name": "gw", "targetType": "linux", "format": "onnx"}
    host = _relative(
        gateway, "onnx_latency_ms", {"onnx_latency_ms": 0.0123}, {"onnx_latency_ms": 0.012}
    )
    assert host.passed and host.source == "host" and host.threshold == pytest.approx(0.0144)
    assert host.message == (
        "onnx_latency_ms=0.0123 vs current v1 0.012 (change +0.0003, allowed worsening 0.0024 "
        "(20% of 0.012)): <= 0.0144 (source: host, timed on the evaluator's CPU: runs differ "
        "by its load; set targets[].hardware to compare estimates)"
    )
    # The int8 flatbuffer's host timing stands for a tflm MCU target: never decisive.
    timings = {"tflite_int8_latency_ms": 0.0065}
    mcu = _relative(_esp32(), "tflite_int8_latency_ms", timings, {"tflite_int8_latency_ms": 0.1})
    assert not mcu.passed and mcu.value is None and mcu.source is None
    assert mcu.message == (
        "relative/tflite_int8_latency_ms: cannot estimate the latency on esp32: "
        "targets[].hardware is not set (profiles: esp32-s3, cortex-m7, cortex-m4, "
        "raspberry-pi-4); a timing on the evaluator's host never gates an MCU"
    )
    counts = {"tflm_macs": 736.0, "tflm_elementwise_ops": 2.0, "tflm_operators": 4.0}
    esp = _relative(
        _esp32(hardware="esp32-s3"),
        "tflite_int8_latency_ms",
        {**counts, "tflite_int8_latency_ms": 0.0065},
        {**counts, "tflite_int8_latency_ms": 0.0012},
    )
    assert (
        esp.passed and esp.source == "estimate" and esp.value == pytest.approx(0.0473933, rel=1e-5)
    )


def test_the_sensor_fleet_example_does_not_reject_a_version_on_host_timing_noise() -> None:
    example = Path(__file__).resolve().parents[2] / "examples/sensor-fleet/02-edgemodel.yaml"
    spec = EdgeModelSpec.model_validate(yaml.safe_load(example.read_text())["spec"])
    current = ModelVersion(
        number=1,
        training_run="r",
        created="2026-01-01T00:00:00Z",
        state="Approved",
        metrics=EvaluationMetrics(overall={**_SMALL, "onnx_latency_ms": 0.012}),
    )
    # The same model timed 33 % slower on a busy shared evaluator: beyond the gate's 20 %.
    noisy = EvaluationMetrics(overall={**_SMALL, "onnx_latency_ms": 0.016})
    verdict = gates.evaluate(spec, noisy, [], current)
    check = next(c for c in verdict.checks if c.name == "relative/onnx_latency_ms")
    assert check.passed and check.source == "estimate"
    assert "source: estimate for pi4 on raspberry-pi-4" in check.message
