"""In-memory, per-replica request bookkeeping: the nonce replay cache, the per-device
rate limit and the per-address budget of failed enrollments. All are bounded and
thread-safe. With several replicas, a replay sent to another replica within the window is
not caught by the nonce cache: the report sequence stored in the Device refuses it
(:meth:`edgeops.gateway.context.Gateway.take_sequence`); each replica keeps its own
budgets (README, "Several replicas")."""

from __future__ import annotations

import threading
from collections import OrderedDict


class NonceCache:
    """Remembers (key, nonce) pairs for ``window`` seconds."""

    def __init__(self, window: float, max_entries: int = 1_000_000) -> None:
        self._window = window
        self._max = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, nonce: str, now: float) -> bool:
        """Records the nonce; False when it was seen within the window (a replay)."""
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if at > now - self._window and len(self._seen) < self._max:
                    break
                del self._seen[oldest]
            if (key, nonce) in self._seen:
                return False
            self._seen[(key, nonce)] = now
            return True


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts of as many."""

    def __init__(self, per_minute: int, max_keys: int = 1_000_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str, now: float) -> float:
        """Seconds (``now`` is monotonic seconds) until ``key`` has a token, 0 when it has
        one now; takes nothing. For budgets charged after the fact, such as failed
        enrollments: check with :meth:`wait` first, :meth:`take` once the request failed."""
        with self._lock:
            tokens, at = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def take(self, key: str, now: float) -> float:
        """Takes one token; returns 0 when allowed, else the seconds until one is free."""
        with self._lock:
            tokens, at = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self._rate
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return wait


class RowBudget:
    """A token bucket of rows per key (a device): ``per_hour`` rows an hour, bursts of as
    many. The rate comes with each call, so a changed sampling policy applies at once (a
    lowered cap also lowers what a bucket holds)."""

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, rows: int, per_hour: int, now: float) -> float:
        """Takes ``rows`` tokens; returns 0 when allowed, else the seconds (``now`` is
        monotonic seconds) until that many are free, taking none. ``rows`` must not exceed
        ``per_hour`` (it would never be free: ``ValueError``)."""
        if rows > per_hour or per_hour <= 0:
            raise ValueError(f"{rows} rows never fit a budget of {per_hour} an hour")
        rate = per_hour / 3600.0
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(per_hour), now))
            tokens = min(float(per_hour), tokens + (now - at) * rate)
            wait = 0.0
            if tokens >= rows:
                tokens -= rows
            else:
                wait = (rows - tokens) / rate
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return wait

    def give_back(self, key: str, rows: int) -> None:
        """Returns ``rows`` taken for work that then failed (an S3 write), so a device is
        not charged for rows that were never stored."""
        with self._lock:
            if key in self._buckets:
                tokens, at = self._buckets[key]
                self._buckets[key] = (tokens + rows, at)
