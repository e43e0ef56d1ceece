"""Schema check, type coercion, missing-value and range rules, duplicate removal.

Every row either comes out typed and valid, or is set aside with a reason; nothing is
dropped silently. Coercions (e.g. the string "3.5" read from CSV into a float feature) are
counted per column and direction so surprising inputs are visible in the report.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from edgeops.api import DatasetSchema, Feature, ValidationRules
from edgeops.canonical_json import sorted_json

from .rows import Rejected, RejectReason, Row, SourceRow

_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


class _InvalidError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_MISSING = object()


@dataclass
class CleanResult:
    accepted: list[Row] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    coercions: Counter[str] = field(default_factory=Counter)
    imputed: Counter[str] = field(default_factory=Counter)
    #: Rows accepted when they are not held in ``accepted`` (a streamed collection).
    accepted_count: int | None = None

    @property
    def accepted_rows(self) -> int:
        """How many rows were accepted (after de-duplication)."""
        return len(self.accepted) if self.accepted_count is None else self.accepted_count

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for rejected in self.rejected:
            if rejected.counted:  # unknown counts and notes are in ``unread``, not numbers
                counts[rejected.reason] += rejected.counted
        if self.duplicates:
            counts[RejectReason.DUPLICATE] = self.duplicates
        return dict(sorted(counts.items()))

    @property
    def invalid_count(self) -> int:
        """Rows rejected as invalid; duplicates are redundant, not invalid, so they do not
        count against the rejected-fraction limit. A whole object rejected unread counts
        as the rows it declares; one that declares none counts 0 here (``unread`` says
        "unknown" and :meth:`invalid_fraction` is 1), so no count claims a number it does
        not know."""
        return sum(r.counted for r in self.rejected)

    @property
    def unread(self) -> list[dict[str, Any]]:
        """Per source object, the rows of it that were not read (``rows`` ``None``:
        unknown) and why: whole objects refused, Parquet row groups that did not decode."""
        by_source: dict[str, dict[str, Any]] = {}
        for rejected in self.rejected:
            if not rejected.unread:
                continue
            entry = by_source.setdefault(
                rejected.source,
                {"source": rejected.source, "rows": 0, "reason": rejected.reason, "detail": ""},
            )
            known = entry["rows"] is not None and rejected.rows is not None
            entry["rows"] = entry["rows"] + rejected.rows if known else None
            entry["detail"] = (
                rejected.detail if not entry["detail"] else f"{entry['detail']}; {rejected.detail}"
            )[:512]
        return [by_source[source] for source in sorted(by_source)]

    def invalid_fraction(self) -> float:
        """Rejected rows over rows seen; 1 when an object could not be read and does not
        say how many rows it holds, since then no fraction below 1 can be known true."""
        if any(r.rows is None for r in self.rejected):
            return 1.0
        seen = self.accepted_rows + self.invalid_count
        return self.invalid_count / seen if seen else 0.0


def kept_columns(schema: DatasetSchema) -> list[str]:
    """Columns a version stores, in order: features, label, slice and row-key columns."""
    names = [f.name for f in schema.features]
    for extra in [schema.label, *(schema.slice_columns or []), *(schema.row_key or [])]:
        if extra is not None and extra not in names:
            names.append(extra)
    return names


def clean(
    batches: Iterable[tuple[str, Iterable[Row | Rejected]]],
    schema: DatasetSchema,
    rules: ValidationRules,
) -> CleanResult:
    """Validates the rows of every (source name, rows) batch against ``schema``.

    Accepted rows are deduplicated across all batches and sorted by content hash, so the
    result does not depend on file or listing order. (A collection streams the same
    rules through :class:`Cleaner` instead, see :mod:`edgeops.datasets.stream`.)
    """
    cleaner = Cleaner(schema, rules)
    for source, rows in batches:
        cleaner.result.accepted.extend(cleaner.feed(source, rows))
    cleaner.result.accepted.extend(cleaner.filled())
    result = cleaner.result
    result.accepted, result.duplicates = _dedupe(result.accepted, rules.dedupe)
    return result


class Cleaner:
    """The rules of :func:`clean`, one source at a time: :meth:`feed` yields the typed
    rows it accepts as it reads them (rejects, coercions and imputations are counted in
    ``result``, whose ``accepted`` stays empty); rows that wait for a column mean
    (``FillMean``) are held until :meth:`filled`. Means are sums in reading order, so a
    streamed collection fills the same values as :func:`clean`."""

    def __init__(self, schema: DatasetSchema, rules: ValidationRules) -> None:
        self.result = CleanResult()
        self.rules = rules
        self.features = {f.name: f for f in schema.features}
        self.extras = [c for c in kept_columns(schema) if c not in self.features]
        self._needs_mean: list[tuple[Row, list[str]]] = []
        #: Running per-column sums and counts of present values (FillMean only).
        self.sums: dict[str, float] = {}
        self.counts: Counter[str] = Counter()

    @property
    def averaged(self) -> list[str]:
        """Columns whose means a FillMean collection sums (numeric and bool features)."""
        if self.rules.missing_values != "FillMean":
            return []
        return [n for n, f in self.features.items() if f.type in ("float", "int", "bool")]

    def feed(self, source: str, rows: Iterable[Row | Rejected]) -> Iterator[Row]:
        result, rules = self.result, self.rules
        averaged = self.averaged
        for number, item in enumerate(rows, start=1):
            if isinstance(item, Rejected):
                result.rejected.append(item)
                continue
            try:
                typed, gaps = _typed_row(item, self.features, self.extras, rules, result.coercions)
            except _InvalidError as invalid:
                # The reader's line (a file line, a row position) where it says; else the
                # row's position in its batch (builtin datasets).
                line = item.line if isinstance(item, SourceRow) else number
                result.rejected.append(
                    Rejected(source, line, invalid.reason, invalid.detail, _jsonable(item))
                )
                continue
            if gaps and rules.missing_values == "FillMean":
                self._needs_mean.append((typed, gaps))
                continue
            for name in gaps:  # FillZero
                typed[name] = _fill(self.features[name], 0.0)
                result.imputed[name] += 1
            if averaged:
                self.add_to_means([typed])
            yield typed

    def add_to_means(self, rows: Iterable[Row]) -> None:
        """Adds present values of ``rows`` to the running sums (reading order)."""
        for row in rows:
            for name in self.averaged:
                value = row.get(name)
                if value is not None:
                    self.sums[name] = self.sums.get(name, 0.0) + float(value)
                    self.counts[name] += 1

    def filled(self) -> list[Row]:
        """The rows held for a mean, filled (after every source was fed)."""
        if not self._needs_mean:
            return []
        # Means over every present value (rows needing a fill included: their other
        # columns are real data), summed after the accepted rows as before.
        self.add_to_means(row for row, _ in self._needs_mean)
        means = {name: self.sums[name] / self.counts[name] for name in self.counts}
        out: list[Row] = []
        for typed, gaps in self._needs_mean:
            for name in gaps:
                typed[name] = _fill(self.features[name], means.get(name, 0.0))
                self.result.imputed[name] += 1
            out.append(typed)
        self._needs_mean = []
        return out


def _typed_row(
    raw: Row,
    features: dict[str, Feature],
    extras: list[str],
    rules: ValidationRules,
    coercions: Counter[str],
) -> tuple[Row, list[str]]:
    typed: Row = {}
    gaps: list[str] = []
    for name, feature in features.items():
        value = raw.get(name, _MISSING)
        if value is _MISSING:
            raise _InvalidError(RejectReason.MISSING_COLUMN, f"column {name} is absent")
        if _is_missing(value, feature.missing_tokens):
            if feature.nullable:
                typed[name] = None
                continue
            if rules.missing_values == "Reject":
                raise _InvalidError(RejectReason.MISSING_VALUE, f"column {name} has no value")
            typed[name] = None
            gaps.append(name)
            continue
        converted = _coerce(value, feature, coercions)
        if (
            rules.range_checks
            and isinstance(converted, int | float)
            and (
                (feature.min is not None and converted < feature.min)
                or (feature.max is not None and converted > feature.max)
            )
        ):
            raise _InvalidError(
                RejectReason.OUT_OF_RANGE,
                f"column {name} outside [{_bound(feature.min)}, {_bound(feature.max)}]",
            )
        typed[name] = converted
    for name in extras:
        value = raw.get(name, _MISSING)
        if value is _MISSING or _is_missing(value, None):
            raise _InvalidError(RejectReason.MISSING_VALUE, f"column {name} has no value")
        _require_finite(name, value)
        # Labels, slice and key columns are categories: one canonical string form by value,
        # so "1" from CSV, 1 and 1.0 from JSON and "1.0" from another CSV are one class.
        typed[name] = category(value)
    return typed, gaps


def _coerce(value: Any, feature: Feature, coercions: Counter[str]) -> Any:
    kind = feature.type
    source_type = type(value).__name__
    # Infinity is never a valid value, whatever the column's type (NaN counts as missing).
    _require_finite(feature.name, value)
    try:
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            converted: Any = float(value)
            _require_finite(feature.name, converted)
        elif kind == "int":
            converted = _exact_int(feature.name, value)
        elif kind == "bool":
            if isinstance(value, bool):
                converted = value
            elif str(value).strip().lower() in _TRUE:
                converted = True
            elif str(value).strip().lower() in _FALSE:
                converted = False
            else:
                raise ValueError
        else:
            converted = value if isinstance(value, str) else category(value)
    except (ValueError, TypeError, OverflowError):
        raise _InvalidError(
            RejectReason.TYPE_MISMATCH, f"column {feature.name} is not a valid {kind}"
        ) from None
    if type(converted) is not type(value):
        coercions[f"{feature.name}: {source_type} -> {kind}"] += 1
    return converted


def _require_finite(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _InvalidError(RejectReason.NOT_FINITE, f"column {name} is not finite")


def _exact_int(name: str, value: Any) -> int:
    """``value`` as an exact ``int`` within int64 (what a version's int column holds).

    Integer text is ASCII only, ``[+-]?[0-9]+`` ("9007199254740993" is parsed as an
    integer, never through ``float``, so values beyond 2**53 stay exact); a whole number
    in a float's spelling ("4.0", "1e3", see ``_DECIMAL``) is parsed as a decimal
    and must be integral. Python-only spellings ("1_000", non-ASCII digits such as
    "١٢٣") are not integers. Raises ValueError (TypeMismatch), or _InvalidError:
    NotFinite ("inf", "1e999"), OutOfRange (outside int64; the detail names the bounds,
    never the value)."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        _require_finite(name, value)
        if not value.is_integer():
            raise ValueError
        number = int(value)
    else:
        text = str(value).strip()
        if _INTEGER.fullmatch(text):
            number = int(text)
        elif _NOT_FINITE.fullmatch(text):
            raise _InvalidError(RejectReason.NOT_FINITE, f"column {name} is not finite")
        elif _DECIMAL.fullmatch(text):
            _require_finite(name, float(text))  # "1e999": NotFinite, as for floats
            decimal = Decimal(text)
            if decimal != decimal.to_integral_value():
                raise ValueError
            number = int(decimal)
        else:
            raise ValueError
    if not INT64_MIN <= number <= INT64_MAX:
        raise _InvalidError(
            RejectReason.OUT_OF_RANGE,
            f"column {name} is outside the int64 range [{INT64_MIN}, {INT64_MAX}]",
        )
    return number


#: The range of an int feature: int64, what its column is stored as.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: Integer text: optional sign, ASCII digits (``re``'s [0-9] is ASCII only, unlike \d).
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
#: Decimal text with a point or an exponent: the spellings of a number that a float
#: writes ("1.0", "2.50", "1e3").
_DECIMAL: Final = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))([eE][+-]?[0-9]+)?")
#: What ``float`` reads as infinity or NaN: NotFinite for an int, as for a float.
_NOT_FINITE: Final = re.compile(r"[+-]?(inf|infinity|nan)", re.IGNORECASE)


def _is_missing(value: Any, tokens: Sequence[str] | None) -> bool:
    """Whether ``value`` is missing: ``None``, a float NaN (JSON null, Parquet null or
    NaN), text that is empty or only spaces, or text equal (after stripping spaces,
    case-sensitive) to one of the column's declared ``tokens``. Nothing else: "NA" is
    Namibia unless the schema declares it a missing token."""
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip()
        return text == "" or (tokens is not None and text in tokens)
    return isinstance(value, float) and math.isnan(value)


def category(value: Any) -> str:
    """The canonical text of a label, slice or key value, by value, not Python type:
    booleans "true"/"false"; a number that is integral is written as an integer (1, 1.0,
    "1.0" and "1.00" are all "1"; -0.0 is "0"), any other number as the shortest text
    that reads back as the same float ("2.50" and 2.5 are "2.5"); other text stripped of
    surrounding spaces and otherwise kept ("01" and "A" stay). Numeric text counts as a
    number only when written with a decimal point or exponent, so identifiers with
    leading zeros keep them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value).strip()
    if _DECIMAL.fullmatch(text):
        number = float(text)
        if not math.isfinite(number):
            return text  # beyond a float: no number a JSON reader would give either
        exact = Decimal(text)
        if exact == exact.to_integral_value():
            return str(int(exact))
        return repr(number)
    return text


def _fill(feature: Feature, mean: float) -> Any:
    if feature.type == "float":
        return float(mean)
    if feature.type == "int":
        return round(mean)
    if feature.type == "bool":
        return bool(round(mean))
    return ""


def _dedupe(rows: list[Row], dedupe: bool) -> tuple[list[Row], int]:
    keyed = sorted(((row_digest(r), r) for r in rows), key=lambda pair: pair[0])
    if not dedupe:
        return [r for _, r in keyed], 0
    unique: list[Row] = []
    last: bytes | None = None
    for digest, row in keyed:
        if digest != last:
            unique.append(row)
        last = digest
    return unique, len(rows) - len(unique)


def row_digest(row: Row) -> bytes:
    return hashlib.sha256(sorted_json(row)).digest()


def _bound(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def _jsonable(row: Row) -> Row:
    return {
        str(k): (v if isinstance(v, str | int | float | bool) or v is None else str(v))
        for k, v in row.items()
    }
