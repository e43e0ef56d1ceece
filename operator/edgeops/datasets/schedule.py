"""When a Dataset is due for collection: Go-style intervals ("90s", "5m", "1h30m") or
five-field cron expressions, evaluated in UTC (parsing shared with retraining schedules)."""

from __future__ import annotations

from datetime import datetime

from edgeops.policy.cron import latest_tick, parse_duration


def is_due(schedule: str | None, last: datetime | None, now: datetime) -> bool:
    """Whether a scheduled collection is due; without a schedule only the first is."""
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
