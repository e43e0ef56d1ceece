"""Training wall time and export sizes/latencies on the built-in BasicMotions dataset.

Baseline (same run): the Keras model itself, predicting one sample at a time, and the
SavedModel size. Every export is reported as a ratio to it.

    .venv/bin/python benchmarks/training.py [--epochs 60] [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeops.api import Split
from edgeops.datasets import builtin
from edgeops.datasets.split import SPLITS, assign
from edgeops.training.data import to_arrays
from edgeops.training.pipeline import Hyperparameters, train


def _keras_latency_ms(model_dir: Path, x: np.ndarray[Any, Any], repeats: int) -> float:
    import tensorflow as tf

    layer = tf.keras.layers.TFSMLayer(str(model_dir / "saved_model"), call_endpoint="serve")
    layer(x[:1])
    times = []
    for i in range(repeats):
        sample = x[i % len(x) : i % len(x) + 1]
        start = time.perf_counter()
        layer(sample)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    data = builtin.load("basic-motions")
    schema = data.schema.model_dump(mode="json", by_alias=True, exclude_none=True)
    split = Split(train=0.6, validation=0.2, test=0.2)
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for row in data.rows():
        splits[assign(row, data.schema.row_key, split)].append(row)
    arrays = to_arrays(schema, splits, list(data.schema.slice_columns or []))
    load_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        result = train(
            arrays,
            Hyperparameters(epochs=args.epochs, batch_size=8),
            out,
            ["onnx", "tflite", "tflite-int8", "tflm"],
        )
        total_s = time.perf_counter() - t0
        keras_ms = _keras_latency_ms(out, arrays.x_test, args.repeats)
    base_size = result.exports["savedmodel"].size_bytes

    print(
        f"\nBasicMotions ({data.origin}): {len(arrays.x_train)} train / "
        f"{len(arrays.x_test)} test rows, {len(arrays.feature_names)} features, "
        f"{len(arrays.classes)} classes, family={result.family}"
    )
    print(f"{'phase':<28}{'seconds':>10}")
    print(f"{'load + split':<28}{load_s:>10.2f}")
    print(f"{'fit (' + str(args.epochs) + ' epochs)':<28}{result.train_seconds:>10.2f}")
    print(f"{'evaluate + export + checks':<28}{total_s - result.train_seconds:>10.2f}")
    print()
    header = (
        f"{'format':<14}{'bytes':>10}{'size/savedmodel':>17}{'ms/sample':>11}"
        f"{'latency/keras':>15}{'accuracy':>10}"
    )
    print(header)
    print("-" * len(header))
    keras_acc = result.evaluation.accuracy
    print(
        f"{'keras (base)':<14}{base_size:>10}{1.0:>17.3f}{keras_ms:>11.4f}{1.0:>15.3f}"
        f"{keras_acc:>10.4f}"
    )
    for fmt in ("onnx", "tflite", "tflite-int8", "tflm"):
        exp = result.exports[fmt]
        latency = (
            f"{exp.latency_ms:>11.4f}{exp.latency_ms / keras_ms:>15.3f}"
            if exp.latency_ms
            else f"{'-':>11}{'-':>15}"
        )
        acc = result.export_accuracy.get(fmt)
        print(
            f"{fmt:<14}{exp.size_bytes:>10}{exp.size_bytes / base_size:>17.3f}{latency}"
            f"{acc if acc is None else round(acc, 4)!s:>10}"
        )


if __name__ == "__main__":
    main()
