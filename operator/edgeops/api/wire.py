"""The device wire protocol: request and response bodies of the fleet gateway's ``/v1`` API.

Shared by the gateway (:mod:`edgeops.gateway`), which validates what devices send, and the
reference agent (:mod:`edgeops.device`), which builds it, so both sides agree by
construction. JSON names are camelCase; unknown fields are refused (HTTP 422) so a typo in a
firmware's report is an error, not silently dropped data.

Every request but enrollment is signed with the device's Ed25519 key following RFC 9421
(:mod:`edgeops.httpsig`), ``keyid`` = ``<namespace>/<device>``. Endpoints, all under
``/v1/devices/{namespace}/{name}``:

* ``GET  .../desired`` → :class:`DesiredState` (ETag; ``If-None-Match`` → 304);
* ``GET  .../artifacts/{sha256}`` → 307 to a short-lived presigned S3 URL of an artifact
  listed in the device's current desired manifest (404 ``ArtifactNotAssigned`` otherwise);
* ``POST .../status`` → :class:`StatusReport`;
* ``POST .../telemetry`` → :class:`TelemetryReport`;
* ``POST .../samples`` → :class:`SampleUpload`; answered ``{"sequence", "rows", "sha256",
  "written"}`` (``written`` false for an upload of rows already stored: a retry). Rows
  must fit the target Dataset's schema (422 ``InvalidSample`` names ``rows[i].<field>``);
  a labelled Dataset takes labelled rows only; at most ``maxRowsPerHour`` rows an hour
  (429 ``RateLimited`` with ``Retry-After``).

``sequence`` is one per-device counter across status, telemetry and sample reports: each
report carries a higher number than any the device sent before (409 ``StaleSequence``
otherwise), so a replayed or reordered report can never move a rollout or count twice.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .common import DNS_SUBDOMAIN
from .device import REASON_CODE, Health, UpdatePhase

#: Upper bounds (seconds) of the inference latency histogram's buckets; a report's
#: ``latencySeconds.counts`` has one more entry, for latencies above the last bound.
LATENCY_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
#: Upper bounds of the top-class confidence histogram's buckets (confidence is 0..1);
#: ``confidence.counts`` has one more entry, for confidences above 0.9.
CONFIDENCE_BUCKETS: Final[tuple[float, ...]] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_CLASSES: Final = 64
MAX_FEATURES: Final = 256
MAX_BINS: Final = 64
MAX_SAMPLE_ROWS: Final = 256
_COUNT = Annotated[int, Field(ge=0, le=2**53 - 1)]
_NAME = Annotated[str, Field(min_length=1, max_length=253)]
_CLASS = Annotated[str, Field(min_length=1, max_length=63)]
_FEATURE = Annotated[str, Field(min_length=1, max_length=63)]


class WireModel(BaseModel):
    """Base of wire bodies: camelCase JSON, unknown fields refused, and no type coercion
    (``"sequence": "7"`` is refused, not read as 7: a firmware sending the wrong JSON type
    has a bug the gateway should name, not hide)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class BucketCounts(WireModel):
    """Counts per bucket over fixed upper bounds: ``counts[i]`` counts values ≤ bound i and
    above bound i-1; the last entry counts values above the last bound."""

    counts: list[_COUNT] = Field(max_length=MAX_BINS + 1)
    sum: float | None = Field(None, ge=0, description="Sum of the observed values (seconds).")


class FeatureCounts(WireModel):
    """One feature's live values binned over the version's reference profile.

    Numeric features: ``counts`` over the profile's inner edges (``len(edges) + 1`` bins,
    left-closed, as :func:`edgeops.drift.histograms.bin_counts`): mass beyond the reference
    range lands in the open outer bins. Categorical features: ``categories``. ``missing``
    counts absent, null or NaN values.
    """

    counts: list[_COUNT] | None = Field(None, max_length=MAX_BINS + 1)
    categories: dict[_CLASS, _COUNT] | None = Field(None, max_length=MAX_CLASSES)
    missing: _COUNT = 0


class Feedback(WireModel):
    """Labelled feedback that arrived in the interval: predictions later confirmed or not."""

    correct: _COUNT = 0
    incorrect: _COUNT = 0


class TelemetryReport(WireModel):
    """Aggregates over one report interval of the model version the device runs.

    Counters are deltas since the device's previous telemetry report (not running totals),
    so a report the gateway refused or lost is lost once, never counted twice.
    """

    sequence: int = Field(ge=0, le=2**53 - 1)
    model: _NAME
    version: int = Field(ge=1)
    interval_seconds: float = Field(gt=0, le=86400, description="Length of the interval.")
    inferences: _COUNT = 0
    errors: _COUNT = Field(0, description="Inputs the model failed on.")
    latency_seconds: BucketCounts | None = Field(
        None, description="Inference latency over LATENCY_BUCKETS_SECONDS."
    )
    predictions: dict[_CLASS, _COUNT] = Field(
        default_factory=dict, max_length=MAX_CLASSES, description="Predicted class → count."
    )
    confidence: BucketCounts | None = Field(
        None, description="Top-class confidence over CONFIDENCE_BUCKETS."
    )
    features: dict[_FEATURE, FeatureCounts] = Field(default_factory=dict, max_length=MAX_FEATURES)
    feedback: Feedback | None = None

    @model_validator(mode="after")
    def _counts_within_inferences(self) -> TelemetryReport:
        # Every prediction and every confidence observation is one inference of the
        # interval: more of them than inferences is a counting bug on the device, and
        # would skew the class mix and confidence the drift monitor reads.
        predicted = sum(self.predictions.values())
        if predicted > self.inferences:
            raise ValueError(
                f"predictions add up to {predicted}, more than inferences ({self.inferences})"
            )
        for name, buckets in (
            ("confidence", self.confidence),
            ("latencySeconds", self.latency_seconds),
        ):
            if buckets is not None and sum(buckets.counts) > self.inferences:
                raise ValueError(
                    f"{name}.counts add up to {sum(buckets.counts)}, more than inferences "
                    f"({self.inferences})"
                )
        return self


SampleReason = Literal["LowConfidence", "Misclassified", "Random"]
FeatureValue = float | int | str | bool | None


class SampleRow(WireModel):
    """One input the device chose to upload, with what the model said about it."""

    features: dict[_FEATURE, FeatureValue] = Field(max_length=MAX_FEATURES)
    prediction: _CLASS | None = None
    confidence: float | None = Field(None, ge=0, le=1)
    label: _CLASS | None = Field(None, description="Ground truth, when the device has it.")
    reason: SampleReason | None = Field(None, description="Why the sampling policy chose it.")


class SampleUpload(WireModel):
    """Rows for the inbox of the Dataset the EdgeModel's sampling policy names."""

    sequence: int = Field(ge=0, le=2**53 - 1)
    model: _NAME
    version: int = Field(ge=1)
    rows: list[SampleRow] = Field(min_length=1, max_length=MAX_SAMPLE_ROWS)


# --- enrollment, desired state and status reports -----------------------------------------


class Capabilities(WireModel):
    """What the agent can run."""

    arch: str | None = Field(None, max_length=32)
    runtimes: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=8)
    agent_version: str | None = Field(None, max_length=64)


class EnrollRequest(WireModel):
    """``POST /v1/enroll``: a bootstrap token and the key the request is signed with (proof
    of possession: the RFC 9421 signature's ``keyid`` is ``<namespace>/<name>``)."""

    token: str = Field(min_length=1, max_length=128)
    namespace: str = Field(min_length=1, max_length=63, pattern=DNS_SUBDOMAIN)
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    public_key: str = Field(
        min_length=44, max_length=44, description="base64 of the 32 raw Ed25519 bytes"
    )
    target_type: Literal["linux", "mcu"]
    hardware: str | None = Field(None, max_length=128)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    capabilities: Capabilities = Field(default_factory=Capabilities)


class WireSlot(WireModel):
    """What one A/B slot holds."""

    model: str | None = Field(None, max_length=253)
    version: int | None = Field(None, ge=1)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    installed_at: str | None = Field(None, max_length=64, description="RFC 3339 time.")


class WireSlots(WireModel):
    """A/B slots: the device boots ``active``."""

    active: Literal["A", "B"]
    a: WireSlot | None = None
    b: WireSlot | None = None


class UpdateReport(WireModel):
    """Where the update to ``targetVersion`` is; the last four phases are terminal."""

    target_version: int = Field(ge=1)
    phase: UpdatePhase
    attempt: int = Field(1, ge=1, le=1000)
    reason_code: str | None = Field(None, max_length=63, pattern=REASON_CODE)
    message: str | None = Field(None, max_length=1024)


class StatusReport(WireModel):
    """``POST .../status``: what the device runs and how its update goes."""

    sequence: int = Field(ge=0, le=2**53 - 1)
    agent_version: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=253)
    version: int | None = Field(None, ge=1)
    slots: WireSlots | None = None
    update: UpdateReport | None = None
    health: Health | None = None


class DesiredTarget(WireModel):
    """The EdgeModel target the device installs: its name, type and artifact format."""

    name: str = Field(max_length=63)
    type: Literal["linux", "mcu"]
    format: str = Field(max_length=32)


class ProfileFeature(WireModel):
    """Bins of one feature in the version's reference profile: numeric ``edges`` (inner
    edges; see :class:`FeatureCounts`) or categorical ``categories``."""

    edges: list[float] | None = Field(None, max_length=MAX_BINS)
    categories: list[str] | None = Field(None, max_length=MAX_CLASSES)


class DesiredSampling(WireModel):
    """The EdgeModel's sampling policy, as the agent applies it."""

    confidence_below: float | None = Field(None, ge=0, le=1)
    misclassified: bool = True
    random_share: float = Field(0.0, ge=0, le=1)
    max_rows_per_hour: int = Field(0, ge=0)


class DesiredRetries(WireModel):
    """The governing rollout's ``spec.deviceRetries``: retries of a download that failed."""

    limit: int = Field(ge=0, le=10, description="Attempts after the first.")
    backoff_seconds: int = Field(ge=1, le=3600, description="First wait; doubles per retry.")


class DesiredState(WireModel):
    """``GET .../desired``: what the device should run and how it should report."""

    model: _NAME
    model_uid: str = Field(max_length=64)
    version: int = Field(ge=1)
    rollout: str | None = Field(None, description="FleetRollout that chose the version.")
    rollout_uid: str | None = Field(
        None,
        max_length=64,
        description="UID of that FleetRollout. An update is the (version, manifest, rollout "
        "UID): a new rollout of the same version is a new update, so a device that gave up "
        "on it under an earlier rollout tries again.",
    )
    cohort: Literal["canary", "stable"]
    target: DesiredTarget
    bundle_manifest: str = Field(
        description="The signed bundle envelope exactly as stored: verify it with "
        "edgeops.signing.verify_manifest before trusting anything in it."
    )
    report_interval_seconds: int = Field(60, ge=1, description="How often to report.")
    profile: dict[str, ProfileFeature] | None = Field(
        None, description="Reference-profile bins telemetry feature counts use."
    )
    sampling: DesiredSampling | None = Field(None, description="What to upload, if anything.")
    retries: DesiredRetries | None = Field(
        None,
        description="Retries of failed downloads, from the rollout that chose the version; "
        "absent: the agent's defaults.",
    )


# --- answers ----------------------------------------------------------------------------------


class ErrorBody(WireModel):
    """Every 4xx and 5xx answer: a machine-readable reason and a message for people."""

    reason: str = Field(description="CamelCase reason, e.g. StaleSequence, TokenExpired.")
    message: str


class EnrollAnswer(WireModel):
    """``POST /v1/enroll`` → 201: the device and where its approval stands."""

    namespace: str
    name: str
    enrollment: Literal["Pending", "Approved", "Rejected", "Revoked"]


class StatusAnswer(WireModel):
    """``POST .../status`` → 200; ``written`` is false when nothing the Device shows changed."""

    sequence: int
    written: bool


class TelemetryAnswer(WireModel):
    """``POST .../telemetry`` → 200: the series the report was counted into."""

    sequence: int
    version: int
    cohort: Literal["canary", "stable"]


class SampleAnswer(WireModel):
    """``POST .../samples`` → 200; ``written`` is false for rows already stored (a retry)."""

    sequence: int
    rows: int
    sha256: str = Field(description="SHA-256 of the stored object, hex.")
    written: bool
