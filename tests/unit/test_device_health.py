"""Health checks and runtimes on real models: ONNX Runtime, LiteRT (float and int8), and the
TFLite-Micro bundle an MCU device receives, whose C array is parsed back into the int8
model and run with LiteRT: its predictions are the int8 artifact's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeops.device.health import HealthCheckError, check_artifact
from edgeops.device.models import (
    ModelLoadError,
    load_model,
    parse_model_data,
    tflm_flatbuffer,
)
from edgeops.training.tflm import model_data_files
from tests.unit.device_support import (
    CLASSES,
    FEATURES,
    onnx_classifier,
    tflite_classifiers,
    tflm_bundle,
)
from tests.unit.test_device_install import make_device


@pytest.fixture(scope="module")
def tflite() -> Iterator[tuple[bytes, bytes]]:
    yield tflite_classifiers()


def test_a_good_onnx_model_passes() -> None:
    report = check_artifact(onnx_classifier(1), "onnx")
    assert report.classes == CLASSES and 0 < report.latency_seconds < 0.25


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"\x08\x01garbage", {}, "cannot load"),
        (onnx_classifier(1, poison=True), {}, "not finite"),
        (onnx_classifier(1), {"latency_budget_seconds": 1e-9}, "exceeds the budget"),
        (onnx_classifier(1), {"expected_classes": CLASSES + 1}, "classes, expected"),
    ],
)
def test_a_bad_model_fails_with_the_cause(
    data: bytes, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(HealthCheckError, match=message):
        check_artifact(data, "onnx", **kwargs)  # type: ignore[arg-type]


def test_tflite_float_and_int8_pass(tflite: tuple[bytes, bytes]) -> None:
    plain, int8 = tflite
    assert check_artifact(plain, "tflite").classes == CLASSES
    assert check_artifact(int8, "tflite-int8").classes == CLASSES
    x = np.random.default_rng(3).standard_normal((16, FEATURES)).astype(np.float32)
    # int8 tracks float within quantisation error: same scores to a few hundredths.
    float_scores = load_model(plain, "tflite").predict(x)
    int8_scores = load_model(int8, "tflite-int8").predict(x)
    assert np.abs(float_scores - int8_scores).max() < 0.1


def test_the_tflm_bundle_is_the_int8_model_and_predicts_like_it(
    tflite: tuple[bytes, bytes],
) -> None:
    _, int8 = tflite
    bundle = tflm_bundle(int8)
    assert tflm_flatbuffer(bundle) == int8
    x = np.random.default_rng(4).standard_normal((32, FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(
        load_model(bundle, "tflm").predict(x), load_model(int8, "tflite-int8").predict(x)
    )


def test_a_c_array_that_disagrees_with_its_length_is_refused() -> None:
    source = model_data_files(b"\x01\x02\x03")["model_data.cc"]
    assert parse_model_data(source) == b"\x01\x02\x03"
    with pytest.raises(ModelLoadError, match="_len says 3"):
        parse_model_data(source.replace("0x03,", ""))


def test_an_mcu_device_installs_the_tflm_bundle_and_refuses_other_formats(
    tmp_path: Path, tflite: tuple[bytes, bytes]
) -> None:
    _, int8 = tflite
    mcu = make_device(tmp_path / "mcu", target_type="mcu")
    desired = mcu.gateway.publish(tflm_bundle(int8), fmt="tflm", target_type="mcu")
    report = asyncio.run(mcu.installer.install(desired))
    assert report is not None and report.phase == "Committed", report
    assert mcu.running() == ("A", 1)
    onnx_for_mcu = mcu.gateway.publish(onnx_classifier(1), version=2, target_type="mcu")
    report = asyncio.run(mcu.installer.install(onnx_for_mcu))
    assert report is not None and (report.phase, report.reason_code) == (
        "Failed",
        "TargetMismatch",
    )
    # A bundle whose C array lost a byte is signed and hashed, and still refused.
    broken = tflm_bundle(int8).replace(b"0x", b"0y", 1)
    report = asyncio.run(
        mcu.installer.install(mcu.gateway.publish(broken, version=3, fmt="tflm", target_type="mcu"))
    )
    assert report is not None and (report.phase, report.reason_code) == (
        "Failed",
        "BundleInvalid",
    )
    assert mcu.running() == ("A", 1)
    linux = make_device(tmp_path / "linux")
    tflm_for_linux = linux.gateway.publish(tflm_bundle(int8), fmt="tflm", target_type="linux")
    report = asyncio.run(linux.installer.install(tflm_for_linux))
    assert report is not None and report.reason_code == "TargetMismatch"
