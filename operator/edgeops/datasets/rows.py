"""Row types shared by readers, cleaning and ingestion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

Row = dict[str, Any]


class SourceRow(dict[str, Any]):
    """A row as a reader read it, with ``line``: where its record starts in the object (the
    file line for CSV and JSON Lines, the 1-based row position for Parquet and npz), so a
    rejection by validation names the same line as one by the reader. Equal to the plain
    dict of its values."""

    __slots__ = ("line",)

    def __init__(self, values: Row, line: int) -> None:
        super().__init__(values)
        self.line = line


class RejectReason:
    """Why a row was set aside (CamelCase: these become status keys and Event text)."""

    MISSING_COLUMN: Final = "MissingColumn"
    MISSING_VALUE: Final = "MissingValue"
    TYPE_MISMATCH: Final = "TypeMismatch"
    NOT_FINITE: Final = "NotFinite"
    OUT_OF_RANGE: Final = "OutOfRange"
    MALFORMED: Final = "Malformed"
    UNREADABLE: Final = "Unreadable"
    DUPLICATE: Final = "Duplicate"
    #: Not a rejection: a note that a column of an object was ignored (repeated in a CSV
    #: header but not used by the schema, or unnamed yet holding values); ``rows`` 0.
    IGNORED_COLUMN: Final = "IgnoredColumn"
    #: A whole source object over a configured bound (bytes, decompressed bytes, rows); the
    #: detail names the setting. Counts the object's rows where it declares them.
    TOO_LARGE: Final = "TooLarge"


@dataclass(frozen=True)
class Rejected:
    """A row that did not make it into the version.

    ``detail`` names columns and expected types only, never values, so it is safe to log
    even for personal data; the raw ``row`` is written to the store only.
    """

    source: str
    line: int | None
    reason: str
    detail: str
    row: Row | None = None
    #: How many rows this stands for: 1, or the rows of a part of an object that was not
    #: read (a whole object over a limit, a Parquet row group that does not decode, a CSV
    #: file with a repeated column). ``None``: an object that could not be read whose row
    #: count is unknown too (a Parquet file cut before its footer); it fails the
    #: collection's rejected-fraction gate, since the true fraction cannot be known.
    #: 0: a note on an object that loses no row (reason IgnoredColumn).
    rows: int | None = 1

    @property
    def counted(self) -> int:
        """The rows this counts as rejected: ``rows``, or 0 when unknown (an unknown count
        is never shown as a number; it fails the rejected-fraction gate instead)."""
        return 0 if self.rows is None else self.rows

    @property
    def unread(self) -> bool:
        """Whether this stands for a part of an object that was not read (rather than
        one row that was read and found invalid)."""
        return self.rows != 1 or self.line is None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "source": self.source,
            "line": self.line,
            "reason": self.reason,
            "detail": self.detail,
            "row": self.row,
        }
        if self.rows != 1:
            document["rows"] = self.rows
        return document
