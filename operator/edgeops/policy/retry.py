"""One backoff for every retry the operator makes: pure arithmetic, no clock."""

from __future__ import annotations

from typing import Final

#: Seconds before the first retry.
BACKOFF_FIRST: Final = 1.0
#: Seconds: no retry waits longer (the resync interval still bounds staleness).
BACKOFF_MAX: Final = 300.0


def backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure of one object:
    1 s · 2^(failures-1), capped at 300 s (1, 2, 4 … 256, 300); 1 s for ``failures`` <= 1."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(max(failures - 1, 0), 32)))
