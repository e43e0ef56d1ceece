"""Deterministic train/validation/test assignment by hashing a stable row key.

The bucket depends only on the row key (never on the version, the row's position or the
other rows), so a row that survives into the next version stays in the same split and test
metrics of consecutive versions are comparable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, Literal

from edgeops.api import Split
from edgeops.canonical_json import sorted_json

from .rows import Row

SplitName = Literal["train", "validation", "test"]
SPLITS: Final[tuple[SplitName, ...]] = ("train", "validation", "test")


def row_key(row: Row, key_columns: Sequence[str] | None) -> bytes:
    """The bytes that identify a row: its key columns, or the whole row without a key."""
    identity = [row[c] for c in key_columns] if key_columns else row
    return sorted_json(identity)


def bucket(key: bytes) -> float:
    """A uniform position in [0, 1) from the key's SHA-256."""
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def assign(row: Row, key_columns: Sequence[str] | None, split: Split) -> SplitName:
    position = bucket(row_key(row, key_columns))
    if position < split.train:
        return "train"
    if position < split.train + split.validation:
        return "validation"
    return "test"
