"""Choosing inputs to upload for collection: :class:`DesiredSampling` applied on-device.

A row is chosen, by the first reason that holds: ``Misclassified`` (a label arrived and the
prediction was wrong, when the policy asks for it), ``LowConfidence`` (top-class confidence
below ``confidenceBelow``), ``Random`` (a ``randomShare`` of the other rows). Then: rows
whose content (features and label, canonical JSON) was chosen before are dropped, and at
most ``maxRowsPerHour`` rows are taken in any sliding hour (0 uploads nothing).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Final

from edgeops.api.wire import (
    MAX_SAMPLE_ROWS,
    DesiredSampling,
    FeatureValue,
    SampleReason,
    SampleRow,
)
from edgeops.canonical_json import sorted_json

#: Content hashes remembered for de-duplication (oldest forgotten first).
DEDUP_MEMORY: Final = 10_000
#: Rows kept while the gateway is unreachable (oldest dropped first).
MAX_BUFFERED_ROWS: Final = 4 * MAX_SAMPLE_ROWS
HOUR_SECONDS: Final = 3600.0


def content_hash(features: Mapping[str, FeatureValue], label: str | None) -> str:
    """SHA-256 of the row's features and label in sorted JSON (non-finite as null)."""
    return hashlib.sha256(sorted_json({"features": finite(features), "label": label})).hexdigest()


def finite(features: Mapping[str, FeatureValue]) -> dict[str, FeatureValue]:
    """The features with NaN and infinities as None (JSON has no such numbers)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in features.items()
    }


class Sampler:
    """Applies one policy to one device's stream and buffers the chosen rows."""

    def __init__(
        self,
        policy: DesiredSampling,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.clock = clock
        self._taken: deque[float] = deque()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.buffer: deque[SampleRow] = deque(maxlen=MAX_BUFFERED_ROWS)

    def reason(
        self, prediction: str | None, confidence: float | None, label: str | None
    ) -> SampleReason | None:
        """Why the policy would upload this row, or None."""
        policy = self.policy
        if policy.misclassified and label is not None and label != prediction:
            return "Misclassified"
        below = policy.confidence_below
        if below is not None and confidence is not None and confidence < below:
            return "LowConfidence"
        if policy.random_share > 0 and self.rng.random() < policy.random_share:
            return "Random"
        return None

    def consider(
        self,
        features: Mapping[str, FeatureValue],
        prediction: str | None,
        confidence: float | None,
        label: str | None = None,
    ) -> SampleRow | None:
        """Buffers and returns the row if the policy chooses it (reason, not seen before,
        under the hourly cap)."""
        reason = self.reason(prediction, confidence, label)
        if reason is None:
            return None
        digest = content_hash(features, label)
        if digest in self._seen:
            self._seen.move_to_end(digest)
            return None
        now = self.clock()
        while self._taken and now - self._taken[0] >= HOUR_SECONDS:
            self._taken.popleft()
        if len(self._taken) >= self.policy.max_rows_per_hour:
            return None
        self._taken.append(now)
        self._seen[digest] = None
        if len(self._seen) > DEDUP_MEMORY:
            self._seen.popitem(last=False)
        row = SampleRow(
            features=finite(features), prediction=prediction, confidence=confidence,
            label=label, reason=reason,
        )  # fmt: skip
        self.buffer.append(row)
        return row

    def take(self, limit: int = MAX_SAMPLE_ROWS) -> list[SampleRow]:
        """Up to ``limit`` buffered rows, oldest first, removed from the buffer."""
        rows: list[SampleRow] = []
        while self.buffer and len(rows) < limit:
            rows.append(self.buffer.popleft())
        return rows

    def give_back(self, rows: list[SampleRow]) -> None:
        """Rows whose upload failed go back to the front of the buffer."""
        self.buffer.extendleft(reversed(rows))
