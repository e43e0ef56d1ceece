"""On-device inference: the committed model over the device's input stream, observed into
telemetry and offered to the sampling policy.

An input is an :class:`InputRow`: the model's input tensor for one row (``vector``, shaped
like the model's input without the batch dimension), the same input as named features
(what the reference profile bins and samples upload) and, when the ground truth is known,
its label (labelled feedback). A ground truth that arrives later (a person labels the event
afterwards) is matched to its prediction by the row's ``key``
(:meth:`InferenceRunner.label`). Class ``i`` of the model's output is named ``classes[i]``
when the agent knows the names, else ``str(i)``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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
    #: Identifies the row for a label that arrives later (None: no label will).
    key: str | None = None


#: Unlabelled predictions kept for labels arriving later (the oldest are dropped first).
MAX_AWAITING_LABELS = 10_000


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
        #: Row key → (features, predicted class, confidence) of rows awaiting their label.
        self.awaiting: OrderedDict[str, tuple[Mapping[str, FeatureValue], str, float]] = (
            OrderedDict()
        )

    def class_name(self, index: int) -> str:
        if self.classes is not None and index < len(self.classes):
            return self.classes[index]
        return str(index)

    def infer(self, row: InputRow) -> Prediction | None:
        """Predicts one row; None (counted as an error) when the model fails on it."""
        return self.infer_batch([row])[0]

    def infer_batch(self, rows: Sequence[InputRow]) -> list[Prediction | None]:
        """Predicts ``rows`` with one call of the model (the rows a cycle read: one runtime
        call instead of one per row, which cost most of a simulated device's CPU); each
        row's latency is the call's time divided by the rows. If the batch fails, each row
        is tried alone, so one bad input is one error, not a lost batch. None (counted as
        an error) for a row the model fails on."""
        if not rows:
            return []
        batch = np.stack([np.asarray(r.vector, dtype=np.float32) for r in rows])
        start = time.perf_counter()
        try:
            scores = self.model.predict(batch)
        except Exception:  # a runtime failing on one input is an error count, not a crash
            if len(rows) == 1:
                self.telemetry.error(rows[0].features)
                return [None]
            return [self.infer(row) for row in rows]
        latency = (time.perf_counter() - start) / len(rows)
        if scores.ndim != 2 or len(scores) != len(rows):
            for row in rows:
                self.telemetry.error(row.features)
            return [None] * len(rows)
        return [self._observe(row, found, latency) for row, found in zip(rows, scores, strict=True)]

    def _observe(
        self, row: InputRow, scores: NDArray[np.float32], latency: float
    ) -> Prediction | None:
        if scores.size == 0 or not np.isfinite(scores).all():
            self.telemetry.error(row.features)
            return None
        index = int(np.argmax(scores))
        confidence = float(min(max(float(scores[index]), 0.0), 1.0))
        label = self.class_name(index)
        self.telemetry.observe(row.features, label, confidence, latency, row.label)
        if self.sampler is not None:
            self.sampler.consider(row.features, label, confidence, row.label)
        if row.label is None and row.key is not None:
            self.awaiting[row.key] = (row.features, label, confidence)
            if len(self.awaiting) > MAX_AWAITING_LABELS:
                self.awaiting.popitem(last=False)
        return Prediction(label, confidence, latency)

    def label(self, key: str, label: str) -> bool:
        """The ground truth of row ``key``, arriving after its prediction: counted as
        labelled feedback of the current interval and offered to the sampler (a wrong
        prediction is a ``Misclassified`` sample). False when the row is unknown (made by
        another model, or dropped as too old)."""
        found = self.awaiting.pop(key, None)
        if found is None:
            return False
        features, prediction, confidence = found
        self.telemetry.feedback(prediction, label)
        if self.sampler is not None:
            self.sampler.consider(features, prediction, confidence, label)
        return True
