"""The trainer pipeline on small synthetic sensor windows, with the real TensorFlow stack.

Exercises the conv1d and cnn families (the integration tests train the dense one on
BasicMotions) and every export, each checked against the Keras model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="needs the train extra")

from edgeops.training.exports import run_tflite
from edgeops.training.pipeline import Hyperparameters, TrainingData, train


def _windows(
    rng: np.random.Generator, n: int, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    # Class 1 windows carry an offset on the first channel: learnable, not trivial.
    x[y == 1, ..., 0] += 1.5
    return x, y


@pytest.mark.parametrize(("shape", "family"), [((24, 3), "conv1d"), ((8, 8, 1), "cnn")])
def test_family_trains_and_every_export_agrees(
    tmp_path: Path, shape: tuple[int, ...], family: str
) -> None:
    rng = np.random.default_rng(3)
    (xt, yt), (xv, yv), (xs, ys) = (_windows(rng, n, shape) for n in (240, 40, 80))
    data = TrainingData(xt, yt, xv, yv, xs, ys, ["idle", "shake"], ["c"] * shape[-1])
    result = train(
        data,
        Hyperparameters(epochs=8, batch_size=16, seed=1),
        tmp_path,
        ["onnx", "tflite", "tflite-int8", "tflm"],
    )
    assert result.family == family
    assert result.evaluation.accuracy > 0.8
    assert set(result.exports) == {"savedmodel", "onnx", "tflite", "tflite-int8", "tflm"}
    assert result.export_accuracy["onnx"] == pytest.approx(result.evaluation.accuracy)
    assert result.export_accuracy["tflite"] == pytest.approx(result.evaluation.accuracy)
    assert result.evaluation.accuracy - result.export_accuracy["tflite-int8"] <= 0.05
    int8 = (tmp_path / "model_int8.tflite").read_bytes()
    assert result.exports["tflite-int8"].size_bytes == len(int8)
    assert result.exports["tflite-int8"].size_bytes < result.exports["tflite"].size_bytes
    # The exported int8 model takes raw (unstandardised) values like the device sends.
    probs = run_tflite(int8, xs)
    assert probs.shape == (len(xs), 2)
    assert (tmp_path / "tflm" / "model_data.cc").exists()


def test_same_seed_gives_the_same_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x, y = _windows(rng, 120, (6,))
    data = TrainingData(
        x[:80],
        y[:80],
        x[80:100],
        y[80:100],
        x[100:],
        y[100:],
        ["a", "b"],
        [f"f{i}" for i in range(6)],
    )
    hp = Hyperparameters(epochs=3, batch_size=16, seed=11)
    first = train(data, hp, tmp_path / "a", ["onnx"])
    second = train(data, hp, tmp_path / "b", ["onnx"])
    # Same weights, hence bit-identical outputs (the ONNX files differ only in graph names).
    assert first.exports["onnx"].probs is not None and second.exports["onnx"].probs is not None
    assert np.array_equal(first.exports["onnx"].probs, second.exports["onnx"].probs)
    assert first.evaluation.accuracy == second.evaluation.accuracy
