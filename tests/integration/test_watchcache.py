"""The gateway's watch caches against the real API server: a watch that resumes from a
resourceVersion the server no longer has (410 Gone, e.g. after etcd compaction while the
gateway was partitioned) lists again and keeps following changes instead of going blind."""

from __future__ import annotations

import json

import pytest

from edgeops.k8s.watchcache import WatchCache
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
