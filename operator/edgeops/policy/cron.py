"""Five-field cron expressions (minute hour day-of-month month day-of-week) in UTC, and Go
durations. Enough of Vixie cron for retraining schedules: ``*``, lists, ranges, steps,
month and weekday names, the @daily-style macros, and day-of-month OR day-of-week when
both are restricted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from edgeops.api.common import duration_seconds

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: Scans further back than this are cut short: a trigger older than a year is stale anyway.
_MAX_SCAN = timedelta(days=366)


def parse_duration(text: str) -> timedelta:
    """A Go duration such as 90s, 1h30m or 1.5h; ValueError otherwise."""
    return timedelta(seconds=duration_seconds(text))


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        in_days = moment.day in self.days
        in_weekdays = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def matches(self, moment: datetime) -> bool:
        return (
            moment.minute in self.minutes and moment.hour in self.hours and self.matches_day(moment)
        )


def parse_cron(expression: str) -> Cron:
    text = _MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expression!r}: expected 5 fields, got {len(fields)}")
    minute, hour, day, month, weekday = fields
    weekdays = _field(weekday, 0, 7, _DAYS, "day-of-week")
    return Cron(
        minutes=_field(minute, 0, 59, None, "minute"),
        hours=_field(hour, 0, 23, None, "hour"),
        days=_field(day, 1, 31, None, "day-of-month"),
        months=_field(month, 1, 12, _MONTHS, "month", offset=1),
        weekdays=frozenset(d % 7 for d in weekdays),  # 7 is Sunday too
        days_restricted=not day.startswith("*"),
        weekdays_restricted=not weekday.startswith("*"),
    )


def latest_tick(expression: str, after: datetime, until: datetime) -> datetime | None:
    """The latest minute in (after, until] the expression fires at, or None."""
    cron = parse_cron(expression)
    floor = max(after, until - _MAX_SCAN)
    moment = until.replace(second=0, microsecond=0)
    while moment > floor:
        if not cron.matches_day(moment):
            # Skip the rest of this day in one step.
            moment = moment.replace(hour=0, minute=0) - timedelta(minutes=1)
            continue
        if moment.hour not in cron.hours:
            moment = moment.replace(minute=0) - timedelta(minutes=1)
            continue
        if moment.minute in cron.minutes:
            return moment
        moment -= timedelta(minutes=1)
    return None


def never_fires(expression: str) -> str | None:
    """Why a valid cron ``expression`` never fires, or None when it does: a day-of-month
    that no chosen month has (``0 0 31 2 *``, ``0 0 30 2 *``) with an unrestricted
    day-of-week (a restricted one fires on its weekdays). Day 29 of February fires in leap
    years. ValueError when ``expression`` is not valid."""
    cron = parse_cron(expression)
    if cron.weekdays_restricted and cron.days_restricted:
        return None
    if any(day <= _DAYS_IN_MONTH[month] for month in cron.months for day in cron.days):
        return None
    days = ",".join(str(d) for d in sorted(cron.days))
    months = ",".join(_MONTHS[m - 1].capitalize() for m in sorted(cron.months))
    return f"day-of-month {days} never occurs in {months}"


#: Longest month lengths (February in a leap year).
_DAYS_IN_MONTH: Final = {
    1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31,
}  # fmt: skip


def _field(
    text: str,
    low: int,
    high: int,
    names: list[str] | None,
    what: str,
    offset: int = 0,
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        if not step_text.isdigit() and step_text:
            raise ValueError(f"cron {what} {text!r}: step {step_text!r} is not a number")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"cron {what} {text!r}: step must be >= 1")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, last = body.split("-", 1)
            start, end = _value(first, names, offset), _value(last, names, offset)
            if start > end:
                raise ValueError(_reversed(what, text, body, low, high, names, offset))
        else:
            start = _value(body, names, offset)
            end = high if step_text else start
        if not (low <= start <= end <= high):
            raise ValueError(f"cron {what} {text!r}: values must be within {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _reversed(
    what: str, text: str, body: str, low: int, high: int, names: list[str] | None, offset: int
) -> str:
    """The message for a range written high-low (``5-1``, ``FRI-MON``), with the list of
    two ranges it most likely means, in the user's notation (names or numbers)."""
    first, last = body.split("-", 1)
    top = 6 if what == "day-of-week" else high  # 7 is Sunday again: end the week at SAT
    if names and first.isalpha():
        upper, lower = names[top - offset].upper(), names[low - offset].upper()
    else:
        upper, lower = str(top), str(low)
    start, end = _value(first, names, offset), _value(last, names, offset)
    head = first if start == top else f"{first}-{upper}"
    tail = last if end == low else f"{lower}-{last}"
    return (
        f"cron {what} {text!r}: the range {body} is reversed ({start} > {end}); cron ranges "
        f"do not wrap around, write {head},{tail}"
    )


def _value(text: str, names: list[str] | None, offset: int) -> int:
    """A field value as written (a number, or a name in any case); the error message
    echoes ``text`` unchanged."""
    if names and text.lower() in names:
        return names.index(text.lower()) + offset
    if not text.isdigit():
        raise ValueError(
            f"cron value {text!r} is not a number (this cron has no L, W, ? or # fields)"
        )
    return int(text)
