"""Event-driven reconciliation: one loop per object, woken by changes, one writer of status.

Every EdgeOps kind is reconciled the same way (the controller-runtime model, built on Kopf):

- A Kopf daemon per object runs :func:`_drive`. It reconciles, writes the status the
  reconcile function built (one merge patch of the keys that changed, so an idle object
  costs no write), then sleeps until it is woken or its requeue time comes.
- It is woken by a watch event of the object itself or of anything it reads: a child (Job,
  pod, TrainingRun, InferenceService) or a referenced object (Dataset). The watches fill
  Kopf indexes (:mod:`edgeops.controllers.watches`), so reading them costs no API call, and
  Kopf starts no daemon before every index is populated.
- With nothing happening it wakes only for the resync (``settings().resync_interval_seconds``)
  or for a time the reconcile function asked for (a schedule, a cooldown, a retry).
- Failures back off exponentially (1 s doubling up to 5 min) instead of retrying at a fixed
  rate; ``kopf.TemporaryError(delay=...)`` asks for a specific delay.

A reconcile function is synchronous (it runs in a worker thread, since it calls S3 and the
kubernetes client) and has the shape of a Kopf handler: it receives ``body``, ``spec``,
``status``, ``meta``, ``name``, ``namespace``, ``patch``, ``memo``, ``observed`` (what the
controller's ``gather`` function read from the indexes) and fills ``patch.status``. It
returns the seconds after which it wants to run again, or ``None`` for "on the next change".
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import kopf

from edgeops.api.constants import GROUP, VERSION
from edgeops.k8s import custom
from edgeops.metrics import operator as metrics
from edgeops.settings import settings

log = logging.getLogger(__name__)

#: Reconcile function: Kopf-style keyword arguments in, requeue-after seconds (or None) out.
Reconcile = Callable[..., float | None]
#: Reads what a reconcile needs from Kopf indexes, in the event loop (never in a thread:
#: indexes change under a reader there). Gets the daemon's kwargs (indexes included).
Gather = Callable[..., Any]

BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 300.0

_wakeups: dict[tuple[str, str, str], asyncio.Event] = {}


def wake(plural: str, namespace: str | None, name: str | None) -> None:
    """Wakes the reconcile loop of one object, if it runs. Call it from the event loop
    (an ``async`` Kopf handler); waking an object with no loop does nothing."""
    if namespace is None or name is None:
        return
    event = _wakeups.get((plural, namespace, name))
    if event is not None:
        event.set()


def backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure: 1, 2, 4 … 300."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(failures - 1, 0)))


def controller(
    plural: str,
    kind: str,
    *,
    gather: Gather | None = None,
    when: Callable[..., bool] | None = None,
) -> Callable[[Reconcile], Reconcile]:
    """Registers ``fn`` as the one reconciler (and status writer) of ``plural``.

    ``when`` limits which objects get a loop (e.g. unfinished TrainingRuns only): Kopf
    stops the loop of an object that stops matching. Returns ``fn`` unchanged, so tests
    call it directly.
    """

    def decorator(fn: Reconcile) -> Reconcile:
        @kopf.daemon(
            GROUP,
            VERSION,
            plural,
            id=f"reconcile-{plural}",
            when=when,
            cancellation_timeout=10.0,
        )
        async def run(
            body: kopf.Body,
            memo: kopf.Memo,
            stopped: kopf.DaemonStopped,
            namespace: str | None,
            name: str,
            **kwargs: Any,
        ) -> None:
            if namespace is None:
                return  # every EdgeOps kind is namespaced; guards the type only
            await _drive(plural, kind, fn, gather, body, memo, stopped, namespace, name, kwargs)

        @kopf.on.event(GROUP, VERSION, plural, id=f"wake-{plural}")
        async def changed(namespace: str | None, name: str | None, **_: Any) -> None:
            wake(plural, namespace, name)

        return fn

    return decorator


async def _drive(
    plural: str,
    kind: str,
    fn: Reconcile,
    gather: Gather | None,
    body: kopf.Body,
    memo: kopf.Memo,
    stopper: kopf.DaemonStopped,
    namespace: str,
    name: str,
    kwargs: dict[str, Any],
) -> None:
    key = (plural, namespace, name)
    event = _wakeups.setdefault(key, asyncio.Event())
    failures = 0
    written: dict[str, Any] | None = None  # what our last status write returned
    written_over: str | None = None  # the resourceVersion that write replaced
    try:
        while not stopper:
            event.clear()
            snapshot = copy.deepcopy(dict(body))
            if written is not None and _rv(snapshot) == written_over:
                # The watch has not delivered our own write yet: reconcile from what the
                # API server answered, never from the status before it.
                snapshot = written
            if snapshot.get("metadata", {}).get("deletionTimestamp"):
                return
            observed = (
                gather(namespace=namespace, name=name, body=snapshot, **kwargs)
                if (gather is not None)
                else None
            )
            started = time.monotonic()
            patch = kopf.Patch()
            outcome = "success"
            try:
                requeue = await asyncio.to_thread(
                    _call, fn, snapshot, patch, memo, namespace, name, observed
                )
                failures = 0
            except kopf.TemporaryError as error:
                outcome = "requeued"
                requeue = float(error.delay or BACKOFF_FIRST)
            except Exception as error:
                failures += 1
                outcome = "error"
                requeue = backoff(failures)
                metrics.RECONCILE_ERRORS.labels(kind=kind, error=type(error).__name__).inc()
                log.exception(
                    "%s %s/%s: reconcile failed (attempt %d), retrying in %.0fs",
                    kind,
                    namespace,
                    name,
                    failures,
                    requeue,
                )
            try:
                status = _changed(snapshot.get("status") or {}, patch.get("status") or {})
                if status:
                    written_over = _rv(snapshot)
                    written = await asyncio.to_thread(
                        custom.patch_status, namespace, plural, name, status
                    )
            except Exception as error:
                if custom.is_not_found(error):
                    return  # deleted while we reconciled
                failures += 1
                outcome = "error"
                requeue = backoff(failures)
                metrics.RECONCILE_ERRORS.labels(kind=kind, error="StatusWriteFailed").inc()
                log.warning("%s %s/%s: status write failed: %s", kind, namespace, name, error)
            metrics.RECONCILE_DURATION.labels(kind=kind).observe(time.monotonic() - started)
            metrics.RECONCILIATIONS.labels(kind=kind, outcome=outcome).inc()
            wait = settings().resync_interval_seconds
            if requeue is not None:
                wait = min(wait, max(requeue, 0.0))
            await _sleep(event, stopper, wait)
    finally:
        if _wakeups.get(key) is event:
            del _wakeups[key]


def _call(
    fn: Reconcile,
    snapshot: dict[str, Any],
    patch: kopf.Patch,
    memo: kopf.Memo,
    namespace: str,
    name: str,
    observed: Any,
) -> float | None:
    body = kopf.Body(snapshot)  # type: ignore[arg-type]  # a plain dict is a raw body
    return fn(
        body=body,
        spec=body.spec,
        status=body.status,
        meta=body.meta,
        name=name,
        namespace=namespace,
        patch=patch,
        memo=memo,
        observed=observed,
    )


def _changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status keys whose wanted value differs from the current one: an
    unchanged status is no write at all (the reconcile functions may rebuild it whole)."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def _rv(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return None if value is None else str(value)


async def _sleep(event: asyncio.Event, stopper: kopf.DaemonStopped, seconds: float) -> None:
    """Until woken, stopped, or ``seconds`` passed."""
    waits: list[Awaitable[Any]] = [event.wait(), stopper.wait()]
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
