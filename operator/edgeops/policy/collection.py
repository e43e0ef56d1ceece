"""When a Dataset collects: pure decisions over its spec, its status and the clock.

Schedules are Go-style intervals ("90s", "5m", "1h30m") or five-field cron expressions,
evaluated in UTC (parsing shared with retraining schedules, `edgeops.policy.cron`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from edgeops.api.conditions import Verdict, get_condition
from edgeops.api.constants import ConditionType, Reason
from edgeops.api.dataset import DatasetSpec
from edgeops.policy.cron import latest_tick, parse_duration

#: Retention (and the bucket's garbage collection) runs this often, whatever the schedule.
RETENTION_EVERY_SECONDS: Final = 3600.0
#: While S3 is down or refuses and no backoff is pending (e.g. after a restart), a
#: collection is tried again this often; failed collections back off from 1 s to 5 min.
STORAGE_RETRY_SECONDS: Final = 10.0


def is_due(schedule: str | None, last: datetime | None, now: datetime) -> bool:
    """Whether a scheduled collection is due; without a schedule only the first is.
    Raises ValueError for a schedule that is neither a duration nor a cron expression."""
    if last is None:
        return True
    if not schedule:
        return False
    try:
        interval = parse_duration(schedule)
    except ValueError:
        # Not a duration: a cron expression, due once it has fired since the last run.
        return latest_tick(schedule, last, now) is not None
    return now - last >= interval


def seconds_until_due(schedule: str | None, last: datetime | None, now: datetime) -> float | None:
    """Seconds from ``now`` until :func:`is_due` turns true (0 when it already is), or None
    when no later collection is scheduled. For a cron expression: the start of the next
    minute, the finest step cron has."""
    if last is None:
        return 0.0
    if not schedule:
        return None
    try:
        interval = parse_duration(schedule)
    except ValueError:
        return 60.0 - now.second - now.microsecond / 1e6
    return max((last + interval - now).total_seconds(), 0.0)


@dataclass(frozen=True)
class Clock:
    """The controller's own bookkeeping of one Dataset (kept in memory, per process)."""

    now: datetime
    #: when a collection was last attempted; None before the first since start.
    last_attempt: datetime | None = None
    #: a collection that lost a race with its sources is retried at this time.
    retry_at: datetime | None = None
    #: when retention last ran; None before the first since start.
    last_retention: datetime | None = None


def _storage_down(status: Mapping[str, Any]) -> bool:
    condition = get_condition(status.get("conditions"), ConditionType.STORAGE_AVAILABLE)
    return condition is not None and condition.get("status") != "True"


def collection_due(
    spec: DatasetSpec, status: Mapping[str, Any], generation: int | None, clock: Clock
) -> bool:
    """Whether to collect now: the first time since start or after a spec change; after a
    failed collection only once its retry (backoff) is due; while storage is unavailable
    (probing until it is back), always with ``onNewObjects`` (an unchanged listing costs
    one S3 listing), or on schedule."""
    if clock.last_attempt is None or status.get("observedGeneration") != generation:
        return True
    if clock.retry_at is not None:
        # A failed collection backs off: retried at retry_at, never earlier.
        return clock.now >= clock.retry_at
    if _storage_down(status):
        return True
    collection = spec.collection
    if collection is not None and collection.on_new_objects:
        return True
    return is_due(collection.schedule if collection else None, clock.last_attempt, clock.now)


def seconds_until_next_pass(
    spec: DatasetSpec, status: Mapping[str, Any], clock: Clock, source_poll_seconds: float
) -> float:
    """Seconds until the earliest of: the next scheduled collection, the next look for new
    source objects (``onNewObjects``, every ``source_poll_seconds``), a retry after a lost
    race or while storage is unavailable, retention's hourly pass."""
    waits = [RETENTION_EVERY_SECONDS]
    if clock.last_retention is not None:
        elapsed = (clock.now - clock.last_retention).total_seconds()
        waits.append(RETENTION_EVERY_SECONDS - elapsed)
    if clock.retry_at is not None:
        waits.append((clock.retry_at - clock.now).total_seconds())
    if _storage_down(status) and clock.retry_at is None:
        waits.append(STORAGE_RETRY_SECONDS)
    collection = spec.collection
    if collection is not None and collection.on_new_objects:
        waits.append(source_poll_seconds)
    due = seconds_until_due(
        collection.schedule if collection else None, clock.last_attempt, clock.now
    )
    if due is not None:
        waits.append(due)
    return max(min(waits), 0.0)


def report_verdicts(
    *,
    too_many_rejected: bool,
    new_data: bool,
    latest: str | None,
    accepted: int,
    rejected: int,
    limit: float,
    counts: str,
    uncounted: int = 0,
) -> dict[str, Verdict]:
    """The Dataset's conditions after a collection that reached S3.

    Validated is False when the rejected share exceeded ``limit`` (a fraction; nothing was
    published). Ready is True while a version exists (``latest``, a short id), even when
    the last collection was refused, and says which version is served; StorageAvailable is
    True. ``counts`` is the human summary of the row counts, used in every message.
    ``uncounted``: source objects that could not be read and do not say how many rows they
    hold; with any, the rejected share cannot be known, which refuses the collection.
    """
    if too_many_rejected and uncounted:
        validated = Verdict(
            "False",
            Reason.TOO_MANY_REJECTED,
            f"{uncounted} source object(s) could not be read and their rows cannot be "
            f"counted, so the rejected share is unknown (limit {limit:.1%}): {counts}; "
            "no version published",
        )
    elif too_many_rejected:
        seen = accepted + rejected
        validated = Verdict(
            "False",
            Reason.TOO_MANY_REJECTED,
            f"{rejected} of {seen} rows rejected ({rejected / max(seen, 1):.1%} "
            f"> limit {limit:.1%}): {counts}; no version published",
        )
    else:
        validated = Verdict("True", Reason.ROWS_VALIDATED, counts)
    if latest is None:
        reason = Reason.TOO_MANY_REJECTED if too_many_rejected else Reason.NO_NEW_DATA
        ready = Verdict("False", reason, f"no version yet: {counts}")
    elif too_many_rejected:
        ready = Verdict(
            "True",
            Reason.TOO_MANY_REJECTED,
            f"serving previous version {latest}; last collection rejected: {counts}",
        )
    else:
        reason = Reason.COLLECTED if new_data else Reason.NO_NEW_DATA
        ready = Verdict("True", reason, f"version {latest}: {counts}")
    return {
        ConditionType.READY: ready,
        ConditionType.VALIDATED: validated,
        ConditionType.STORAGE_AVAILABLE: Verdict(
            "True", Reason.STORAGE_REACHABLE, "S3 answered the last collection"
        ),
    }
