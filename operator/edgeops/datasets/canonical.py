"""Raw input made storable as canonical JSON.

The bytes of rows, shards, manifests (hence version ids) and row digests are
:func:`edgeops.canonical_json.sorted_json`: the encoding version ids have always been
computed from, kept so the same content keeps its id.
"""

from __future__ import annotations

import math
from typing import Any


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
