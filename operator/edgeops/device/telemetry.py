"""Per-interval aggregates of on-device inference, as a :class:`TelemetryReport`.

Histograms follow the wire contract: latency and confidence over fixed upper bounds
(``counts[i]`` counts values ≤ bound i and above bound i-1, one extra bucket above the last
bound); feature values over the reference profile's inner edges with
:func:`edgeops.drift.histograms.bin_counts` itself (left-closed bins, open outer bins), so
the gateway's live histograms and the operator's reference profile bin alike. Counters are
deltas: :meth:`TelemetryAggregator.flush` returns the interval's report and starts anew.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

from edgeops.api.wire import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS_SECONDS,
    MAX_CLASSES,
    BucketCounts,
    FeatureCounts,
    FeatureValue,
    Feedback,
    ProfileFeature,
    TelemetryReport,
)
from edgeops.drift.histograms import bin_counts

#: Where categorical values the reference profile does not list are counted.
OTHER_CATEGORY: Final = "__other__"


def bucket_index(bounds: Sequence[float], value: float) -> int:
    """The bucket of ``value`` over sorted upper ``bounds`` (right-closed: ``value ==
    bound i`` falls in bucket i); ``len(bounds)`` for values above the last bound (and NaN,
    as ``numpy.searchsorted`` sorts it). ``bisect``: a dozen bounds per row are searched
    faster in Python than by a NumPy call's overhead."""
    if value != value:  # NaN
        return len(bounds)
    return bisect.bisect_left(bounds, value)


class _Buckets:
    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.counts[bucket_index(self.bounds, value)] += 1
        self.sum += value

    def wire(self) -> BucketCounts | None:
        return BucketCounts(counts=self.counts, sum=self.sum) if any(self.counts) else None


def _missing(value: FeatureValue) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


class TelemetryAggregator:
    """Accumulates one interval's observations (not thread-safe: one per device loop).

    ``profile`` is :attr:`DesiredState.profile` (feature → numeric inner ``edges`` or
    ``categories``); features it does not list are not reported.
    """

    def __init__(self, profile: Mapping[str, ProfileFeature] | None = None) -> None:
        self.profile = dict(profile or {})
        self._reset()

    def _reset(self) -> None:
        self.inferences = 0
        self.errors = 0
        self.latency = _Buckets(LATENCY_BUCKETS_SECONDS)
        self.confidence = _Buckets(CONFIDENCE_BUCKETS)
        self.predictions: Counter[str] = Counter()
        self.numeric: dict[str, list[float]] = {}
        self.categories: dict[str, Counter[str]] = {}
        self.missing: Counter[str] = Counter()
        self.correct = 0
        self.incorrect = 0

    def observe(
        self,
        features: Mapping[str, FeatureValue],
        prediction: str,
        confidence: float,
        latency_seconds: float,
        label: str | None = None,
    ) -> None:
        """One inference: its input's named features, the predicted class, its top-class
        confidence (0..1), how long it took (seconds) and, when known, the true label."""
        self.inferences += 1
        self.latency.add(latency_seconds)
        self.confidence.add(confidence)
        # Bounded cardinality: beyond MAX_CLASSES distinct classes the rest is dropped.
        if prediction in self.predictions or len(self.predictions) < MAX_CLASSES:
            self.predictions[prediction] += 1
        if label is not None:
            self.feedback(prediction, label)
        self.observe_features(features)

    def feedback(self, prediction: str, label: str) -> None:
        """A true label for a prediction (with the row, or arriving later)."""
        if label == prediction:
            self.correct += 1
        else:
            self.incorrect += 1

    def observe_features(self, features: Mapping[str, FeatureValue]) -> None:
        """Bins the profiled features of one input (also for inputs the model failed on)."""
        for name, bins in self.profile.items():
            value = features.get(name)
            if bins.categories is not None:
                if _missing(value):
                    self.missing[name] += 1
                    continue
                text = str(value)
                key = text if text in bins.categories else OTHER_CATEGORY
                self.categories.setdefault(name, Counter())[key] += 1
            elif bins.edges is not None:
                if _missing(value) or isinstance(value, str):
                    self.missing[name] += 1
                    continue
                assert value is not None  # _missing ruled None out
                self.numeric.setdefault(name, []).append(float(value))

    def error(self, features: Mapping[str, FeatureValue] | None = None) -> None:
        """An input the model failed on."""
        self.errors += 1
        if features is not None:
            self.observe_features(features)

    def flush(
        self, *, model: str, version: int, interval_seconds: float, sequence: int = 0
    ) -> TelemetryReport:
        """The interval's report (``sequence`` is set by the client when sent); resets."""
        features: dict[str, FeatureCounts] = {}
        for name, bins in self.profile.items():
            if bins.categories is not None:
                cats = self.categories.get(name)
                features[name] = FeatureCounts(
                    categories=dict(cats) if cats else {}, missing=self.missing[name]
                )
            elif bins.edges is not None:
                values = self.numeric.get(name, [])
                features[name] = FeatureCounts(
                    counts=bin_counts(values, bins.edges), missing=self.missing[name]
                )
        report = TelemetryReport(
            sequence=sequence,
            model=model,
            version=version,
            interval_seconds=interval_seconds,
            inferences=self.inferences,
            errors=self.errors,
            latency_seconds=self.latency.wire(),
            predictions=dict(self.predictions),
            confidence=self.confidence.wire(),
            features=features,
            feedback=Feedback(correct=self.correct, incorrect=self.incorrect)
            if self.correct or self.incorrect
            else None,
        )
        self._reset()
        return report
