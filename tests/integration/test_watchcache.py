"""The gateway's watch caches against the real API server: a watch that resumes from a
resourceVersion the server no longer has (410 Gone, e.g. after etcd compaction while the
gateway was partitioned) lists again and keeps following changes instead of going blind."""

from __future__ import annotations

import json

import pytest

from edgeops.k8s.watchcache import NamespacedCaches, WatchCache
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration


class _ResumesFromAncientVersion(WatchCache):
    """Its first watch starts from resourceVersion 1, long compacted or outside the API
    server's watch window: what a cache that fell far behind asks for."""

    def _list(self) -> str:
        version = super()._list()
        return "1" if self.lists == 1 else version


def _device(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "Device",
            "metadata": {"name": name},
            "spec": {"targetType": "linux"},
        }
    )


def test_a_gone_resource_version_is_listed_again(cluster: Cluster) -> None:
    ns = cluster.namespace("wc")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_device("before"))
    with cluster.dev.environment():
        cache = _ResumesFromAncientVersion("devices", max_backoff=1.0)
        cache.start()
        try:
            assert cache.wait_synced(30)
            assert cache.get(ns, "before") is not None
            # The server refused the ancient version; the cache listed again.
            wait_for(lambda: cache.lists >= 2, 30, "a second list after 410 Gone")
            cluster.kubectl("apply", "-n", ns, "-f", "-", input=_device("after"))
            wait_for(lambda: cache.get(ns, "after"), 30, "the new Device in the cache")
            assert cache.events >= 1  # it came by the watch, not by another list
            assert cache.lists == 2
        finally:
            cache.stop()


def test_namespaced_caches_see_only_their_namespaces(cluster: Cluster) -> None:
    """What a gateway with --namespace runs: one namespaced list + watch per namespace, so
    a Device of a namespace it does not serve never reaches its cache."""
    served, other = cluster.namespace("wcs"), cluster.namespace("wco")
    cluster.kubectl("apply", "-n", served, "-f", "-", input=_device("mine"))
    cluster.kubectl("apply", "-n", other, "-f", "-", input=_device("theirs"))
    with cluster.dev.environment():
        cache = NamespacedCaches("devices", [served], max_backoff=1.0)
        cache.start()
        try:
            wait_for(lambda: cache.synced, 30, "the namespaced list")
            assert [d["metadata"]["name"] for d in cache.list(served)] == ["mine"]
            assert cache.get(other, "theirs") is None and cache.list(other) == []
            cluster.kubectl("apply", "-n", served, "-f", "-", input=_device("later"))
            cluster.kubectl("apply", "-n", other, "-f", "-", input=_device("later"))
            wait_for(lambda: cache.get(served, "later"), 30, "the new Device by the watch")
            assert cache.get(other, "later") is None
        finally:
            cache.stop()
