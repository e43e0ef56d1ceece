"""The post-install health check: load the artifact in its runtime, run a smoke batch of the
model's input shape, and check what comes out and how fast.

Fails (:class:`HealthCheckError`) when the runtime refuses the model, the output is not one
row of class scores per input row (``[n, classes]``, ``classes`` as expected when known),
scores are not finite, or the median latency of one row exceeds the budget.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgeops.device.models import Model, ModelLoadError, load_model

SMOKE_ROWS: Final = 8
DEFAULT_LATENCY_BUDGET_SECONDS: Final = 0.25


class HealthCheckError(Exception):
    """The model must not be committed; the message says why."""


@dataclass(frozen=True)
class HealthReport:
    """What a passed health check measured: classes per row and the median latency of one
    row (seconds)."""

    classes: int
    latency_seconds: float


def smoke_batch(model: Model, rows: int = SMOKE_ROWS, seed: int = 0) -> NDArray[np.float32]:
    """Deterministic standard-normal float32 rows ``[rows, *model.input_shape]``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, *model.input_shape)).astype(np.float32)


def check_model(
    model: Model,
    *,
    latency_budget_seconds: float = DEFAULT_LATENCY_BUDGET_SECONDS,
    expected_classes: int | None = None,
    rows: int = SMOKE_ROWS,
) -> HealthReport:
    """Runs the smoke batch row by row (as the device infers) and checks the outputs and
    the median latency. Raises :class:`HealthCheckError`."""
    batch = smoke_batch(model, rows)
    try:
        model.predict(batch[:1])  # warm-up: first invocations allocate
        outputs, times = [], []
        for i in range(rows):
            start = time.perf_counter()
            outputs.append(model.predict(batch[i : i + 1]))
            times.append(time.perf_counter() - start)
    except Exception as exc:  # whatever the runtime raises on its own model
        raise HealthCheckError(f"inference failed: {type(exc).__name__}: {exc}") from None
    scores = np.concatenate(outputs)
    if scores.ndim != 2 or scores.shape[0] != rows or scores.shape[1] < 1:
        raise HealthCheckError(
            f"output shape {list(scores.shape)}, expected [{rows}, classes] for {rows} rows"
        )
    if expected_classes is not None and scores.shape[1] != expected_classes:
        raise HealthCheckError(f"{scores.shape[1]} classes, expected {expected_classes}")
    if not np.isfinite(scores).all():
        raise HealthCheckError("outputs are not finite")
    latency = statistics.median(times)
    if latency > latency_budget_seconds:
        raise HealthCheckError(
            f"median latency {latency * 1000:.1f} ms per row exceeds the budget of "
            f"{latency_budget_seconds * 1000:.1f} ms"
        )
    return HealthReport(int(scores.shape[1]), latency)


def check_artifact(
    data: bytes,
    fmt: str,
    *,
    latency_budget_seconds: float = DEFAULT_LATENCY_BUDGET_SECONDS,
    expected_classes: int | None = None,
) -> HealthReport:
    """Loads ``data`` (format ``fmt``) and runs :func:`check_model`. Raises
    :class:`HealthCheckError`, also when the runtime refuses the bytes."""
    try:
        model = load_model(data, fmt)
    except ModelLoadError as exc:
        raise HealthCheckError(str(exc)) from None
    return check_model(
        model, latency_budget_seconds=latency_budget_seconds, expected_classes=expected_classes
    )
