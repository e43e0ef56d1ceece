"""Train → evaluate → export, independent of where the data comes from or goes to.

`run.py` wires this to S3 (dataset version in, artifacts and results out).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeops.standardization import Standardization
from edgeops.training import exports, zoo
from edgeops.training.evaluation import Evaluation, evaluate

log = logging.getLogger("edgeops.training")
Array = NDArray[Any]
EXPORT_FORMATS = ("onnx", "tflite", "tflite-int8", "tflm")


@dataclass
class TrainingData:
    """A dataset version already split by its stable row-key hash."""

    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    x_test: Array
    y_test: Array
    classes: list[str]
    feature_names: list[str]
    test_slices: dict[str, Array] = field(default_factory=dict)


@dataclass
class Hyperparameters:
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 0.003
    seed: int = 42
    model_family: str = "auto"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Hyperparameters:
        known = {
            "epochs": int,
            "batchSize": int,
            "learningRate": float,
            "seed": int,
            "modelFamily": str,
        }
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}")
        hp = cls()
        for key, cast in known.items():
            if key in cfg:
                attr = {
                    "batchSize": "batch_size",
                    "learningRate": "learning_rate",
                    "modelFamily": "model_family",
                }.get(key, key)
                setattr(hp, attr, cast(cfg[key]))
        if hp.epochs < 1 or hp.batch_size < 1 or not 0 < hp.learning_rate < 10:
            raise ValueError(
                f"hyperparameters out of range: epochs={hp.epochs} (>=1), "
                f"batchSize={hp.batch_size} (>=1), learningRate={hp.learning_rate} (0..10)"
            )
        return hp


@dataclass
class TrainerOptions:
    """The free-form `trainer.config` of the built-in trainer, validated strictly: a typo
    must fail the run with a clear reason, not silently train something else."""

    width: int = 32
    representative_samples: int = 200

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TrainerOptions:
        known = {"width": "width", "representativeSamples": "representative_samples"}
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(
                f"unknown trainer config key(s) {', '.join(repr(k) for k in unknown)}; "
                f"the built-in trainer accepts {', '.join(sorted(known))}"
            )
        options = cls(**{known[k]: int(v) for k, v in cfg.items()})
        if not 4 <= options.width <= 1024:
            raise ValueError(f"trainer config width={options.width} is outside 4..1024")
        if options.representative_samples < 1:
            raise ValueError("trainer config representativeSamples must be >= 1")
        return options


@dataclass
class TrainingResult:
    family: str
    evaluation: Evaluation
    exports: dict[str, exports.ExportResult]
    export_accuracy: dict[str, float]
    history: list[dict[str, float]]
    train_seconds: float
    #: Export format → why it failed (conversion, or its accuracy check under its runtime);
    #: a failed export is absent from ``exports`` and fails the gates that need it.
    export_errors: dict[str, str] = field(default_factory=dict)
    #: The per-feature standardisation the int8 exports expect their callers to apply.
    standardization: Standardization | None = None

    def metrics(self) -> dict[str, Any]:
        flat: dict[str, Any] = dict(self.evaluation.flat_metrics())
        for fmt, acc in self.export_accuracy.items():
            flat[f"{fmt.replace('-', '_')}_accuracy"] = acc
        for fmt, exp in self.exports.items():
            key = fmt.replace("-", "_")
            flat[f"{key}_size_bytes"] = exp.size_bytes
            if exp.latency_ms:
                flat[f"{key}_latency_ms"] = round(exp.latency_ms, 4)
        flat["train_seconds"] = round(self.train_seconds, 2)
        return flat


class _ProgressLogger:
    """Keras callback printing one line per epoch, for `kubectl logs`."""

    def __new__(cls, epochs: int) -> Any:
        import tensorflow as tf

        class Callback(tf.keras.callbacks.Callback):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.history: list[dict[str, float]] = []

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                logs = {k: float(v) for k, v in (logs or {}).items()}
                self.history.append(logs)
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
                print(f"epoch {epoch + 1}/{epochs} {shown}", flush=True)

        return Callback()


def _seed(seed: int) -> None:
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    tf.keras.utils.set_random_seed(seed)
    # Deterministic kernels where TensorFlow has them; a few CPU ops still are not.
    tf.config.experimental.enable_op_determinism()


def train(
    data: TrainingData,
    hp: Hyperparameters,
    out: Path,
    formats: list[str],
    options: TrainerOptions | None = None,
) -> TrainingResult:
    import tensorflow as tf

    bad = sorted(set(formats) - set(EXPORT_FORMATS))
    if bad:
        raise ValueError(f"unknown export formats {bad}; known: {', '.join(EXPORT_FORMATS)}")
    options = options or TrainerOptions()
    _seed(hp.seed)
    family = zoo.family_for(tuple(data.x_train.shape[1:]), hp.model_family)
    # Per-feature statistics (the last axis), so sensors on different scales train together.
    axes = tuple(range(data.x_train.ndim - 1))
    # float64: float32 sums of values near 101,000 lose the small variance that matters.
    mean = data.x_train.astype(np.float64).mean(axis=axes)
    variance = np.maximum(data.x_train.astype(np.float64).var(axis=axes), 1e-6)
    names = data.feature_names if len(data.feature_names) == len(mean) else []
    standardization = Standardization(
        tuple(float(m) for m in mean),
        tuple(float(s) for s in np.sqrt(variance)),
        tuple(str(n) for n in names),
    )
    model = zoo.build_model(
        family,
        tuple(data.x_train.shape[1:]),
        len(data.classes),
        width=options.width,
        mean=mean,
        variance=variance,
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(hp.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    print(
        f"training {family} model: {len(data.x_train)} train / {len(data.x_val)} validation / "
        f"{len(data.x_test)} test samples, {len(data.classes)} classes, {hp.epochs} epochs",
        flush=True,
    )
    progress = _ProgressLogger(hp.epochs)
    started = time.monotonic()
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val) if len(data.x_val) else None,
        epochs=hp.epochs,
        batch_size=hp.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[progress],
    )
    seconds = time.monotonic() - started
    probs = model.predict(data.x_test, verbose=0)
    evaluation = evaluate(probs, data.y_test, data.classes, data.test_slices)
    print(
        f"test accuracy={evaluation.accuracy:.4f} macro_f1={evaluation.macro_f1:.4f} "
        f"ece={evaluation.ece:.4f} fairness_gap={evaluation.fairness_gap:.4f}",
        flush=True,
    )

    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, exports.ExportResult] = {
        "savedmodel": exports.export_saved_model(model, out)
    }
    accuracy: dict[str, float] = {}
    errors: dict[str, str] = {}
    x_test = data.x_test.astype(np.float32)
    rep = data.x_train[: options.representative_samples].astype(np.float32)
    steps: list[tuple[str, Any]] = [
        ("onnx", lambda: exports.export_onnx(model, out, x_test, probs)),
        ("tflite", lambda: exports.export_tflite(model, out, x_test)),
        (
            "tflite-int8",
            lambda: exports.export_tflite_int8(model, out, x_test, rep, standardization),
        ),
        (
            "tflm",
            lambda: exports.export_tflm(
                results["tflite-int8"].files["model_int8.tflite"].read_bytes(), out
            ),
        ),
    ]
    wanted = set(formats) | ({"tflite-int8"} if "tflm" in formats else set())
    for fmt, export in steps:
        if fmt not in wanted:
            continue
        if fmt == "tflm" and "tflite-int8" in errors:
            errors[fmt] = f"needs the int8 model, whose export failed: {errors['tflite-int8']}"
            continue
        try:
            results[fmt] = export()
        except Exception as exc:  # a converter or runtime failure is this export's verdict
            errors[fmt] = export_error(exc)
            print(f"export {fmt} FAILED: {errors[fmt]}", flush=True)
    for fmt, res in results.items():
        if res.probs is not None:
            accuracy[fmt] = float((res.probs.argmax(axis=1) == data.y_test).mean())
            print(
                f"export {fmt}: {res.size_bytes} bytes, {res.latency_ms:.3f} ms/sample, "
                f"accuracy={accuracy[fmt]:.4f}",
                flush=True,
            )
    return TrainingResult(
        family, evaluation, results, accuracy, progress.history, seconds, errors, standardization
    )


#: Longest export error kept (status messages and results.json stay small).
MAX_EXPORT_ERROR = 500


def export_error(exc: BaseException) -> str:
    """One line for a failed export: the exception's type and first line of message,
    e.g. ``RuntimeError: failed to create XNNPACK runtime...`` (bounded)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:MAX_EXPORT_ERROR]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
