"""When a Dataset is due for collection: Go-style intervals ("90s", "5m", "1h30m") or
five-field cron expressions, evaluated in UTC."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def parse_duration(text: str) -> timedelta | None:
    """A Go duration, or None if ``text`` is not one."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(x) for x in body.split("-", 1))
        else:
            start = int(body)
            end = high if step_text else start
        if start < low or end > high or start > end or step < 1:
            raise ValueError(f"cron field {text!r} outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def cron_matches(expression: str, moment: datetime) -> bool:
    fields = _MACROS.get(expression, expression).split()
    if len(fields) != 5:
        raise ValueError(f"cron expression needs 5 fields: {expression!r}")
    minute, hour, dom, month, dow = (
        _cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, _FIELD_RANGES, strict=True)
    )
    weekday = (moment.weekday() + 1) % 7  # cron: 0 = Sunday
    day_ok = (
        (moment.day in dom or weekday in dow)
        if fields[2] != "*" and fields[4] != "*"
        else (moment.day in dom and weekday in dow)
    )
    return moment.minute in minute and moment.hour in hour and moment.month in month and day_ok


def next_cron_time(expression: str, after: datetime) -> datetime:
    """First whole minute strictly after ``after`` that matches (searches one year)."""
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(366 * 24 * 60):
        if cron_matches(expression, moment):
            return moment
        moment += timedelta(minutes=1)
    raise ValueError(f"cron expression {expression!r} never fires")


def is_due(schedule: str | None, last: datetime | None, now: datetime) -> bool:
    """Whether a scheduled collection is due; without a schedule only the first is."""
    if last is None:
        return True
    if not schedule:
        return False
    interval = parse_duration(schedule)
    if interval is not None:
        return now - last >= interval
    return next_cron_time(schedule, last) <= now
