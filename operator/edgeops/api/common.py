"""Types shared by several kinds, plus the small schema vocabulary the CRD generator reads.

Conventions that the CRD generator (``edgeops.crdgen``) relies on:

* every field has a ``description`` - it is what ``kubectl explain`` prints;
* cross-field rules are CEL ``x-kubernetes-validations`` attached with :func:`cel` through
  ``json_schema_extra``; the same rule is also checked in Python by a model validator, so
  objects built in code fail the same way the API server would fail them;
* every list has ``max_length`` and every string used in CEL a ``max_length`` - the API
  server refuses CRDs whose CEL rules cannot be shown to be cheap.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import WithJsonSchema

from .constants import RESERVED_BUCKET_ROOTS


class ApiModel(BaseModel):
    """Base of spec types: camelCase JSON names, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StatusModel(BaseModel):
    """Base of status types: camelCase JSON names; unknown fields ignored so an older
    operator can read a status written by a newer one."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def cel(rule: str, message: str, *, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry. ``message`` must name the field it is about;
    ``field_path`` (relative to the rule's object) makes the API server report the error at
    that field. No ``messageExpression``: formatting numbers with string() has an unbounded
    estimated cost and the API server refuses the CRD."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: JsonDict) -> JsonDict:
    """``json_schema_extra`` carrying CEL rules."""
    return {"x-kubernetes-validations": list(rules)}


def list_map(*keys: str) -> JsonDict:
    """``json_schema_extra`` for a list whose items are unique by ``keys`` (server-side
    apply merges such lists item by item; duplicates are rejected without any CEL cost)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: JsonDict = {"x-kubernetes-list-type": "set"}


def unique(values: list[str]) -> list[str]:
    """Pydantic-side twin of ``x-kubernetes-list-type: set``."""
    if len(set(values)) != len(values):
        raise ValueError("values must be unique")
    return values


# --- scalar types -----------------------------------------------------------------------

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA256_HEX = r"^[a-f0-9]{64}$"
GO_DURATION = r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+"
CRON = r"@(annually|yearly|monthly|weekly|daily|hourly)|\S+( \S+){4}"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_.-]*$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Sha256 = Annotated[str, Field(min_length=64, max_length=64, pattern=SHA256_HEX)]
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Shortest duration a period, timeout or window may be: a shorter one makes a loop that
#: wakes the operator (and the API server) continuously (``0s`` reconciled a Dataset ~33
#: times a second). One second, not a minute: the integration tests run schedules of 2 s.
MIN_DURATION_SECONDS: Final = 1
#: Longest duration any field may hold: ten years (87600h). Longer ones overflow the date
#: arithmetic of the controllers (and Go's time.Duration, at 292 years, in CEL).
MAX_DURATION_SECONDS: Final = 3650 * 86400
_MAX_CEL = "87600h"


def duration_seconds(text: str) -> float:
    """Seconds of a Go duration such as 90s, 1h30m or 1.5h (units ms, s, m, h); ValueError
    for any other text."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def duration_problem(text: str, minimum: int = MIN_DURATION_SECONDS) -> str | None:
    """Why the Go duration ``text`` is outside [``minimum`` s, 10 years], or None. The
    message starts with the value; callers prefix the field."""
    try:
        seconds = duration_seconds(text)
    except ValueError as error:
        return str(error)
    if seconds < minimum:
        return f"{text} is shorter than the {minimum}s any EdgeOps period or timeout must be"
    if seconds > MAX_DURATION_SECONDS:
        return (
            f"{text} is longer than the {MAX_DURATION_SECONDS // (365 * 86400)} years "
            f"({_MAX_CEL}) any EdgeOps duration may be"
        )
    return None


def duration_cel(minimum: int, *, guard: str | None = None) -> JsonDict:
    """The CEL twin of :func:`duration_problem` (Kubernetes CEL has ``duration()``);
    ``guard`` limits it to strings that are durations (a schedule may be a cron)."""
    rule = f"duration(self) >= duration('{minimum}s') && duration(self) <= duration('{_MAX_CEL}')"
    if guard is not None:
        rule = f"!({guard}) || ({rule})"
    return validations(cel(rule, f"duration: must be from {minimum}s to {_MAX_CEL} (10 years)"))


def _bounded(minimum: int) -> AfterValidator:
    def check(value: str) -> str:
        problem = duration_problem(value, minimum)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


#: A period, timeout or window: 1s to 10 years.
Duration = Annotated[
    str,
    Field(
        max_length=32,
        pattern=f"^{GO_DURATION}$",
        json_schema_extra=duration_cel(MIN_DURATION_SECONDS),
    ),
    _bounded(MIN_DURATION_SECONDS),
]
#: A one-off wait, where 0s means "no wait": 0s to 10 years.
Delay = Annotated[
    str,
    Field(max_length=32, pattern=f"^{GO_DURATION}$", json_schema_extra=duration_cel(0)),
    _bounded(0),
]
Cron = Annotated[str, Field(max_length=128, pattern=f"^({CRON})$")]
#: a column or metric name (CSV header, Keras metric name, PromQL-safe).
Identifier = Annotated[str, Field(min_length=1, max_length=63, pattern=IDENTIFIER)]
Uri = Annotated[str, Field(min_length=1, max_length=2048)]

_QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.fullmatch(_QUANTITY, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)")
    return value


#: A Kubernetes resource quantity: ``1``, ``500m``, ``2Gi``.
Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _timestamp_in(value: object) -> object:
    if isinstance(value, datetime):
        return format_time(value)
    return value


def _check_timestamp(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return value


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, the way Kubernetes writes timestamps."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str | None) -> datetime | None:
    """An RFC 3339 timestamp (as Kubernetes and :func:`format_time` write it) as an aware
    datetime, or None when absent or unreadable."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


#: Kept as the string the API server returns; datetimes are accepted and formatted.
Timestamp = Annotated[
    str,
    BeforeValidator(_timestamp_in),
    AfterValidator(_check_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

ExportFormat = Literal["onnx", "tflite", "tflite-int8", "tflm"]
TargetType = Literal["linux", "mcu"]
ArtifactFormat = Literal[
    "onnx", "tflite", "tflite-int8", "tflm", "savedmodel", "model-card", "reference-profile"
]


# --- references -------------------------------------------------------------------------


class LocalObjectReference(ApiModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object (same namespace).")


class DatasetRef(ApiModel):
    """A Dataset and, optionally, one of its versions."""

    name: ObjectName = Field(description="Name of the Dataset in the same namespace.")
    version: Sha256 | None = Field(
        None,
        description="Dataset version (SHA-256 of its manifest). Absent means the latest "
        "version at the time the training starts; the resolved version is recorded in status.",
    )


_RESERVED_LIST = "[" + ", ".join(f"'{root}'" for root in RESERVED_BUCKET_ROOTS) + "]"
_RESERVED_PREFIX = (
    "s3.prefix: without a bucket must not overlap the operator's reserved roots "
    + ", ".join(RESERVED_BUCKET_ROOTS)
)
_DOTS_PREFIX = "s3.prefix: without a bucket must not contain '..'"
#: The operator's bucket is a setting the API server cannot see; its default name is
#: refused at admission, any other name at run time (edgeops.datasets.layout.check_s3_source).
DEFAULT_OPERATOR_BUCKET = "edgeops"
_DEFAULT_BUCKET_PREFIX = (
    f"s3.prefix: in bucket '{DEFAULT_OPERATOR_BUCKET}' (the operator's default bucket) must "
    "not overlap the operator's reserved roots "
    + ", ".join(RESERVED_BUCKET_ROOTS)
    + " or contain '..'"
)


class S3Location(ApiModel):
    """A prefix in an S3-compatible object store."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            # Both directions: 'blobs/x/' is under a root, and 'blob' lists all of 'blobs/'.
            cel(
                f"has(self.bucket) ? true : {_RESERVED_LIST}"
                ".all(r, !self.prefix.startsWith(r) && !r.startsWith(self.prefix))",
                _RESERVED_PREFIX,
                field_path=".prefix",
            ),
            cel(
                "has(self.bucket) ? true : !self.prefix.contains('..')",
                _DOTS_PREFIX,
                field_path=".prefix",
            ),
            cel(
                f"has(self.bucket) && self.bucket == '{DEFAULT_OPERATOR_BUCKET}' ? "
                f"!self.prefix.contains('..') && {_RESERVED_LIST}"
                ".all(r, !self.prefix.startsWith(r) && !r.startsWith(self.prefix)) : true",
                _DEFAULT_BUCKET_PREFIX,
                field_path=".prefix",
            ),
        )
    )

    bucket: str | None = Field(
        None,
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
        description="Bucket name. Absent means the operator's configured data bucket. In the "
        "operator's own bucket (named or not) the prefix must not overlap its reserved roots: "
        "refused here for the default name 'edgeops', and by the operator (SourceRefused, "
        "nothing read) whatever the bucket is called.",
    )
    prefix: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[^/].*$",
        description="Key prefix (no leading slash), e.g. 'raw/imu/'. A plain key prefix: "
        "'raw/imu' also matches 'raw/imu2/...', so end it with '/' to mean a folder. Without "
        "a bucket it must not overlap the operator's own roots ("
        + ", ".join(RESERVED_BUCKET_ROOTS)
        + ").",
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> S3Location:
        if self.bucket == DEFAULT_OPERATOR_BUCKET and (
            ".." in self.prefix
            or any(
                self.prefix.startswith(root) or root.startswith(self.prefix)
                for root in RESERVED_BUCKET_ROOTS
            )
        ):
            raise ValueError(_DEFAULT_BUCKET_PREFIX)
        if self.bucket is None:
            if any(
                self.prefix.startswith(root) or root.startswith(self.prefix)
                for root in RESERVED_BUCKET_ROOTS
            ):
                raise ValueError(_RESERVED_PREFIX)
            if ".." in self.prefix:
                raise ValueError(_DOTS_PREFIX)
        return self


class ArtifactRef(StatusModel):
    """A content-addressed file in the object store."""

    uri: Uri = Field(description="s3://bucket/key of the artifact.")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: Sha256 = Field(description="SHA-256 of the content, lower-case hex.")
    format: ArtifactFormat = Field(description="What the file is.")
    name: str | None = Field(
        None, max_length=256, description="File name to use when the artifact is downloaded."
    )


class ResourceRequirements(ApiModel):
    """Compute resources, as in a container spec."""

    requests: dict[str, Quantity] | None = Field(
        None,
        max_length=16,
        description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.",
    )
    limits: dict[str, Quantity] | None = Field(
        None, max_length=16, description="Maximum resources, e.g. {cpu: 2, memory: 4Gi}."
    )


class LabelSelectorRequirement(ApiModel):
    """A label requirement, as in metav1.LabelSelectorRequirement."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                "selector.matchExpressions[].values: must be non-empty for In and NotIn "
                "and empty for Exists and DoesNotExist",
            )
        )
    )

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        None, max_length=64, description="Values for In and NotIn; empty otherwise."
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values != bool(self.values):
            raise ValueError(
                "selector.matchExpressions[].values: must be non-empty for In and NotIn "
                "and empty for Exists and DoesNotExist"
            )
        return self


class LabelSelector(ApiModel):
    """Selects objects by labels (metav1.LabelSelector). An empty selector matches all."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        None, max_length=64, description="Labels that must all be present with these values."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        None, max_length=32, description="Requirements that must all hold."
    )


# --- status building blocks -------------------------------------------------------------


class Condition(StatusModel):
    """A metav1.Condition: the state of one aspect of the object."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Condition type in CamelCase, e.g. Ready, Succeeded, DataDrift.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )
    last_transition_time: Timestamp = Field(description="When the status last changed.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        max_length=32768, description="Human-readable details, with the numbers behind it."
    )


class StatusBase(StatusModel):
    """Fields every EdgeOps status has."""

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra=list_map("type"),
        description="Current state, one entry per condition type (Ready on every kind).",
    )


class CodeVersion(StatusModel):
    """What code trained a model: the trainer image and a hash of its configuration."""

    image: str = Field(max_length=512, description="Trainer image reference as specified.")
    image_digest: str | None = Field(
        None,
        max_length=128,
        pattern=r"^sha256:[a-f0-9]{64}$",
        description="Resolved image digest (sha256:...), when known.",
    )
    config_hash: Sha256 = Field(
        description="SHA-256 of the canonical JSON of command, args, config and "
        "hyperparameters; a change means a code change."
    )


#: A slice with fewer test samples than this says nothing about fairness: the trainer
#: leaves it out of its reported gap and the fairness gate ignores it.
MIN_SLICE_SAMPLES = 5


class SliceMetrics(StatusModel):
    """Evaluation metrics restricted to one value of one slice column."""

    column: Identifier = Field(description="Slice column, e.g. 'site'.")
    value: str = Field(max_length=256, description="Value of the slice column.")
    samples: int = Field(ge=0, description="Number of test samples in the slice.")
    metrics: dict[str, float] = Field(
        default_factory=dict, max_length=32, description="Metric name to value."
    )


#: Longest reason kept for a failed export (status stays small).
MAX_EXPORT_ERROR = 600

IntervalMethod = Literal["wilson", "newcombe", "bootstrap"]


class MetricInterval(StatusModel):
    """How much a test metric can be trusted: its sample count and a two-sided confidence
    interval. Proportions (accuracy, ``<format>_accuracy``) use the Wilson score interval
    (``successes`` of ``samples``); a difference of two proportions (the fairness gap)
    Newcombe's hybrid score interval; other metrics (macro_f1, ece) a percentile bootstrap
    over the test rows."""

    samples: int = Field(ge=0, description="Test samples the metric was computed on.")
    successes: int | None = Field(
        None, ge=0, description="For a proportion: the count it is the share of."
    )
    low: float = Field(description="Lower bound of the interval.")
    high: float = Field(description="Upper bound of the interval.")
    confidence: float = Field(gt=0, lt=1, description="Two-sided confidence level, e.g. 0.95.")
    method: IntervalMethod = Field(description="wilson, newcombe or bootstrap.")
    detail: str | None = Field(
        None, max_length=256, description="What the interval is of, e.g. the two slices."
    )


class EvaluationMetrics(StatusModel):
    """Metrics on the test split: overall and per slice (for fairness gates)."""

    overall: dict[str, float] = Field(
        default_factory=dict,
        max_length=32,
        description="Metric name to value, e.g. {accuracy: 0.94, latency_ms: 3.1}.",
    )
    per_slice: list[SliceMetrics] = Field(
        default_factory=list, max_length=256, description="Metrics per slice value."
    )
    export_errors: dict[str, Annotated[str, Field(max_length=MAX_EXPORT_ERROR)]] = Field(
        default_factory=dict,
        max_length=8,
        description="Export format to why it failed: its conversion, or running it with its "
        "runtime on the test split (e.g. {tflite-int8: 'RuntimeError: ...'}). A failed "
        "export has no metrics and no artifact, so the gates and targets that need it fail "
        "with this reason.",
    )
    intervals: dict[str, MetricInterval] = Field(
        default_factory=dict,
        max_length=32,
        description="Sample count and confidence interval per overall metric (the "
        "evaluator's, at 0.95), so a gate can require the bound rather than the point "
        "estimate.",
    )


def describe_validation_error(error: ValidationError) -> str:
    """One line for an ``InvalidSpec`` condition: every message pydantic gave, ``; ``-joined
    (the field is named in each message by the models' validators and CEL mirrors)."""
    return "; ".join(_one_error(e["loc"], str(e["msg"])) for e in error.errors())


def _one_error(loc: tuple[int | str, ...], message: str) -> str:
    """``spec.<field>: <message>`` for a field's own check (its message does not name it),
    the message alone for a model-level one (it names its fields)."""
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    return ".".join(str(part) for part in ("spec", *loc)) + ": " + message


# --- total size -------------------------------------------------------------------------

#: Largest spec, as compact JSON with non-ASCII escaped as \uXXXX (bytes). Kopf keeps a
#: copy of the spec, written that way, in its last-handled-configuration annotation and
#: kubectl apply another in last-applied-configuration; all annotations of an object share
#: 256 KiB. A bigger Dataset spec made every Kopf patch fail with 422 ("Too long") and the
#: object undeletable (its finalizer could not be removed).
MAX_SPEC_BYTES: Final = 64 * 1024


def json_size(value: object) -> int:
    """Bytes of ``value`` as compact JSON with non-ASCII escaped (how Kopf stores it)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=True, default=str))


def spec_size_problem(spec: object) -> str | None:
    """Why ``spec`` (the raw JSON object) is too big, naming where its bytes are; None
    when it is within :data:`MAX_SPEC_BYTES`."""
    size = json_size(spec)
    if size <= MAX_SPEC_BYTES:
        return None
    path, largest = _largest(spec, "spec")
    return (
        f"spec: {size} bytes of JSON (non-ASCII escaped), more than the {MAX_SPEC_BYTES} a "
        f"spec may hold; the largest field is {path} ({largest} bytes)"
    )


def _largest(value: object, path: str) -> tuple[str, int]:
    """The deepest field holding more than half of ``value`` (else ``value`` itself) and
    its size in bytes: where to shrink."""
    size = json_size(value)
    children: list[tuple[str, object]] = []
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    for child_path, child in children:
        if json_size(child) * 2 > size:
            return _largest(child, child_path)
    return path, size


class SpecRoot(ApiModel):
    """Base of each kind's top-level spec: bounds its total size (:data:`MAX_SPEC_BYTES`);
    the admission webhook refuses a bigger one and the controllers report it as
    ``InvalidSpec`` through this same check."""

    @model_validator(mode="before")
    @classmethod
    def _bounded_size(cls, data: object) -> object:
        if isinstance(data, dict):
            problem = spec_size_problem(data)
            if problem:
                raise ValueError(problem)
        return data
