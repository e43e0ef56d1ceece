"""Fleet telemetry as Prometheus series: the names the gateway exports and the operator
(FleetRollout analysis, drift monitor) queries, and the collector that holds them.

Devices report pre-binned *deltas* (:class:`edgeops.api.wire.TelemetryReport`): counts per
latency bucket, per confidence bucket, per reference-profile bin. ``Histogram.observe``
takes one value at a time and cannot add "17 values in bucket 3", so
:class:`FleetTelemetry` is a custom collector that keeps cumulative counts per label tuple
and renders them as metric families on each scrape.

Cardinality is bounded by construction: every series is labelled by ``namespace``,
``model``, ``version`` and ``cohort`` (``canary``/``stable``), never by device; ``class``
and categorical ``bin`` values are limited to those of the version's reference profile
(:class:`ReferenceBins`, at most ``MAX_CLASSES - 1`` of them) with the rest folded into
``"other"``; numeric ``bin`` values are bin indices.

Counters restart from zero when a gateway restarts and each replica exports its own share:
query with ``sum by (...)`` over instances and ``rate``/``increase``, which handle resets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from edgeops.api.wire import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS_SECONDS,
    MAX_BINS,
    MAX_CLASSES,
    BucketCounts,
    FeatureCounts,
    TelemetryReport,
)

# --- series names (as queried in PromQL) ---------------------------------------------------

#: Labels of every device series.
LABELS: Final = ("namespace", "model", "version", "cohort")
#: Inferences the devices ran (counter).
INFERENCES_TOTAL: Final = "edgeops_device_inferences_total"
#: Inputs the model failed on (counter).
INFERENCE_ERRORS_TOTAL: Final = "edgeops_device_inference_errors_total"
#: Inference latency histogram in seconds over LATENCY_BUCKETS_SECONDS (``_bucket{le}``,
#: ``_sum``, ``_count``).
INFERENCE_LATENCY_SECONDS: Final = "edgeops_device_inference_latency_seconds"
#: Predictions per class (counter, extra label ``class``).
PREDICTIONS_TOTAL: Final = "edgeops_device_predictions_total"
#: Top-class confidence histogram (0..1) over CONFIDENCE_BUCKETS.
PREDICTION_CONFIDENCE_RATIO: Final = "edgeops_device_prediction_confidence_ratio"
#: Feature values per reference-profile bin (counter, extra labels ``feature``, ``bin``).
FEATURE_OBSERVATIONS_TOTAL: Final = "edgeops_device_feature_observations_total"
#: Labelled feedback (counter, extra label ``outcome`` = correct | incorrect).
FEEDBACK_TOTAL: Final = "edgeops_device_feedback_total"
#: Telemetry reports the gateway accepted (counter).
TELEMETRY_REPORTS_TOTAL: Final = "edgeops_device_telemetry_reports_total"
#: Terminal update outcomes devices reported (counter, labels namespace, model, version,
#: outcome = Committed | RolledBack | Failed | TimedOut): one per transition of a Device's
#: status.update into a terminal phase, ``version`` the update's target version.
UPDATE_OUTCOMES_TOTAL: Final = "edgeops_device_update_outcomes_total"
#: Labels of UPDATE_OUTCOMES_TOTAL (no cohort: the outcome is about the target version).
UPDATE_OUTCOME_LABELS: Final = ("namespace", "model", "version", "outcome")
#: Gateway requests by route template and HTTP status (counter, labels endpoint, code).
GATEWAY_REQUESTS_TOTAL: Final = "edgeops_gateway_requests_total"
#: Gateway request wall time in seconds by route template (histogram, label endpoint).
GATEWAY_REQUEST_DURATION_SECONDS: Final = "edgeops_gateway_request_duration_seconds"

#: Label value that unknown classes and categories are folded into.
OTHER: Final = "other"
#: ``bin`` value of absent, null or NaN feature values.
MISSING: Final = "missing"
OUTCOMES: Final = ("correct", "incorrect")


class SeriesKey(NamedTuple):
    """The labels every device series carries: (namespace, model, version, cohort)."""

    namespace: str
    model: str
    version: str
    cohort: str


class ReportMismatchError(ValueError):
    """A report does not fit the version's reference profile or the bucket bounds; the
    message names the field. ``reason``: ``UnknownFeature``, ``BinMismatch``, or
    ``InvalidProfile`` for a document that is not a profile."""

    def __init__(self, message: str, reason: str = "BinMismatch") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ReferenceBins:
    """What a version's reference profile fixes about telemetry labels.

    ``classes``: the label values the model predicts (from the profile's label
    distribution); ``numeric``: feature → inner bin edges (``len(edges) + 1`` left-closed
    bins); ``categorical``: feature → categories. Classes and categories are capped at
    ``MAX_CLASSES - 1`` (the most frequent in the reference), so that with ``"other"`` a
    label never has more than ``MAX_CLASSES`` values.
    """

    classes: frozenset[str] = frozenset()
    numeric: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> ReferenceBins:
        """From a reference profile document (``profile.json`` of a version, as
        :func:`edgeops.datasets.profile.build_profile` writes it). Features whose entry is
        unreadable or has more edges than the wire protocol carries (``MAX_BINS``) are left
        out, so devices are never asked for counts they cannot send. Raises
        ``ReportMismatchError`` if the document is not a profile at all."""
        features = profile.get("features")
        if not isinstance(features, Mapping):
            raise ReportMismatchError(
                "the reference profile has no features object", "InvalidProfile"
            )
        numeric: dict[str, tuple[float, ...]] = {}
        categorical: dict[str, tuple[str, ...]] = {}
        for name, entry in features.items():
            if not isinstance(entry, Mapping):
                continue
            if entry.get("kind") == "numeric" and isinstance(entry.get("edges"), list):
                if len(entry["edges"]) <= MAX_BINS:
                    numeric[str(name)] = tuple(float(e) for e in entry["edges"])
            elif entry.get("kind") == "categorical" and isinstance(entry.get("counts"), Mapping):
                categorical[str(name)] = tuple(sorted(_most_frequent(entry["counts"])))
        label = profile.get("label")
        distribution = label.get("distribution") if isinstance(label, Mapping) else None
        classes = _most_frequent(distribution) if isinstance(distribution, Mapping) else ()
        return cls(frozenset(classes), numeric, categorical)

    def check(self, report: TelemetryReport) -> None:
        """Raises :class:`ReportMismatchError` naming the first field that does not fit: a
        feature the profile does not have, numeric counts that are not ``len(edges) + 1``
        long, categories for a numeric feature or counts for a categorical one, latency or
        confidence counts that are not ``len(bounds) + 1`` long."""
        _check_buckets("latencySeconds", report.latency_seconds, LATENCY_BUCKETS_SECONDS)
        _check_buckets("confidence", report.confidence, CONFIDENCE_BUCKETS)
        for name, counts in report.features.items():
            if name in self.numeric:
                want = len(self.numeric[name]) + 1
                if counts.categories is not None:
                    raise ReportMismatchError(
                        f"features.{name}: numeric in the profile, not categories"
                    )
                if counts.counts is not None and len(counts.counts) != want:
                    raise ReportMismatchError(
                        f"features.{name}: {len(counts.counts)} counts, the reference profile "
                        f"has {want} bins"
                    )
            elif name in self.categorical:
                if counts.counts is not None:
                    raise ReportMismatchError(
                        f"features.{name}: categorical in the profile, not counts"
                    )
            else:
                raise ReportMismatchError(
                    f"features.{name}: not a feature of the reference profile", "UnknownFeature"
                )


def _most_frequent(counts: Mapping[Any, Any]) -> list[str]:
    ranked = sorted(counts.items(), key=lambda kv: (-_number(kv[1]), str(kv[0])))
    return [str(k) for k, _ in ranked[: MAX_CLASSES - 1]]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _check_buckets(name: str, buckets: BucketCounts | None, bounds: Sequence[float]) -> None:
    if buckets is not None and len(buckets.counts) != len(bounds) + 1:
        raise ReportMismatchError(
            f"{name}.counts: {len(buckets.counts)} entries, expected {len(bounds) + 1} "
            f"({len(bounds)} bounds and one above the last)"
        )


@dataclass
class _Histogram:
    """Cumulative counts per bucket (non-cumulative here, summed up on collect)."""

    counts: list[int]
    sum: float = 0.0

    def add(self, delta: BucketCounts) -> None:
        for i, count in enumerate(delta.counts):
            self.counts[i] += count
        # Reports without a sum add nothing to _sum (it cannot be recovered from buckets);
        # the README says _sum covers reports that carried one.
        self.sum += delta.sum or 0.0


class FleetTelemetry(Collector):
    """Cumulative fleet telemetry, thread-safe; register it on a ``CollectorRegistry``.

    :meth:`add` takes one report's deltas for one :class:`SeriesKey`; :meth:`collect`
    renders every series seen so far (a scrape sees whole reports: both run under one
    lock).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # metric name → label tuple (SeriesKey + extra labels) → count
        self._counters: dict[str, dict[tuple[str, ...], int]] = {
            name: {}
            for name in (
                INFERENCES_TOTAL,
                INFERENCE_ERRORS_TOTAL,
                PREDICTIONS_TOTAL,
                FEATURE_OBSERVATIONS_TOTAL,
                FEEDBACK_TOTAL,
                TELEMETRY_REPORTS_TOTAL,
                UPDATE_OUTCOMES_TOTAL,
            )
        }
        self._latency: dict[SeriesKey, _Histogram] = {}
        self._confidence: dict[SeriesKey, _Histogram] = {}

    def add(self, key: SeriesKey, report: TelemetryReport, reference: ReferenceBins) -> None:
        """Adds one report. Raises :class:`ReportMismatchError` (and adds nothing) if it does
        not fit ``reference``."""
        reference.check(report)
        with self._lock:
            self._count(TELEMETRY_REPORTS_TOTAL, key, 1)
            self._count(INFERENCES_TOTAL, key, report.inferences)
            self._count(INFERENCE_ERRORS_TOTAL, key, report.errors)
            for name, count in report.predictions.items():
                label = name if name in reference.classes else OTHER
                self._count(PREDICTIONS_TOTAL, (*key, label), count)
            for name, counts in report.features.items():
                for bin_, count in _feature_bins(name, counts, reference):
                    self._count(FEATURE_OBSERVATIONS_TOTAL, (*key, name, bin_), count)
            if report.feedback is not None:
                self._count(FEEDBACK_TOTAL, (*key, "correct"), report.feedback.correct)
                self._count(FEEDBACK_TOTAL, (*key, "incorrect"), report.feedback.incorrect)
            if report.latency_seconds is not None:
                self._histogram(self._latency, key, LATENCY_BUCKETS_SECONDS).add(
                    report.latency_seconds
                )
            if report.confidence is not None:
                self._histogram(self._confidence, key, CONFIDENCE_BUCKETS).add(report.confidence)

    def add_update_outcome(self, namespace: str, model: str, version: str, outcome: str) -> None:
        """Counts one update of ``model`` to ``version`` reaching the terminal ``outcome``
        (an :data:`edgeops.api.device.TERMINAL_UPDATE_PHASES` value). The caller counts a
        transition once (the status endpoint does, when it writes it)."""
        with self._lock:
            self._count(UPDATE_OUTCOMES_TOTAL, (namespace, model, version, outcome), 1)

    def _count(self, name: str, labels: tuple[str, ...], delta: int) -> None:
        series = self._counters[name]
        series[labels] = series.get(labels, 0) + delta

    @staticmethod
    def _histogram(
        table: dict[SeriesKey, _Histogram], key: SeriesKey, bounds: Sequence[float]
    ) -> _Histogram:
        if key not in table:
            table[key] = _Histogram([0] * (len(bounds) + 1))
        return table[key]

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so a registry can refuse duplicate names."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Every series seen so far, with cumulative ``le`` buckets for histograms."""
        with self._lock:
            families = self._families()
            counters = {name: dict(series) for name, series in self._counters.items()}
            latency = {k: _Histogram(list(h.counts), h.sum) for k, h in self._latency.items()}
            confidence = {k: _Histogram(list(h.counts), h.sum) for k, h in self._confidence.items()}
        for family in families:
            if family.name + "_total" in counters:
                for labels, value in counters[family.name + "_total"].items():
                    assert isinstance(family, CounterMetricFamily)
                    family.add_metric(list(labels), value)
            elif family.name == INFERENCE_LATENCY_SECONDS:
                _add_histograms(family, latency, LATENCY_BUCKETS_SECONDS)
            elif family.name == PREDICTION_CONFIDENCE_RATIO:
                _add_histograms(family, confidence, CONFIDENCE_BUCKETS)
        return families

    @staticmethod
    def _families() -> list[Metric]:
        return [
            CounterMetricFamily(
                TELEMETRY_REPORTS_TOTAL, "Telemetry reports the gateway accepted.", labels=LABELS
            ),
            CounterMetricFamily(INFERENCES_TOTAL, "Inferences the devices ran.", labels=LABELS),
            CounterMetricFamily(
                INFERENCE_ERRORS_TOTAL, "Inputs the model failed on.", labels=LABELS
            ),
            HistogramMetricFamily(
                INFERENCE_LATENCY_SECONDS,
                "Single-inference latency on the device, seconds.",
                labels=LABELS,
            ),
            CounterMetricFamily(
                PREDICTIONS_TOTAL,
                "Predictions by class; classes outside the reference profile are 'other'.",
                labels=(*LABELS, "class"),
            ),
            HistogramMetricFamily(
                PREDICTION_CONFIDENCE_RATIO,
                "Top-class confidence of each prediction (0..1).",
                labels=LABELS,
            ),
            CounterMetricFamily(
                FEATURE_OBSERVATIONS_TOTAL,
                "Feature values per reference-profile bin: numeric bin index 0..len(edges) "
                "(left-closed), category (else 'other') or 'missing'.",
                labels=(*LABELS, "feature", "bin"),
            ),
            CounterMetricFamily(
                FEEDBACK_TOTAL,
                "Labelled feedback on predictions, by outcome (correct, incorrect).",
                labels=(*LABELS, "outcome"),
            ),
            CounterMetricFamily(
                UPDATE_OUTCOMES_TOTAL,
                "Device updates that reached a terminal phase, by target version and outcome "
                "(Committed, RolledBack, Failed, TimedOut).",
                labels=UPDATE_OUTCOME_LABELS,
            ),
        ]


def _feature_bins(
    name: str, counts: FeatureCounts, reference: ReferenceBins
) -> Iterable[tuple[str, int]]:
    """(bin label, count) pairs of one feature's counts. Numeric bins are labelled by
    index, not as a Prometheus ``le`` histogram: the reference bins are left-closed
    quantile bins ``[e[i-1], e[i])`` while ``le`` means "≤ bound", and drift statistics
    compare bin masses, not cumulative counts. Categories outside the reference become
    ``"other"`` (several pairs may carry it; the caller adds them up)."""
    if counts.counts is not None:
        yield from ((str(i), c) for i, c in enumerate(counts.counts))
    if counts.categories is not None:
        known = reference.categorical.get(name, ())
        for category, count in counts.categories.items():
            yield (category if category in known else OTHER), count
    yield MISSING, counts.missing


def _add_histograms(
    family: Metric, table: Mapping[SeriesKey, _Histogram], bounds: Sequence[float]
) -> None:
    assert isinstance(family, HistogramMetricFamily)
    # ``le`` spelled as prometheus_client's own Histogram spells it ("0.5", "1.0", "+Inf").
    les = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
    for key, hist in table.items():
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(les, hist.counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family.add_metric(list(key), cumulative, sum_value=hist.sum)
