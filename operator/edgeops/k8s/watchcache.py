"""In-memory caches of one EdgeOps kind, across all namespaces or in one, fed by list +
watch (an informer, built on the ``kubernetes`` client's :class:`kubernetes.watch.Watch`).

A :class:`WatchCache` lists the kind once (``synced`` turns True), then watches from the
list's resourceVersion with bookmarks, resuming from the last resourceVersion seen when
the server ends a watch (``timeout_seconds``) and listing again when the server says that
version is gone (410 Gone: the watch fell behind etcd's compaction). Reads
(:meth:`WatchCache.get`, :meth:`WatchCache.list`) are dictionary lookups under a lock and
never do I/O. :meth:`WatchCache.apply` stores an object a writer just got back from the
API server (read-your-writes) ahead of its watch event; an older version arriving later
never replaces a newer one. Used by the fleet gateway for Devices, EdgeModels and
FleetRollouts; :class:`NamespacedCaches` joins one cache per namespace when the gateway
serves only some namespaces (so it needs no cluster-wide list permission).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from edgeops.api.constants import GROUP, VERSION
from edgeops.k8s.client import api_client

log = logging.getLogger(__name__)

_GONE = 410


def _version(obj: dict[str, Any]) -> int | None:
    """The object's resourceVersion as a number. Kubernetes calls it opaque; the API server
    over etcd hands out etcd revisions (integers that grow with every write), which is
    what lets a write's answer and a late watch event be ordered. None when it is not a
    number (then the newest arrival wins)."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def _newer(candidate: dict[str, Any], held: dict[str, Any] | None) -> bool:
    if held is None:
        return True
    new, old = _version(candidate), _version(held)
    return new is None or old is None or new >= old


class _PlainWatch(watch.Watch):  # type: ignore[misc]
    """A :class:`kubernetes.watch.Watch` that only ``json.loads`` each event: for custom
    objects the default re-encodes and decodes every object to "deserialize" it into the
    dict it already is, a cost per Device write (the gateway writes one per report).
    (``deserialize=False`` would skip it too, but then the library fails on ERROR events,
    410 Gone among them.)"""

    def unmarshal_event(self, data: str, return_type: Any) -> Any:
        return super().unmarshal_event(data, None)


class WatchCache:
    """All objects of ``plural`` (group ``edgeops.dev``), by namespace and name: of the whole
    cluster, or only of ``namespace`` when given (a namespaced list + watch).

    ``timeout_seconds`` bounds each watch request (the server ends it, the cache resumes
    from the last resourceVersion); ``max_backoff`` bounds the wait between attempts after
    an error (API server down, RBAC refusal), starting at 0.5 s and doubling. Counters
    ``lists`` and ``events`` say how often it listed and how many watch events it applied
    (tests and logs)."""

    def __init__(
        self,
        plural: str,
        *,
        namespace: str | None = None,
        group: str = GROUP,
        version: str = VERSION,
        timeout_seconds: int = 300,
        max_backoff: float = 30.0,
    ) -> None:
        self.plural, self.group, self.version = plural, group, version
        self.namespace = namespace
        self.timeout_seconds, self.max_backoff = timeout_seconds, max_backoff
        self.lists = 0
        self.events = 0
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None

    # -- reads ---------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """Whether the first list has been stored (reads before it would miss everything)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for the first list; whether it came."""
        return self._synced.wait(timeout)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as last seen, or None. Callers must not modify it."""
        with self._lock:
            return self._objects.get(namespace, {}).get(name)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's objects (a new list; the objects are shared: do not modify)."""
        with self._lock:
            return list(self._objects.get(namespace, {}).values())

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._objects.values())

    # -- writes --------------------------------------------------------------------------
    def apply(self, obj: dict[str, Any]) -> None:
        """Stores ``obj`` (a watch event's object, or what a write returned) unless a newer
        version of it is held already."""
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        with self._lock:
            bucket = self._objects.setdefault(namespace, {})
            if _newer(obj, bucket.get(name)):
                bucket[name] = obj

    def _remove(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        with self._lock:
            bucket = self._objects.get(namespace, {})
            held = bucket.get(name)
            # A deletion older than what is held (re-created since) removes nothing.
            if held is not None and _newer(obj, held):
                del bucket[name]

    def _replace(self, items: Iterable[dict[str, Any]]) -> None:
        fresh: dict[str, dict[str, dict[str, Any]]] = {}
        with self._lock:
            for obj in items:
                meta = obj.get("metadata") or {}
                namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
                held = self._objects.get(namespace, {}).get(name)
                # A write this process made after the list was served stays.
                chosen = held if held is not None and not _newer(obj, held) else obj
                fresh.setdefault(namespace, {})[name] = chosen
            self._objects = fresh

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        """Starts listing and watching in a daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"watch-{self.plural}-{self.namespace or 'all'}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the loop (ends a running watch) and waits up to ``timeout`` seconds."""
        self._stopping.set()
        current = self._watch
        if current is not None:
            current.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _api(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(api_client())

    def _lister(self) -> tuple[Any, tuple[str, ...]]:
        """The list call and its leading arguments (namespaced when the cache is)."""
        api = self._api()
        if self.namespace is None:
            return api.list_cluster_custom_object, (self.group, self.version, self.plural)
        return api.list_namespaced_custom_object, (
            self.group,
            self.version,
            self.namespace,
            self.plural,
        )

    def _list(self) -> str:
        call, args = self._lister()
        result = call(*args)
        self._replace(list(result.get("items", [])))
        self.lists += 1
        self._synced.set()
        return str(result["metadata"]["resourceVersion"])

    def _watch_from(self, resource_version: str) -> None:
        """Applies watch events from ``resource_version`` on until stopped; raises the
        API server's errors (410 Gone included)."""
        while not self._stopping.is_set():
            stream = _PlainWatch()
            self._watch = stream
            call, args = self._lister()
            for event in stream.stream(
                call,
                *args,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.timeout_seconds,
                # A connection the server silently lost must not hang the cache forever.
                _request_timeout=self.timeout_seconds + 30,
            ):
                obj = event["raw_object"]
                kind = event["type"]
                if kind == "DELETED":
                    self._remove(obj)
                elif kind in ("ADDED", "MODIFIED"):
                    self.apply(obj)
                # BOOKMARK carries only a newer resourceVersion to resume from.
                resource_version = str((obj.get("metadata") or {}).get("resourceVersion"))
                self.events += 1
            self._watch = None

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                resource_version = self._list()
                backoff = 0.5
                self._watch_from(resource_version)
            except ApiException as exc:
                if exc.status == _GONE:
                    log.info("watch of %s: resourceVersion gone, listing again", self.plural)
                    continue
                log.warning("watch of %s failed (%s %s)", self.plural, exc.status, exc.reason)
            except Exception as exc:
                log.warning("watch of %s failed: %s", self.plural, exc)
            else:
                continue
            if self._stopping.wait(backoff):
                return
            backoff = min(self.max_backoff, backoff * 2)


class NamespacedCaches:
    """One :class:`WatchCache` of ``plural`` per namespace in ``namespaces``, read as one
    cache: a namespace outside the set holds nothing (``get`` gives None, ``list`` an empty
    list), and ``apply`` of an object from outside it is dropped.

    For a gateway that serves only some namespaces: each list + watch is namespaced, so
    its ServiceAccount needs Roles in those namespaces only, not a ClusterRole."""

    def __init__(self, plural: str, namespaces: Iterable[str], **options: Any) -> None:
        """``options`` are passed to each :class:`WatchCache`. Raises ValueError when
        ``namespaces`` is empty (that is the cluster-wide cache's job)."""
        self.caches = {ns: WatchCache(plural, namespace=ns, **options) for ns in namespaces}
        if not self.caches:
            raise ValueError("NamespacedCaches needs at least one namespace")

    @property
    def synced(self) -> bool:
        """Whether every namespace's first list has been stored."""
        return all(cache.synced for cache in self.caches.values())

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as last seen, or None (always None outside the namespaces)."""
        cache = self.caches.get(namespace)
        return cache.get(namespace, name) if cache is not None else None

    def list(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's objects (empty outside the namespaces)."""
        cache = self.caches.get(namespace)
        return cache.list(namespace) if cache is not None else []

    def apply(self, obj: dict[str, Any]) -> None:
        """Stores a fresh write in its namespace's cache (dropped outside the namespaces)."""
        cache = self.caches.get(str((obj.get("metadata") or {}).get("namespace") or ""))
        if cache is not None:
            cache.apply(obj)

    def start(self) -> None:
        """Starts every namespace's loop."""
        for cache in self.caches.values():
            cache.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops every namespace's loop, waiting up to ``timeout`` seconds for each."""
        for cache in self.caches.values():
            cache.stop(timeout)
