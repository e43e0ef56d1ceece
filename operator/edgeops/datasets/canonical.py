"""The one JSON encoding whose bytes are hashed (row digests, shards, manifests)."""

from __future__ import annotations

import json
import math
from typing import Any


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, NaN refused: equal content, equal bytes."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def finite_json(document: Any) -> Any:
    """``document`` with every non-finite float written as the string "NaN", "Infinity"
    or "-Infinity", so raw input (rejected rows) can still be stored as canonical JSON."""
    if isinstance(document, float) and not math.isfinite(document):
        return "NaN" if math.isnan(document) else ("Infinity" if document > 0 else "-Infinity")
    if isinstance(document, dict):
        return {key: finite_json(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [finite_json(value) for value in document]
    return document
