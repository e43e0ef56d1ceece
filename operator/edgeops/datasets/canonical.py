"""The one JSON encoding whose bytes are hashed (row digests, shards, manifests)."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, NaN refused: equal content, equal bytes."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
