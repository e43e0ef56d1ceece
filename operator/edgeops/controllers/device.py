"""Device controller: Ready, Enrolled and Updated conditions, health Unknown for devices
that stopped reporting, and Events for enrollment decisions and update outcomes.

Fleets hold 10^4 to 10^5 Devices, so there is no daemon per Device (see
:mod:`edgeops.controllers.reconciler` for the kinds that have one). Instead:

- a Kopf index, :func:`device_views`, keeps a slim :class:`~edgeops.policy.device.DeviceView`
  of every Device (no API call to read them);
- :func:`device_changed` (``kopf.on.event``) evaluates a Device whenever it changes (a spec
  edit, a gateway status write) and writes only the status keys that change;
- one background task (started by :func:`start_sweep`) looks through the index every
  ``EDGEOPS_DEVICE_SWEEP_SECONDS`` for devices whose lastSeen is older than their staleness
  threshold, the one change no watch event announces, and evaluates only those.

Decisions are :func:`edgeops.policy.device.evaluate`. Writes are merge patches of the status
subresource at the resourceVersion that was evaluated: when the gateway wrote in between,
the patch is refused (409) and the newer version's own watch event evaluates again, so a
stale view never overwrites a fresh report. Events are posted after the status write that
records their transition; a transition is announced once (the conditions in status, and
in-process memory of what was announced while the watch catches up with our own write).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any, Final

import kopf

from edgeops.api.constants import DEVICES, GROUP, VERSION
from edgeops.controllers import events
from edgeops.k8s import custom
from edgeops.policy import device as policy
from edgeops.settings import gateway_settings, settings

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: memo key of the sweep task.
SWEEP_TASK: Final = "device_sweep_task"
#: Sweeps give the event loop back after this many devices, so watch handling goes on.
SWEEP_BATCH: Final = 1000

#: uid -> the transitions (Announcement.key) already announced by this process.
_announced: dict[str, set[tuple[str, str]]] = {}
#: Devices whose last write failed for a reason other than a conflict: the sweep retries.
_retry: set[Key] = set()


def _last_seen_write_seconds() -> float:
    # The gateway writes lastSeen at most this often; the operator reads the same variable
    # (EDGEOPS_GATEWAY_LAST_SEEN_SECONDS) from its own environment.
    return gateway_settings().gateway_last_seen_seconds


@kopf.index(GROUP, VERSION, DEVICES)
async def device_views(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, policy.DeviceView] | None:
    """(namespace, name) -> the slim view of the Device the controller decides from."""
    return {(namespace, name): policy.view_of(body)} if namespace else None


@kopf.on.event(GROUP, VERSION, DEVICES, id="device-status")
async def device_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Evaluates the Device of every watch event (deletions forget it)."""
    view = policy.view_of(body)
    if type == "DELETED":
        _announced.pop(view.uid, None)
        _retry.discard((view.namespace, view.name))
        return
    if not view.namespace or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    await settle(view, dt.datetime.now(dt.UTC))


async def settle(view: policy.DeviceView, now: dt.datetime) -> bool:
    """Evaluates ``view`` at ``now``, writes the status keys that change (at the view's
    resourceVersion) and posts the Events due. Returns whether a write was made. Never
    raises for API errors: a conflict or a deleted Device is left to the watch, anything
    else is logged and retried by the next sweep."""
    key = (view.namespace, view.name)
    outcome = policy.evaluate(view, now, _last_seen_write_seconds())
    _retry.discard(key)
    if not outcome.status:
        return False
    try:
        await asyncio.to_thread(
            custom.patch_status,
            view.namespace,
            DEVICES,
            view.name,
            outcome.status,
            view.resource_version,
        )
    except Exception as error:
        if custom.is_conflict(error) or custom.is_not_found(error):
            # Changed since this view (its own event evaluates again), or gone.
            return False
        _retry.add(key)
        log.warning("device %s/%s: status write failed: %s", *key, error)
        return False
    announced = _announced.setdefault(view.uid, set())
    due = [a for a in outcome.announcements if a.key not in announced]
    # One entry per kind of transition: a new one replaces what was announced before.
    kinds = {a.key[0] for a in due}
    announced.difference_update({k for k in announced if k[0] in kinds})
    announced.update(a.key for a in due)
    for announcement in due:
        post = events.normal if announcement.type == "Normal" else events.warning
        await asyncio.to_thread(post, view.involved(), announcement.reason, announcement.message)
    return True


async def sweep(index: kopf.Index[Key, policy.DeviceView], now: dt.datetime) -> int:
    """One pass over the index: settles every device that went stale and is not marked so
    yet, and those whose last write failed. Returns the number of writes."""
    write_seconds = _last_seen_write_seconds()
    views: list[policy.DeviceView] = []
    for position, key in enumerate(list(index.keys())):
        if position and position % SWEEP_BATCH == 0:
            await asyncio.sleep(0)
        store = index.get(key)
        for view in store or ():
            if key in _retry or policy.needs_sweep(view, now, write_seconds):
                views.append(view)
    written = 0
    for view in views:
        written += await settle(view, now)
    return written


async def _sweep_forever(index: kopf.Index[Key, policy.DeviceView]) -> None:
    while True:
        await asyncio.sleep(settings().device_sweep_seconds)
        try:
            count = await sweep(index, dt.datetime.now(dt.UTC))
            if count:
                log.info("device sweep: %d device(s) marked stale", count)
        except Exception:
            log.exception("device sweep failed; trying again in the next period")


@kopf.on.startup()
async def start_sweep(memo: kopf.Memo, **kwargs: Any) -> None:
    """Starts the one periodic staleness sweep over the Device index (Kopf passes the
    ``device_views`` index to startup handlers too: empty here, filled as it lists and
    watches Devices)."""
    index: kopf.Index[Key, policy.DeviceView] = kwargs["device_views"]
    memo[SWEEP_TASK] = asyncio.create_task(_sweep_forever(index), name="device-sweep")


@kopf.on.cleanup()
async def stop_sweep(memo: kopf.Memo, **_: Any) -> None:
    """Stops the sweep when the operator exits."""
    task = memo.get(SWEEP_TASK)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
