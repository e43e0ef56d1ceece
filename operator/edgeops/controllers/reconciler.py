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
- Failures back off exponentially (1 s doubling up to 5 min, :mod:`edgeops.policy.retry`)
  instead of retrying at a fixed rate, and one consecutive-failure count per object covers
  every kind of failure: an exception, a ``kopf.TemporaryError(delay=...)`` (waits at least
  its delay, longer once the backoff exceeds it) and a *handled* failure, which the
  reconcile function reports in its conditions and marks with :func:`retry_later` (its
  return value is the backoff to ask for). A pass without any failure resets the count.
- The loop's own status writes do not wake it (their watch events carry the
  resourceVersion it wrote), so a failing object that writes a condition is not retried
  early by its own write.

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
from datetime import UTC, datetime
from typing import Any, Final

import kopf

from edgeops.api.conditions import set_condition
from edgeops.api.constants import GROUP, VERSION
from edgeops.controllers import events
from edgeops.k8s import custom
from edgeops.metrics import operator as metrics
from edgeops.policy.retry import BACKOFF_FIRST, BACKOFF_MAX
from edgeops.policy.retry import backoff as backoff
from edgeops.settings import settings

log = logging.getLogger(__name__)

#: Reconcile function: Kopf-style keyword arguments in, requeue-after seconds (or None) out.
Reconcile = Callable[..., float | None]
#: Reads what a reconcile needs from Kopf indexes, in the event loop (never in a thread:
#: indexes change under a reader there). Gets the daemon's kwargs (indexes included).
Gather = Callable[..., Any]

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "backoff", "controller", "retry_later", "wake"]

#: Condition reason when the API server refused a status write for its content.
STATUS_WRITE_REFUSED: Final = "StatusWriteRefused"
#: memo keys: consecutive failed passes of this object, and "this pass failed (handled)".
FAILURES_KEY: Final = "reconcile_failures"
FAILED_PASS_KEY: Final = "reconcile_failed_pass"

_wakeups: dict[tuple[str, str, str], asyncio.Event] = {}
#: resourceVersion of each loop's last own status write: its watch event wakes nobody.
_own_writes: dict[tuple[str, str, str], str] = {}


def wake(
    plural: str, namespace: str | None, name: str | None, resource_version: str | None = None
) -> None:
    """Wakes the reconcile loop of one object, if it runs. Call it from the event loop
    (an ``async`` Kopf handler); waking an object with no loop does nothing, and neither
    does the event of the loop's own last status write (``resource_version``)."""
    if namespace is None or name is None:
        return
    key = (plural, namespace, name)
    if resource_version is not None and _own_writes.get(key) == resource_version:
        return
    event = _wakeups.get(key)
    if event is not None:
        event.set()


def retry_later(memo: kopf.Memo) -> float:
    """For a failure the reconcile function handled itself (reported in a condition, e.g.
    a source that answers 500, a name taken by a user's object): marks this pass as failed
    and returns the seconds to wait before the next attempt, 1 s · 2^n capped at 300 s for
    the object's n-th consecutive failed pass. The count is reset by a pass that does not
    call this (and raises nothing)."""
    memo[FAILED_PASS_KEY] = True
    return backoff(int(memo.get(FAILURES_KEY) or 0) + 1)


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
            # Stopped (object deleted, filter no longer matching, operator exiting): the
            # loop is signalled and finishes its pass (status written) for up to 10 s
            # before Kopf cancels it.
            cancellation_backoff=10.0,
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
        async def changed(
            namespace: str | None, name: str | None, body: kopf.Body, **_: Any
        ) -> None:
            wake(plural, namespace, name, _rv(body))

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
            memo[FAILURES_KEY] = failures
            memo[FAILED_PASS_KEY] = False
            try:
                requeue = await asyncio.to_thread(
                    _call, fn, snapshot, patch, memo, namespace, name, observed
                )
                if memo.get(FAILED_PASS_KEY):
                    failures += 1
                    outcome = "requeued"
                else:
                    failures = 0
            except kopf.TemporaryError as error:
                failures += 1
                outcome = "requeued"
                requeue = max(float(error.delay or BACKOFF_FIRST), backoff(failures))
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
                    written_rv = _rv(written)
                    if written_rv is not None:
                        _own_writes[key] = written_rv
            except Exception as error:
                if custom.is_not_found(error):
                    return  # deleted while we reconciled
                failures += 1
                outcome = "error"
                requeue = backoff(failures)
                metrics.RECONCILE_ERRORS.labels(kind=kind, error="StatusWriteFailed").inc()
                log.warning("%s %s/%s: status write failed: %s", kind, namespace, name, error)
                if custom.is_refused(error):
                    await asyncio.to_thread(
                        _report_refused, plural, namespace, name, snapshot, error, requeue
                    )
            metrics.RECONCILE_DURATION.labels(kind=kind).observe(time.monotonic() - started)
            metrics.RECONCILIATIONS.labels(kind=kind, outcome=outcome).inc()
            wait = settings().resync_interval_seconds
            if requeue is not None:
                wait = min(wait, max(requeue, 0.0))
            await _sleep(event, stopper, wait)
    finally:
        if _wakeups.get(key) is event:
            del _wakeups[key]
            _own_writes.pop(key, None)


def refused_write_conditions(
    status: Mapping[str, Any], generation: int | None, error: str, retry_in: float, now: datetime
) -> list[dict[str, Any]]:
    """The conditions written instead of a status the API server refused for its content:
    ``Ready=False``, reason ``StatusWriteRefused``, with the server's answer (at most 300
    characters) and when it is tried again. Only conditions: small by construction, so
    this write passes where the full status did not."""
    message = (
        f"the API server refused the status update: {error[:300]}; the full status is "
        f"written again in {retry_in:.0f}s"
    )
    return set_condition(
        status.get("conditions"),
        "Ready",
        "False",
        STATUS_WRITE_REFUSED,
        message,
        generation,
        now,
    )


def _report_refused(
    plural: str,
    namespace: str,
    name: str,
    snapshot: dict[str, Any],
    error: BaseException,
    retry_in: float,
) -> None:
    """A status write refused for its content is not silent: a smaller status (conditions
    only) and a Warning Event say so; the loop retries the full status with backoff."""
    summary = " ".join(str(getattr(error, "body", None) or error).split())
    conditions = refused_write_conditions(
        snapshot.get("status") or {},
        (snapshot.get("metadata") or {}).get("generation"),
        summary,
        retry_in,
        datetime.now(UTC),
    )
    try:
        custom.patch_status(namespace, plural, name, {"conditions": conditions})
    except Exception as again:  # nothing smaller to write: the log and the Event remain
        log.warning("%s/%s: the conditions-only status was refused too: %s", namespace, name, again)
    ready = next(c for c in conditions if c["type"] == "Ready")
    events.warning(snapshot, STATUS_WRITE_REFUSED, str(ready["message"]))


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
