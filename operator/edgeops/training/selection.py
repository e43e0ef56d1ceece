"""Which rows of a dataset version a run for drift learns from, as pure functions.

A dataset version holds every row ever collected: lab recordings, field samples from
before the drift and field samples since. A model retrained on all of them equally, with a
reference profile of all of them, under-weights the drifted inputs: the fleet keeps
reading a residual drift against it. The rule (:class:`edgeops.api.FieldData` in the run's
spec records its parameters):

* field rows are the rows of the version that the baseline version (the newest one
  published before the drift began) does not hold, identified by the same row identity
  the split uses (:func:`edgeops.datasets.split.row_key` without key columns);
* the reference profile is built from the field rows when there are at least
  ``min_reference_rows`` of them (the fleet as it is now), else from all rows;
* training uses all rows (earlier classes stay learnt), each field row repeated
  :func:`repeats` times so field rows make up at least ``weight_share`` of the training
  set; validation and test keep all rows, once each, so gates compare like with like.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeops.datasets.split import row_key

Row = dict[str, Any]


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select`: rows per split (field rows repeated in ``train``),
    the reference rows, and the numbers for the run's results and log."""

    splits: dict[str, list[Row]]
    reference: list[Row]
    #: Field rows per split (before repetition).
    field_rows: dict[str, int]
    #: Copies of each field train row in ``splits["train"]``.
    repeats: int
    #: "field" when the reference is the field rows, "all" when there were too few.
    reference_from: str

    def summary(self) -> dict[str, Any]:
        """The JSON document the trainer records in its results (lineage)."""
        return {
            "fieldRows": dict(self.field_rows),
            "repeats": self.repeats,
            "referenceFrom": self.reference_from,
            "referenceRows": len(self.reference),
            "trainRows": len(self.splits.get("train", [])),
        }


def repeats(field: int, other: int, share: float, most: int) -> int:
    """Copies of each of ``field`` rows so they make up at least ``share`` (0 <= share < 1)
    of a training set that also holds ``other`` rows once each: the least r >= 1 with
    r·field / (r·field + other) >= share, capped at ``most`` (a handful of field rows must
    not be copied a thousand times). 1 when there are no field rows."""
    if field <= 0 or other <= 0 or share <= 0:
        return 1
    needed = math.ceil(share * other / ((1.0 - share) * field) - 1e-9)
    return max(1, min(most, needed))


def field_mask(rows: Sequence[Row], baseline: Iterable[Row]) -> list[bool]:
    """For each of ``rows``: whether it is a field row (not in ``baseline``)."""
    known = {row_key(r, None) for r in baseline}
    return [row_key(r, None) not in known for r in rows]


def select(
    splits: Mapping[str, Sequence[Row]],
    baseline: Iterable[Row],
    *,
    min_reference_rows: int,
    weight_share: float,
    max_repeats: int,
) -> Selection:
    """Applies the module's rule to a version's ``splits`` (split → rows in stored order)
    given the ``baseline`` version's rows (all splits)."""
    known = {row_key(r, None) for r in baseline}
    masks = {s: [row_key(r, None) not in known for r in rows] for s, rows in splits.items()}
    counts = {s: sum(m) for s, m in masks.items()}
    train = list(splits.get("train", []))
    new_train = [r for r, new in zip(train, masks.get("train", []), strict=True) if new]
    copies = repeats(len(new_train), len(train) - len(new_train), weight_share, max_repeats)
    out = {s: list(rows) for s, rows in splits.items()}
    # The extra copies go after the rows; the trainer shuffles every epoch.
    out["train"] = train + new_train * (copies - 1)
    field = [r for s, rows in splits.items() for r, new in zip(rows, masks[s], strict=True) if new]
    enough = len(field) >= min_reference_rows
    everything = [r for rows in splits.values() for r in rows]
    return Selection(
        splits=out,
        reference=field if enough else everything,
        field_rows=counts,
        repeats=copies,
        reference_from="field" if enough else "all",
    )
