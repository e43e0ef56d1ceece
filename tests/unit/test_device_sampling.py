"""The on-device sampling policy: which rows are uploaded and why, de-duplication by
content, the hourly cap."""

from __future__ import annotations

import math
import random

from edgeops.api.wire import DesiredSampling, SampleUpload
from edgeops.device.sampling import HOUR_SECONDS, Sampler, content_hash


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sampler(clock: Clock | None = None, **policy: object) -> Sampler:
    fields = {"confidence_below": 0.6, "max_rows_per_hour": 100, **policy}
    return Sampler(DesiredSampling(**fields), random.Random(1), clock or Clock())  # type: ignore[arg-type]


def test_reasons_in_order_misclassified_low_confidence_random() -> None:
    s = sampler(random_share=0.0)
    assert s.consider({"x": 1}, "walk", 0.3, label="run").reason == "Misclassified"  # type: ignore[union-attr]
    assert s.consider({"x": 2}, "walk", 0.3).reason == "LowConfidence"  # type: ignore[union-attr]
    assert s.consider({"x": 3}, "walk", 0.9, label="walk") is None
    assert s.consider({"x": 4}, "walk", 0.9) is None
    no_misclassified = sampler(misclassified=False, confidence_below=None)
    assert no_misclassified.consider({"x": 1}, "walk", 0.1, label="run") is None
    everything = sampler(confidence_below=None, random_share=1.0)
    assert everything.consider({"x": 5}, "walk", 0.99).reason == "Random"  # type: ignore[union-attr]


def test_random_share_is_about_its_share() -> None:
    s = sampler(confidence_below=None, random_share=0.1, max_rows_per_hour=10_000)
    taken = sum(s.consider({"i": i}, "a", 0.9) is not None for i in range(5000))
    assert 400 <= taken <= 600


def test_the_same_content_is_uploaded_once() -> None:
    s = sampler()
    assert s.consider({"x": 1.0, "y": "a"}, "walk", 0.1) is not None
    assert s.consider({"y": "a", "x": 1.0}, "run", 0.2) is None  # same features, any order
    assert s.consider({"x": 1.0, "y": "a"}, "walk", 0.1, label="run") is not None  # new label
    assert content_hash({"x": math.nan}, None) == content_hash({"x": None}, None)


def test_the_hourly_cap_is_a_sliding_hour_and_zero_uploads_nothing() -> None:
    clock = Clock()
    s = sampler(clock, max_rows_per_hour=3)
    chosen = [s.consider({"i": i}, "a", 0.1) for i in range(5)]
    assert sum(r is not None for r in chosen) == 3
    clock.now += HOUR_SECONDS - 1
    assert s.consider({"i": 10}, "a", 0.1) is None
    clock.now += 1
    assert s.consider({"i": 11}, "a", 0.1) is not None
    assert sampler(max_rows_per_hour=0).consider({"i": 1}, "a", 0.1) is None


def test_buffered_rows_make_a_valid_upload_and_survive_a_failed_one() -> None:
    s = sampler()
    for i in range(5):
        s.consider({"i": i, "bad": math.inf}, "a", 0.1)
    rows = s.take(limit=3)
    assert [r.features["i"] for r in rows] == [0, 1, 2]
    assert rows[0].features["bad"] is None  # JSON has no infinity
    s.give_back(rows)
    upload = SampleUpload(sequence=1, model="m", version=1, rows=s.take())
    assert [r.features["i"] for r in upload.rows] == [0, 1, 2, 3, 4]
    SampleUpload.model_validate_json(upload.model_dump_json(by_alias=True))
