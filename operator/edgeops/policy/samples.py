"""Device samples for a Dataset's inbox, as pure functions: where an inbox is, whether the
rows a device uploads fit the Dataset's schema, and the JSON Lines object they become.

The gateway (:mod:`edgeops.gateway.samples`) validates and writes; the Dataset's next
collection (:mod:`edgeops.datasets`) reads the object back and cleans it. The checks here
mirror what cleaning (:mod:`edgeops.datasets.cleaning`) accepts, so a row the gateway
writes is never one cleaning rejects: a rejected row counts against the Dataset's
``maxRejectedFraction``, and one device must not be able to stop a Dataset from
publishing new versions by uploading rows that will be rejected. Hence:

* every feature of the schema is present, no other one; a missing value (``null``, an
  empty string, or a string the feature declares in ``missingTokens``: what cleaning reads
  as missing; ``"NA"`` is a value unless declared) only where the feature is nullable or the
  Dataset imputes missing values (``missingValues`` FillZero or FillMean);
* types are strict: float takes JSON numbers, int takes integral numbers, string takes
  strings, bool takes ``true``/``false``; numbers are finite and within ``min``/``max``
  (when ``rangeChecks`` is on) and within ±(2**53 - 1), which JSON carries exactly;
* a labelled Dataset takes labelled rows only: cleaning rejects a row without its label
  column, so a row without ``label`` is refused at upload. The label is a class name; it is
  not checked against known classes, since new ones may appear in new data;
* the label of a row for an unlabelled Dataset is not written (there is no column for it);
* slice and row-key columns that are neither features nor the label are taken from the
  device's labels (e.g. ``site``); a device without one cannot upload to that Dataset.

An object is named by the SHA-256 of its bytes (:func:`inbox_object`), so an upload
retried after a lost answer lands on the same key and is not written twice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgeops.api.dataset import DatasetSchema, DatasetSpec, Feature, ValidationRules
from edgeops.api.wire import SampleRow
from edgeops.canonical_json import jcs

INBOX_ROOT: Final = "inbox/"
#: Suffix of the objects the gateway writes; inbox sources read these as JSON Lines
#: whatever the Dataset's ``spec.format`` is (that describes files users drop in).
INBOX_OBJECT_SUFFIX: Final = ".jsonl"
#: Integers a double holds exactly (I-JSON, RFC 7493 §2.2): what the JCS encoding carries.
SAFE_INTEGER: Final = 2**53 - 1


class InvalidSampleError(ValueError):
    """A row does not fit the schema: ``row`` is its index in the upload, ``field`` the
    offending field as a path (``features.ax``, ``label``); the message names the rule,
    never the value (samples may be personal data)."""

    def __init__(self, row: int, field: str, rule: str) -> None:
        super().__init__(f"rows[{row}].{field}: {rule}")
        self.row, self.field, self.rule = row, field, rule


class MissingDeviceLabelError(ValueError):
    """The schema needs a column (slice or row key) taken from device labels that the
    device does not carry; ``column`` names it."""

    def __init__(self, column: str) -> None:
        super().__init__(
            f"the Dataset's schema needs column {column!r} (a slice or row-key column), "
            f"taken from the device's label {column!r}, which the device does not have"
        )
        self.column = column


def inbox_prefix(namespace: str, dataset: str) -> str:
    """A Dataset's own inbox: ``inbox/<namespace>/<dataset>/``."""
    return f"{INBOX_ROOT}{namespace}/{dataset}/"


def source_inbox_prefix(namespace: str, dataset: str, prefix: str | None) -> str:
    """The prefix an inbox source reads (and retention deletes under, and the gateway
    writes under): the Dataset's own inbox, or a custom prefix inside its namespace's
    inbox. The CRD checks the shape of a custom prefix (and DatasetSpec its pydantic twin)
    but cannot see the namespace, so this checks the namespace.

    Raises ValueError for a prefix outside ``inbox/<namespace>/`` or with ``..``."""
    if not prefix:
        return inbox_prefix(namespace, dataset)
    own = f"{INBOX_ROOT}{namespace}/"
    if not prefix.startswith(own) or ".." in prefix or not prefix.endswith("/"):
        raise ValueError(
            f"sources[].inbox.prefix: {prefix!r} is outside this namespace's inbox {own}"
        )
    return prefix


def dataset_inbox(namespace: str, dataset: str, spec: DatasetSpec) -> str | None:
    """Where uploads for the Dataset go: its first inbox source's prefix, or None when it
    has no inbox source. Raises ValueError as :func:`source_inbox_prefix`."""
    for source in spec.sources:
        if source.inbox is not None:
            return source_inbox_prefix(namespace, dataset, source.inbox.prefix)
    return None


def is_missing(value: Any, tokens: Sequence[str] | None = None) -> bool:
    """Whether cleaning reads ``value`` as a missing value: ``None``, NaN, a string that is
    empty after stripping spaces or (stripped) one of the column's declared ``tokens``
    (:func:`edgeops.datasets.cleaning` applies the same rule)."""
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip()
        return text == "" or (tokens is not None and text in tokens)
    return isinstance(value, float) and math.isnan(value)


def _typed(value: Any, feature: Feature, rules: ValidationRules) -> Any:
    """``value`` as written for ``feature``; raises ValueError naming the rule."""
    if is_missing(value, feature.missing_tokens):
        if feature.nullable or rules.missing_values != "Reject":
            return None
        raise ValueError("has no value and the feature is not nullable")
    kind = feature.type
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number ({kind})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be finite")
    if abs(value) > SAFE_INTEGER:
        raise ValueError(f"must be within ±{SAFE_INTEGER}")
    number: int | float = value
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be an integer")
        number = int(value)
    elif isinstance(value, int):
        number = float(value)
    if rules.range_checks and (
        (feature.min is not None and number < feature.min)
        or (feature.max is not None and number > feature.max)
    ):
        low = "-inf" if feature.min is None else f"{feature.min:g}"
        high = "inf" if feature.max is None else f"{feature.max:g}"
        raise ValueError(f"outside [{low}, {high}]")
    return number


def extra_columns(schema: DatasetSchema) -> list[str]:
    """Slice and row-key columns that are neither features nor the label: their values
    come from the device's labels."""
    taken = {f.name for f in schema.features} | ({schema.label} if schema.label else set())
    extras: list[str] = []
    for column in [*(schema.slice_columns or []), *(schema.row_key or [])]:
        if column not in taken and column not in extras:
            extras.append(column)
    return extras


def sample_records(
    rows: Sequence[SampleRow],
    schema: DatasetSchema,
    rules: ValidationRules,
    device_labels: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One record per row: the schema's features (typed, in schema order), the label column
    when the schema has one, and the extra columns (:func:`extra_columns`) from
    ``device_labels``.

    Raises:
        InvalidSampleError: the first row that does not fit (see the module docstring).
        MissingDeviceLabelError: an extra column the device has no (non-empty) label for.
    """
    features = {f.name: f for f in schema.features}
    extras: dict[str, str] = {}
    for column in extra_columns(schema):
        value = device_labels.get(column)
        if value is None or is_missing(value):
            raise MissingDeviceLabelError(column)
        extras[column] = value
    records = []
    for index, row in enumerate(rows):
        unknown = sorted(set(row.features) - set(features))
        if unknown:
            raise InvalidSampleError(index, f"features.{unknown[0]}", "not a feature of the schema")
        record: dict[str, Any] = {}
        for name, feature in features.items():
            if name not in row.features:
                raise InvalidSampleError(index, f"features.{name}", "missing")
            try:
                record[name] = _typed(row.features[name], feature, rules)
            except ValueError as error:
                raise InvalidSampleError(index, f"features.{name}", str(error)) from None
        if schema.label is not None:
            if row.label is None or is_missing(row.label):
                rule = (
                    f"required: the Dataset is labelled (column {schema.label!r}) and its "
                    "collection rejects unlabelled rows"
                )
                raise InvalidSampleError(index, "label", rule)
            record[schema.label] = row.label.strip()
        record.update(extras)
        records.append(record)
    return records


@dataclass(frozen=True)
class InboxObject:
    """A JSON Lines object for an inbox: its key, bytes and SHA-256 (hex)."""

    key: str
    data: bytes
    sha256: str


def inbox_object(prefix: str, records: Sequence[Mapping[str, Any]]) -> InboxObject:
    """The JSON Lines object of ``records`` under ``prefix``: one RFC 8785 (JCS) object per
    line, in upload order, each line ending in ``\\n``; the key is
    ``<prefix><sha256 of the bytes>.jsonl``, so the same rows always make the same key.

    Raises ValueError for a prefix outside ``inbox/`` or with ``..`` (never written), and
    for content JCS cannot carry (a lone surrogate in a string)."""
    if not prefix.startswith(INBOX_ROOT) or ".." in prefix or not prefix.endswith("/"):
        raise ValueError(f"not an inbox prefix: {prefix!r}")
    data = b"".join(jcs(dict(record)) + b"\n" for record in records)
    digest = hashlib.sha256(data).hexdigest()
    return InboxObject(f"{prefix}{digest}{INBOX_OBJECT_SUFFIX}", data, digest)
