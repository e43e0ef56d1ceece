"""On-device inference: the committed model over the device's input stream, observed into
telemetry and offered to the sampling policy.

An input is an :class:`InputRow`: the model's input tensor for one row (``vector``, shaped
like the model's input without the batch dimension), the same input as named features
(what the reference profile bins and samples upload) and, when the ground truth is known,
its label (labelled feedback). Class ``i`` of the model's output is named ``classes[i]``
when the agent knows the names, else ``str(i)``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgeops.api.wire import FeatureValue
from edgeops.device.models import Model
from edgeops.device.sampling import Sampler
from edgeops.device.telemetry import TelemetryAggregator


@dataclass(frozen=True)
class InputRow:
    """One input of the device's stream."""

    vector: NDArray[np.float32]
    features: Mapping[str, FeatureValue] = field(default_factory=dict)
    label: str | None = None


@dataclass(frozen=True)
class Prediction:
    """What the model said about one row: class name, top-class confidence (0..1) and
    latency (seconds)."""

    label: str
    confidence: float
    latency_seconds: float


class InferenceRunner:
    """Runs one loaded model; every row is counted in ``telemetry`` and offered to
    ``sampler`` (when the desired state has a sampling policy)."""

    def __init__(
        self,
        model: Model,
        telemetry: TelemetryAggregator,
        sampler: Sampler | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.telemetry = telemetry
        self.sampler = sampler
        self.classes = list(classes) if classes else None

    def class_name(self, index: int) -> str:
        if self.classes is not None and index < len(self.classes):
            return self.classes[index]
        return str(index)

    def infer(self, row: InputRow) -> Prediction | None:
        """Predicts one row; None (counted as an error) when the model fails on it."""
        batch = np.asarray(row.vector, dtype=np.float32)[None]
        start = time.perf_counter()
        try:
            scores = self.model.predict(batch)[0]
        except Exception:  # a runtime failing on one input is an error count, not a crash
            self.telemetry.error(row.features)
            return None
        latency = time.perf_counter() - start
        if scores.size == 0 or not np.isfinite(scores).all():
            self.telemetry.error(row.features)
            return None
        index = int(np.argmax(scores))
        confidence = float(np.clip(scores[index], 0.0, 1.0))
        label = self.class_name(index)
        self.telemetry.observe(row.features, label, confidence, latency, row.label)
        if self.sampler is not None:
            self.sampler.consider(row.features, label, confidence, row.label)
        return Prediction(label, confidence, latency)
