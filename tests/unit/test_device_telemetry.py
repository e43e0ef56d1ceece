"""Telemetry aggregation: feature counts bin exactly as the drift statistics' bin_counts,
latency and confidence buckets follow the wire contract's bounds, counters are deltas."""

from __future__ import annotations

import math

import numpy as np

from edgeops.api.wire import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS_SECONDS,
    ProfileFeature,
    TelemetryReport,
)
from edgeops.device.telemetry import OTHER_CATEGORY, TelemetryAggregator, bucket_index
from edgeops.drift.histograms import bin_counts, quantile_edges

PROFILE = {
    "accel": ProfileFeature(edges=[-1.0, 0.0, 0.5, 2.0]),
    "site": ProfileFeature(categories=["north", "south"]),
}


def test_feature_counts_are_bin_counts_over_the_profile_edges() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(size=500)
    edges = quantile_edges(reference, 8)
    live = [*rng.normal(0.5, 2.0, size=300).tolist(), *edges, edges[0] - 5, edges[-1] + 5]
    agg = TelemetryAggregator({"x": ProfileFeature(edges=edges)})
    for value in live:
        agg.observe({"x": value}, "a", 0.9, 0.001)
    for missing in (None, math.nan, math.inf):
        agg.observe({"x": missing}, "a", 0.9, 0.001)
    agg.observe({}, "a", 0.9, 0.001)  # absent
    report = agg.flush(model="m", version=1, interval_seconds=60)
    counts = report.features["x"].counts
    assert counts == bin_counts(live, edges)
    assert report.features["x"].missing == 4
    # Values exactly on an edge fall in the bin to its right (left-closed bins).
    one = TelemetryAggregator({"x": ProfileFeature(edges=[0.0, 1.0])})
    one.observe({"x": 1.0}, "a", 0.5, 0.001)
    assert one.flush(model="m", version=1, interval_seconds=1).features["x"].counts == [0, 0, 1]


def test_categories_and_strings_on_numeric_features() -> None:
    agg = TelemetryAggregator(PROFILE)
    agg.observe({"accel": 0.1, "site": "north"}, "walk", 0.8, 0.002)
    agg.observe({"accel": "oops", "site": "east"}, "walk", 0.8, 0.002)
    agg.observe({"accel": 3.0, "site": None}, "run", 0.4, 0.002)
    report = agg.flush(model="m", version=1, interval_seconds=10)
    assert report.features["site"].categories == {"north": 1, OTHER_CATEGORY: 1}
    assert report.features["site"].missing == 1
    assert report.features["accel"].counts == [0, 0, 1, 0, 1]
    assert report.features["accel"].missing == 1


def test_latency_and_confidence_buckets_are_right_closed_over_the_wire_bounds() -> None:
    assert bucket_index(LATENCY_BUCKETS_SECONDS, 0.001) == 1  # ≤ 0.001 is bucket 1
    assert bucket_index(LATENCY_BUCKETS_SECONDS, 0.0011) == 2
    assert bucket_index(LATENCY_BUCKETS_SECONDS, 5.0) == len(LATENCY_BUCKETS_SECONDS)
    agg = TelemetryAggregator()
    for confidence, latency in ((0.05, 0.0004), (0.1, 0.001), (0.95, 2.0), (0.55, 0.02)):
        agg.observe({}, "a", confidence, latency)
    report = agg.flush(model="m", version=3, interval_seconds=30)
    assert report.latency_seconds is not None and report.confidence is not None
    assert report.latency_seconds.counts == [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert len(report.confidence.counts) == len(CONFIDENCE_BUCKETS) + 1
    assert report.confidence.counts == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert report.latency_seconds.sum is not None
    assert math.isclose(report.latency_seconds.sum, 2.0214)


def test_predictions_feedback_errors_and_deltas() -> None:
    agg = TelemetryAggregator(PROFILE)
    agg.observe({"accel": 0.0}, "walk", 0.9, 0.001, label="walk")
    agg.observe({"accel": 0.0}, "walk", 0.9, 0.001, label="run")
    agg.observe({"accel": 0.0}, "run", 0.9, 0.001)
    agg.error({"accel": 0.2})
    report = agg.flush(model="m", version=2, interval_seconds=60, sequence=5)
    assert (report.inferences, report.errors) == (3, 1)
    assert report.predictions == {"walk": 2, "run": 1}
    assert report.feedback is not None
    assert (report.feedback.correct, report.feedback.incorrect) == (1, 1)
    assert sum(report.features["accel"].counts or []) == 4  # failed inputs are binned too
    # It is a valid wire document, and the next interval starts from zero.
    TelemetryReport.model_validate_json(report.model_dump_json(by_alias=True))
    empty = agg.flush(model="m", version=2, interval_seconds=60)
    assert (empty.inferences, empty.predictions, empty.feedback) == (0, {}, None)
    assert empty.features["accel"].counts == [0] * 5


def test_a_batch_is_one_model_call_and_a_bad_row_is_one_error() -> None:
    import numpy as np

    from edgeops.device.runtime import InferenceRunner, InputRow

    class Model:
        input_shape = (2,)

        def __init__(self) -> None:
            self.calls: list[int] = []

        def predict(self, batch: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
            self.calls.append(len(batch))
            if np.isnan(batch).any():
                raise ValueError("NaN input")
            return np.tile(np.asarray([[0.2, 0.8]], dtype=np.float32), (len(batch), 1))

    model = Model()
    agg = TelemetryAggregator()
    runner = InferenceRunner(model, agg, classes=["a", "b"])
    rows = [InputRow(np.asarray([1.0, 2.0], dtype=np.float32), {"x": 1.0}) for _ in range(5)]
    predictions = runner.infer_batch(rows)
    assert model.calls == [5] and [p.label for p in predictions if p] == ["b"] * 5
    assert agg.inferences == 5 and agg.errors == 0
    bad = InputRow(np.asarray([np.nan, 2.0], dtype=np.float32), {"x": None})
    predictions = runner.infer_batch([rows[0], bad, rows[1]])
    assert model.calls[1:] == [3, 1, 1, 1]  # the batch, then row by row
    assert predictions[1] is None and predictions[0] and predictions[2]
    assert (agg.inferences, agg.errors) == (7, 1)
    assert runner.infer_batch([]) == []


def test_bucket_index_is_right_closed_and_puts_nan_last() -> None:
    from edgeops.device.telemetry import bucket_index

    bounds = (0.1, 0.5, 1.0)
    assert [bucket_index(bounds, v) for v in (0.0, 0.1, 0.2, 1.0, 2.0, float("nan"))] == [
        0, 0, 1, 2, 3, 3,
    ]  # fmt: skip
