"""The one place conditions are set, so every kind follows metav1.Condition semantics:
``lastTransitionTime`` moves only when ``status`` flips; reason, message and
observedGeneration always reflect the latest evaluation.

Pure functions on plain dicts (what Kopf hands to handlers and what a status patch takes);
they never mutate their input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

from .common import format_time
from .constants import Reason

STATUSES: Final = ("True", "False", "Unknown")
MAX_MESSAGE: Final = 32768
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")

Conditions = list[dict[str, Any]]


class Verdict(NamedTuple):
    """What one condition should say: ``status`` (True/False/Unknown), a CamelCase
    ``reason`` from :class:`edgeops.api.constants.Reason`, and a message with the numbers."""

    status: str
    reason: str
    message: str


#: Condition type -> what it should say; what every controller builds and hands to
#: :func:`update_conditions`.
Verdicts = Mapping[str, "Verdict | tuple[str, str, str]"]


def get_condition(
    conditions: Iterable[Mapping[str, Any]] | None, type_: str
) -> dict[str, Any] | None:
    """A copy of the condition of this type, or None."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return dict(condition)
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    """Whether the condition exists and its status is True."""
    condition = get_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime,
) -> Conditions:
    """Return a new list with the condition of ``type_`` set.

    A new type is appended (any status, including Unknown). An existing one keeps its
    position and its ``lastTransitionTime`` unless ``status`` changes.
    """
    if status not in STATUSES:
        raise ValueError(f"condition status must be one of {STATUSES}, not {status!r}")
    if not _REASON.match(reason):
        raise ValueError(f"condition reason must be CamelCase, not {reason!r}")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    stamp = format_time(now)
    result: Conditions = []
    found = False
    for old in conditions or ():
        entry = dict(old)
        if entry.get("type") == type_:
            found = True
            if entry.get("status") != status or not entry.get("lastTransitionTime"):
                entry["lastTransitionTime"] = stamp
            entry.update(status=status, reason=reason, message=message)
            _set_generation(entry, observed_generation)
        result.append(entry)
    if not found:
        entry = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp,
        }
        _set_generation(entry, observed_generation)
        result.append(entry)
    return result


def update_conditions(
    conditions: Iterable[Mapping[str, Any]] | None,
    verdicts: Verdicts,
    observed_generation: int | None,
    now: datetime,
    *,
    ensure: Iterable[str] = (),
) -> Conditions:
    """The one way controllers set conditions: every verdict applied with
    :func:`set_condition`, and each type in ``ensure`` that is still absent and has no
    verdict added as ``Unknown``/``Reconciling``, so a kind shows all its condition types,
    in the order of ``ensure``, from its first status on. Returns a new list; raises
    ValueError for a bad status or reason."""
    result: Conditions = [dict(c) for c in conditions or ()]
    for type_ in ensure:
        if get_condition(result, type_) is None and type_ not in verdicts:
            result = set_condition(
                result,
                type_,
                "Unknown",
                Reason.RECONCILING,
                "not evaluated yet",
                observed_generation,
                now,
            )
        elif type_ in verdicts:
            status, reason, message = verdicts[type_]
            result = set_condition(result, type_, status, reason, message, observed_generation, now)
    for type_, (status, reason, message) in verdicts.items():
        if type_ not in ensure:
            result = set_condition(result, type_, status, reason, message, observed_generation, now)
    return result


def unknown_conditions(
    types: Iterable[str],
    generation: int | None,
    now: datetime,
    *,
    reason: str = Reason.RECONCILING,
    message: str = "The operator has not finished reconciling this object yet",
) -> Conditions:
    """Conditions for an object seen for the first time: every type Unknown."""
    result: Conditions = []
    for type_ in types:
        result = set_condition(result, type_, "Unknown", reason, message, generation, now)
    return result


def _set_generation(entry: dict[str, Any], observed_generation: int | None) -> None:
    if observed_generation is None:
        entry.pop("observedGeneration", None)
    else:
        entry["observedGeneration"] = observed_generation
