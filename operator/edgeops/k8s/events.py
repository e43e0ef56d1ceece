"""Core v1 Events, written so that repeats are counted on one object (as client-go does).

:func:`create` posts a new Event with ``count: 1``; :func:`bump` patches an existing one
with a new ``count`` and ``lastTimestamp`` (``kubectl describe`` then shows "x5 over
3m"). The correlation (which repeat goes where) is :mod:`edgeops.controllers.events`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

from kubernetes import client

from edgeops.k8s.client import api_client

COMPONENT: Final = "edgeops"


def _time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(involved: dict[str, Any], type_: str, reason: str, message: str, at: dt.datetime) -> str:
    """Posts a new Event about ``involved`` (``{apiVersion, kind, name, namespace, uid}``)
    in its namespace and returns its name. Raises ApiException."""
    namespace = str(involved["namespace"])
    name = f"{involved['name']}.{uuid.uuid4().hex[:16]}"
    stamp = _time(at)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": involved,
        "type": type_,
        "reason": reason,
        "message": message,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }
    client.CoreV1Api(api_client()).create_namespaced_event(namespace, body)
    return name


def bump(namespace: str, name: str, count: int, at: dt.datetime) -> None:
    """Sets an existing Event's ``count`` and ``lastTimestamp``. Raises ApiException (404
    when the Event expired: the API server deletes Events after an hour by default)."""
    client.CoreV1Api(api_client()).patch_namespaced_event(
        name, namespace, {"count": count, "lastTimestamp": _time(at)}
    )


def involving(namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    """The Events about object ``kind``/``name`` in ``namespace`` (field selector on
    ``involvedObject``), as plain JSON-shaped dicts, newest ``lastTimestamp`` first.
    Raises ApiException."""
    core = client.CoreV1Api(api_client())
    listed = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}"
    )
    items = [api_client().sanitize_for_serialization(e) for e in listed.items]
    return sorted(
        items,
        key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
        reverse=True,
    )
