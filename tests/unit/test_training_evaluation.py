"""Evaluation metrics, the TFLite-Micro bundle and trainer config validation (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeops.api.common import MIN_SLICE_SAMPLES
from edgeops.training import tflm
from edgeops.training.evaluation import evaluate, expected_calibration_error
from edgeops.training.pipeline import Hyperparameters, TrainerOptions


def _onehot(pred: list[int], k: int, confidence: float = 1.0) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_per_class_metrics_and_confusion() -> None:
    y = np.array([0, 0, 1, 1, 1, 2])
    pred = [0, 1, 1, 1, 0, 2]
    result = evaluate(_onehot(pred, 3), y, ["a", "b", "c"])
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.confusion == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert result.per_class["b"]["precision"] == pytest.approx(2 / 3)
    assert result.per_class["b"]["recall"] == pytest.approx(2 / 3)
    assert result.per_class["c"]["f1"] == 1.0
    assert result.macro_f1 == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident() -> None:
    y = np.array([0, 1] * 50)
    right = _onehot(list(y), 2, confidence=1.0)
    assert expected_calibration_error(right, y) == pytest.approx(0.0)
    half_wrong = _onehot([0] * 100, 2, confidence=0.99)  # always class 0, 99% sure
    assert expected_calibration_error(half_wrong, y) == pytest.approx(0.49, abs=1e-6)


def test_fairness_gap_ignores_tiny_slices() -> None:
    n = MIN_SLICE_SAMPLES * 2
    y = np.zeros(2 * n + 2, dtype=int)
    pred = [0] * n + [0] * (n // 2) + [1] * (n - n // 2) + [1, 1]
    sites = np.array(["north"] * n + ["south"] * n + ["tiny"] * 2)
    result = evaluate(_onehot(pred, 2), y, ["ok", "bad"], {"site": sites})
    assert result.per_slice["site"]["tiny"]["accuracy"] == 0.0
    # tiny (2 rows) is below MIN_SLICE_SAMPLES: the gap is north vs south only.
    assert result.fairness_gap == pytest.approx(0.5)
    assert result.fairness_gap_detail == "site: north=1.000 vs south=0.500"


def test_slices_report_macro_f1_next_to_accuracy() -> None:
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    pred = [0, 0, 1, 1, 0, 0, 0, 0]
    sites = np.array(["a"] * 4 + ["b"] * 4)
    result = evaluate(_onehot(pred, 2), y, ["x", "y"], {"site": sites})
    assert result.per_slice["site"]["a"]["macro_f1"] == pytest.approx(1.0)
    # b: class x has precision 0.5, recall 1 (F1 2/3); class y is never predicted (F1 0).
    assert result.per_slice["site"]["b"]["macro_f1"] == pytest.approx(1 / 3)
    assert result.per_slice["site"]["b"]["accuracy"] == pytest.approx(0.5)


def test_tflm_bundle_round_trips_bytes() -> None:
    model = bytes(range(256)) * 3 + b"\x07"
    files = tflm.model_data_files(model)
    assert "alignas(16) const unsigned char g_model[]" in files["model_data.cc"]
    assert f"const unsigned int g_model_len = {len(model)};" in files["model_data.cc"]
    assert "extern const unsigned char g_model[];" in files["model_data.h"]
    assert tflm.parse_c_array(files["model_data.cc"]) == model


def test_hyperparameters_and_trainer_options_reject_typos_and_bounds() -> None:
    hp = Hyperparameters.from_config({"epochs": 3, "batchSize": 4, "learningRate": 0.01})
    assert (hp.epochs, hp.batch_size, hp.learning_rate) == (3, 4, 0.01)
    with pytest.raises(ValueError, match="unknown hyperparameters: epoch"):
        Hyperparameters.from_config({"epoch": 3})
    with pytest.raises(ValueError, match="epochs=0"):
        Hyperparameters.from_config({"epochs": 0})
    assert TrainerOptions.from_config({"width": 64}).width == 64
    with pytest.raises(ValueError, match="unknown trainer config key\\(s\\) 'widht'"):
        TrainerOptions.from_config({"widht": 64})
    with pytest.raises(ValueError, match=r"outside 4\.\.1024"):
        TrainerOptions.from_config({"width": 2})
