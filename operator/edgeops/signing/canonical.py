"""The one byte encoding of a JSON document that is signed and verified."""

from __future__ import annotations

import json
import math
from typing import Any


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8. Signer and verifier must produce the same bytes
    from the same document, whichever language or library parsed it, so non-finite floats
    (which JSON cannot carry portably) are refused rather than written as NaN."""
    _reject_non_finite(document)
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _reject_non_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite number {value!r} cannot be signed")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"JSON object keys must be strings, not {key!r}")
            _reject_non_finite(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_non_finite(item)
