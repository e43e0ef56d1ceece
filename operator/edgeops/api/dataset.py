"""Dataset: a named, versioned collection of samples in S3.

A version is the SHA-256 of a manifest listing (key, size, sha256) of every accepted
object, so the same content always gets the same version and retraining is reproducible.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from .common import (
    CRON,
    GO_DURATION,
    LIST_SET,
    MIN_DURATION_SECONDS,
    ApiModel,
    Identifier,
    S3Location,
    Sha256,
    SpecRoot,
    StatusBase,
    StatusModel,
    Timestamp,
    Uri,
    cel,
    duration_cel,
    duration_problem,
    list_map,
    unique,
    validations,
)

BuiltinDatasetName = Literal["basic-motions", "italy-power-demand", "seattle-weather", "digits"]
DataFormat = Literal["csv", "jsonl", "parquet", "npz"]
FeatureType = Literal["float", "int", "string", "bool"]
Classification = Literal["public", "internal", "confidential", "personal"]
DeletionPolicy = Literal["Retain", "Delete"]
#: Encodings a CSV or JSON Lines source may declare (Python codec names): UTF-8 (the
#: default; a byte-order mark is dropped), UTF-16 (with a byte-order mark, as Windows tools
#: write "Unicode" text; -le/-be without one), and the common legacy single- and multi-byte
#: code pages.
SourceEncoding = Literal[
    "utf-8", "utf-16", "utf-16-le", "utf-16-be", "iso-8859-1", "iso-8859-15",
    "windows-1250", "windows-1251", "windows-1252", "shift_jis", "euc-jp", "gb18030", "big5",
    "euc-kr", "koi8-r",
]  # fmt: skip
LegalBasis = Literal[
    "consent", "contract", "legal-obligation", "vital-interests", "public-task",
    "legitimate-interests",
]  # fmt: skip

_ONE_SOURCE = "sources[]: set exactly one of s3, http, inbox or builtin"
#: inbox/<namespace>/ - the namespace itself is checked when the source is read, since CEL
#: on a nested field cannot see metadata.namespace.
_INBOX_NAMESPACE = r"^inbox/[a-z0-9]([-a-z0-9]*[a-z0-9])?/"
_INBOX_ROOT = "sources[].inbox.prefix: must start with inbox/<namespace>/"
_INBOX_SLASH = "sources[].inbox.prefix: must end with /"
_INBOX_DOTS = "sources[].inbox.prefix: must not contain '..'"
_ENCODING_FORMAT = "sources[].encoding: only for format csv or jsonl (text files)"
_ENCODING_BUILTIN = "sources[].encoding: a builtin source brings its own files"
_ENCODING_INBOX = (
    "sources[].encoding: not for an inbox source (the gateway writes its objects as UTF-8)"
)


class HttpSource(ApiModel):
    """A file downloaded over HTTP(S)."""

    url: str = Field(
        max_length=2048, pattern=r"^https?://\S+$", description="http:// or https:// URL."
    )
    sha256: Sha256 | None = Field(
        None, description="Expected SHA-256 of the download; a mismatch fails the collection."
    )


class InboxSource(ApiModel):
    """Samples uploaded by devices through the gateway (low-confidence inputs, feedback)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!has(self.prefix) || self.prefix.matches('{_INBOX_NAMESPACE}')",
                _INBOX_ROOT,
                field_path=".prefix",
            ),
            cel(
                "!has(self.prefix) || self.prefix.endsWith('/')", _INBOX_SLASH, field_path=".prefix"
            ),
            cel(
                "!has(self.prefix) || !self.prefix.contains('..')",
                _INBOX_DOTS,
                field_path=".prefix",
            ),
        )
    )

    prefix: str | None = Field(
        None,
        max_length=1024,
        description="Key prefix in the data bucket, ending in '/'. Absent means "
        "inbox/<namespace>/<dataset>/. It must lie in the Dataset's own namespace's inbox, "
        "inbox/<namespace>/ (the operator refuses to collect from any other); retention "
        "deletes expired objects under it.",
    )

    @model_validator(mode="after")
    def _prefix(self) -> InboxSource:
        if self.prefix is not None:
            if not re.match(_INBOX_NAMESPACE, self.prefix):
                raise ValueError(_INBOX_ROOT)
            if not self.prefix.endswith("/"):
                raise ValueError(_INBOX_SLASH)
            if ".." in self.prefix:
                raise ValueError(_INBOX_DOTS)
        return self


class BuiltinSource(ApiModel):
    """A small public dataset shipped with EdgeOps, for demos and tests."""

    name: BuiltinDatasetName = Field(
        description="basic-motions (IMU activity), italy-power-demand (load curves), "
        "seattle-weather (tabular) or digits (8x8 images)."
    )


class DatasetSource(ApiModel):
    """Where samples come from. Exactly one of s3, http, inbox or builtin."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.s3), has(self.http), has(self.inbox), has(self.builtin)]"
                ".filter(x, x).size() == 1",
                _ONE_SOURCE,
            )
        )
    )

    s3: S3Location | None = Field(None, description="Objects under an S3 prefix.")
    http: HttpSource | None = Field(None, description="A file downloaded over HTTP(S).")
    inbox: InboxSource | None = Field(None, description="The gateway's device sample inbox.")
    builtin: BuiltinSource | None = Field(None, description="A dataset shipped with EdgeOps.")
    encoding: SourceEncoding | None = Field(
        None,
        description="Text encoding of the source's CSV or JSON Lines files (not for parquet "
        "or npz, nor for builtin or inbox sources: the gateway writes UTF-8). Absent: UTF-8, "
        "a byte-order mark dropped; bytes that do not decode reject only the rows they are "
        "in (reason Unreadable, with the line).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetSource:
        if sum(x is not None for x in (self.s3, self.http, self.inbox, self.builtin)) != 1:
            raise ValueError(_ONE_SOURCE)
        return self


class Feature(ApiModel):
    """One input column."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "features[].min: must not exceed max",
            ),
            cel(
                "(!has(self.min) && !has(self.max)) || self.type in ['float', 'int']",
                "features[].min/max: only float and int features can have a range",
            ),
        )
    )

    name: Identifier = Field(description="Column name.")
    type: FeatureType = Field(description="float, int, string or bool.")
    min: float | None = Field(None, description="Smallest valid value (range check).")
    max: float | None = Field(None, description="Largest valid value (range check).")
    nullable: bool = Field(False, description="Whether missing values are valid.")
    missing_tokens: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] | None = (
        Field(
            None,
            max_length=16,
            json_schema_extra=LIST_SET,
            description="Text that means 'missing' in this column, compared case-sensitively "
            "with the cell stripped of spaces, e.g. ['NA', 'null', '-999']. Absent: only an "
            "empty cell (or JSON/Parquet null, NaN) is missing, so 'NA' (Namibia) is a value.",
        )
    )

    @field_validator("missing_tokens")
    @classmethod
    def _unique_tokens(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else unique(value)

    @model_validator(mode="after")
    def _range(self) -> Feature:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("features[].min: must not exceed max")
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError("features[].min/max: only float and int features can have a range")
        return self


class DatasetSchema(ApiModel):
    """Columns of the samples. The label column is not a feature."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.label) || !self.features.exists(f, f.name == self.label)",
                "spec.schema.label: the label column must not also be listed in features",
            )
        )
    )

    features: list[Feature] = Field(
        min_length=1,
        max_length=256,
        json_schema_extra=list_map("name"),
        description="Input columns, in model input order.",
    )
    label: Identifier | None = Field(
        None,
        description="Column holding the class label; absent for unlabelled data. Classes "
        "are compared by value: integral numbers are written as integers (0, 0.0 and '0.0' "
        "are class '0'), other numbers as the shortest float text ('2.50' is '2.5'), other "
        "text stripped of surrounding spaces; the same holds for slice and row-key values.",
    )
    slice_columns: list[Identifier] | None = Field(
        None,
        max_length=8,
        json_schema_extra=LIST_SET,
        description="Columns (e.g. site, hardware) whose values define the slices that "
        "fairness gates compare.",
    )
    row_key: list[Identifier] | None = Field(
        None,
        max_length=8,
        json_schema_extra=LIST_SET,
        description="Columns identifying a row; the train/validation/test split hashes them, "
        "so a row stays in the same split across versions. Absent: the whole row is hashed.",
    )

    @field_validator("slice_columns", "row_key")
    @classmethod
    def _unique_columns(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else unique(value)

    @model_validator(mode="after")
    def _label_not_feature(self) -> DatasetSchema:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("spec.schema.features: names must be unique")
        if self.label is not None and self.label in names:
            raise ValueError(
                "spec.schema.label: the label column must not also be listed in features"
            )
        return self


class ValidationRules(ApiModel):
    """What makes a row valid. Invalid rows are rejected and counted by reason."""

    missing_values: Literal["Reject", "FillZero", "FillMean"] = Field(
        "Reject",
        description="What to do with a missing value in a non-nullable feature: Reject the "
        "row, or impute zero or the column mean.",
    )
    range_checks: bool = Field(
        True, description="Reject rows with values outside a feature's min/max."
    )
    dedupe: bool = Field(True, description="Drop exact duplicate rows.")
    max_rejected_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="If a collection rejects more than this fraction of rows, no new version "
        "is published and Validated turns False (reason TooManyRejected); the previous version "
        "stays Ready.",
    )


class Split(ApiModel):
    """Fractions of rows for training, validation and test; they must sum to 1."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.train + self.validation + self.test > 0.999 && "
                "self.train + self.validation + self.test < 1.001",
                "spec.split: train + validation + test must sum to 1",
            )
        )
    )

    train: float = Field(0.8, gt=0, le=1, description="Fraction used for training.")
    validation: float = Field(0.1, ge=0, lt=1, description="Fraction used for early stopping.")
    test: float = Field(0.1, gt=0, lt=1, description="Fraction used for metrics and gates.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if abs(self.train + self.validation + self.test - 1) >= 0.001:
            raise ValueError("spec.split: train + validation + test must sum to 1")
        return self


def _check_schedule(value: str) -> str:
    if re.fullmatch(GO_DURATION, value):
        problem = duration_problem(value)
        if problem:
            raise ValueError(problem)
    return value


#: GO_DURATION without backslashes: ``\.`` is not an escape CEL string literals know.
_CEL_DURATION = GO_DURATION.replace("\\.", "[.]")
#: A Dataset's collection schedule: a duration (1s to 10 years) or a cron expression.
Schedule = Annotated[
    str,
    Field(
        max_length=128,
        pattern=f"^({GO_DURATION}|{CRON})$",
        json_schema_extra=duration_cel(
            MIN_DURATION_SECONDS, guard=f"self.matches('^{_CEL_DURATION}$')"
        ),
    ),
    AfterValidator(_check_schedule),
]


class Collection(ApiModel):
    """When to look for new samples."""

    schedule: Schedule | None = Field(
        None,
        description="An interval such as 5m or 1h, or a cron expression ('0 3 * * *'). "
        "Absent: collect once, then only on new objects if onNewObjects is true.",
    )
    on_new_objects: bool = Field(
        False, description="Collect as soon as new objects appear in an s3 or inbox source."
    )
    backoff_limit: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of a collection Job whose pod crashed or was killed before the "
        "collection fails (a failure the collector reports, such as an unreachable source, "
        "is not retried by the Job: the operator retries it with backoff).",
    )
    active_deadline_seconds: int = Field(
        3600,
        ge=60,
        le=604800,
        description="Time limit of one collection Job, retries included; a Job over it fails "
        "with reason DeadlineExceeded and publishes nothing.",
    )


class Governance(ApiModel):
    """Data governance labels; personal data needs a legal basis and a retention period."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.classification != 'personal' || has(self.legalBasis)",
                "spec.governance.legalBasis: required when classification is personal",
                field_path=".legalBasis",
            ),
            cel(
                "self.classification != 'personal' || has(self.retentionDays)",
                "spec.governance.retentionDays: required when classification is personal",
                field_path=".retentionDays",
            ),
        )
    )

    classification: Classification = Field(
        description="public, internal, confidential or personal (GDPR personal data)."
    )
    legal_basis: LegalBasis | None = Field(
        None, description="GDPR Art. 6 legal basis; required for personal data."
    )
    retention_days: int | None = Field(
        None,
        ge=1,
        le=36500,
        description="Days a version is kept before its objects are deleted. Absent: forever "
        "(not allowed for personal data).",
    )
    region: str | None = Field(
        None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Region the data must stay in, e.g. eu-central-1.",
    )
    deletion_policy: DeletionPolicy = Field(
        "Retain",
        description="What deleting the Dataset does with its data in S3. Retain (default): "
        "its versions, profiles, rejected rows and inbox objects stay, and retention goes on "
        "deleting what is older than retentionDays (nothing without retentionDays), except "
        "versions still in use. Delete: all of it is deleted before the Dataset goes, except "
        "versions still in use, which are deleted once nothing uses them. In use: the "
        "dataset version of an EdgeModel's current, candidate or approved version, one its "
        "training template pins, or one an unfinished TrainingRun trains on. Inbox objects "
        "go only under this Dataset's own inbox prefixes, never under one another Dataset "
        "of the namespace reads. What is kept is listed in "
        "datasets/_retained/<namespace>/<name>/<uid>.json, which the operator's hourly "
        "retention pass works from.",
    )

    @model_validator(mode="after")
    def _personal(self) -> Governance:
        if self.classification == "personal":
            if self.legal_basis is None:
                raise ValueError(
                    "spec.governance.legalBasis: required when classification is personal"
                )
            if self.retention_days is None:
                raise ValueError(
                    "spec.governance.retentionDays: required when classification is personal"
                )
        return self


class DatasetSpec(SpecRoot):
    """Desired state of a Dataset."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.schema) || self.sources.all(s, has(s.builtin))",
                "spec.schema: required unless every source is builtin",
            ),
            cel(
                "self.format in ['csv', 'jsonl'] || self.sources.all(s, !has(s.encoding))",
                _ENCODING_FORMAT,
            ),
            cel("self.sources.all(s, !has(s.builtin) || !has(s.encoding))", _ENCODING_BUILTIN),
            cel("self.sources.all(s, !has(s.inbox) || !has(s.encoding))", _ENCODING_INBOX),
        )
    )

    sources: list[DatasetSource] = Field(
        min_length=1, max_length=8, description="Where samples come from."
    )
    format: DataFormat = Field("csv", description="File format: csv, jsonl, parquet or npz.")
    data_schema: DatasetSchema | None = Field(
        None,
        alias="schema",
        description="Columns of the samples. Builtin datasets bring their own.",
    )
    validation: ValidationRules = Field(
        default_factory=ValidationRules, description="Row validation rules."
    )
    split: Split = Field(default_factory=Split, description="Train/validation/test fractions.")
    collection: Collection | None = Field(None, description="When to collect new samples.")
    governance: Governance = Field(description="Classification, legal basis and retention.")
    history_limit: int = Field(
        10, ge=1, le=100, description="Versions kept in status (older ones are pruned)."
    )

    @model_validator(mode="after")
    def _schema_needed(self) -> DatasetSpec:
        if self.data_schema is None and not all(s.builtin for s in self.sources):
            raise ValueError("spec.schema: required unless every source is builtin")
        encoded = [s for s in self.sources if s.encoding is not None]
        if encoded and self.format not in ("csv", "jsonl"):
            raise ValueError(_ENCODING_FORMAT)
        if any(s.builtin is not None for s in encoded):
            raise ValueError(_ENCODING_BUILTIN)
        if any(s.inbox is not None for s in encoded):
            raise ValueError(_ENCODING_INBOX)
        return self


class DatasetVersion(StatusModel):
    """One immutable version of the dataset."""

    id: Sha256 = Field(description="SHA-256 of the version manifest.")
    created: Timestamp = Field(description="When the version was published.")
    sample_count: int = Field(ge=0, description="Accepted rows.")
    rejected_count: int = Field(0, ge=0, description="Rejected rows in this collection.")
    class_balance: dict[str, int] = Field(
        default_factory=dict, max_length=256, description="Rows per label value."
    )
    manifest_uri: Uri = Field(description="s3:// URI of the manifest (key, size, sha256).")
    profile_uri: Uri | None = Field(
        None, description="s3:// URI of the statistical profile (per-feature histograms)."
    )


class UnreadObject(StatusModel):
    """A source object (or part of one) that was not read, so its rows are counted as
    rejected without being seen."""

    source: str = Field(max_length=2048, description="The object: s3:// URI or URL.")
    rows: int | None = Field(
        None,
        ge=0,
        description="Rows not read (counted as rejected). Absent: unknown (the object does "
        "not say, e.g. a Parquet file cut before its footer), which fails the collection.",
    )
    reason: str = Field(max_length=64, description="Unreadable, Malformed or TooLarge.")
    detail: str = Field("", max_length=512, description="What was wrong, and where.")


class RejectedSummary(StatusModel):
    """Rows rejected by the last collection."""

    total: int = Field(0, ge=0, description="Rejected rows.")
    by_reason: dict[str, int] = Field(
        default_factory=dict,
        max_length=32,
        description="Rejected rows per reason (MissingValue, OutOfRange, Duplicate, ...).",
    )
    unread: list[UnreadObject] = Field(
        default_factory=list,
        max_length=32,
        description="Objects, or parts of them, that were not read, with how many rows each "
        "held (included in total): a header with a repeated column, a Parquet row group "
        "that does not decode, npz arrays that do not line up, an object over a size limit.",
    )


class CollectionJob(StatusModel):
    """One collection: the batch/v1 Job that reads the sources and publishes a version."""

    job: str = Field(max_length=63, description="Name of the collection Job.")
    number: int = Field(
        ge=1, description="Collections started for this Dataset, this one included."
    )
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = Field(
        description="Pending until its pod runs; Succeeded or Failed once finished."
    )
    reason: str | None = Field(None, max_length=128, description="Why it is in this phase.")
    message: str | None = Field(None, max_length=2048, description="Details, with numbers.")
    start_time: Timestamp | None = Field(None, description="When the Job was created.")
    completion_time: Timestamp | None = Field(None, description="When it finished.")


class DatasetStatus(StatusBase):
    """Observed state of a Dataset."""

    latest_version: Sha256 | None = Field(None, description="Newest version id.")
    versions: list[DatasetVersion] = Field(
        default_factory=list,
        max_length=100,
        json_schema_extra=list_map("id"),
        description="Known versions, oldest first, at most spec.historyLimit.",
    )
    rejected: RejectedSummary | None = Field(None, description="Last collection's rejects.")
    last_collection_time: Timestamp | None = Field(None, description="Last collection.")
    collection: CollectionJob | None = Field(
        None, description="The current or last collection Job and what it says."
    )
