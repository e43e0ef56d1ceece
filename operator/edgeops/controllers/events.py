"""Kubernetes Events for the operator's decisions: the one way every controller posts them.

Repeats are aggregated like client-go's ``EventCorrelator``: an Event identical to one
posted in the last :data:`WINDOW_SECONDS` (same object uid, type, reason and message) is
not posted again; the existing core v1 Event's ``count`` is raised and its
``lastTimestamp`` moved (``kubectl describe`` shows "x7 over 4m"). So a failing source
retried with backoff leaves one Event with a count, not one Event per attempt. The cache
is per operator process, bounded (:data:`CACHE_SIZE`, least recently used dropped).

Events are written through :mod:`edgeops.k8s.events` once the operator enabled it at start
(:func:`enable`); before that (unit tests, tools) they go through ``kopf.event``, which
does not depend on ``settings.posting.level``. Posting never fails a reconcile: an error
is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import kopf

from edgeops.k8s import custom
from edgeops.k8s import events as k8s_events

log = logging.getLogger(__name__)

MAX_MESSAGE: Final = 1024
#: Seconds during which an identical Event is counted on the existing one (client-go: 10 min).
WINDOW_SECONDS: Final = 600.0
#: Distinct Events remembered (client-go's LRU holds 4096).
CACHE_SIZE: Final = 4096


@dataclass
class _Seen:
    namespace: str
    name: str
    first: float  # monotonic seconds
    count: int


_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()
_enabled = False


def enable() -> None:
    """Posts (and aggregates) Events through the API from now on (the operator's start)."""
    global _enabled
    _enabled = True


def normal(body: Any, reason: str, message: str) -> None:
    _emit(body, "Normal", reason, message)


def warning(body: Any, reason: str, message: str) -> None:
    _emit(body, "Warning", reason, message)


def _involved(body: Any) -> dict[str, Any] | None:
    meta = body.get("metadata") or {}
    if not (meta.get("uid") and meta.get("namespace") and body.get("kind")):
        return None
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }


def _emit(body: Any, type_: str, reason: str, message: str) -> None:
    message = message[:MAX_MESSAGE]
    involved = _involved(body)
    if not _enabled or involved is None:
        kopf.event(body, type=type_, reason=reason, message=message)
        return
    key = (str(involved["uid"]), type_, reason, message)
    now, wall = time.monotonic(), dt.datetime.now(dt.UTC)
    with _lock:
        seen = _cache.get(key)
        if seen is not None and now - seen.first < WINDOW_SECONDS:
            seen.count += 1
            _cache.move_to_end(key)
            target: _Seen | None = _Seen(seen.namespace, seen.name, seen.first, seen.count)
        else:
            target = None
    try:
        if target is not None:
            try:
                k8s_events.bump(target.namespace, target.name, target.count, wall)
                return
            except Exception as error:
                if not custom.is_not_found(error):
                    raise
                # Expired or deleted: start a new one.
        name = k8s_events.create(involved, type_, reason, message, wall)
        with _lock:
            _cache[key] = _Seen(str(involved["namespace"]), name, now, 1)
            _cache.move_to_end(key)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    except Exception as error:
        log.warning("could not post the %s Event %s: %s", type_, reason, error)
