"""Issue 17 item 8: no retry storms. A Dataset whose HTTP source keeps answering 500 is
retried with growing gaps (1 s doubling), and its repeated Warning is one Event with a
count, not one Event per attempt."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def failing_source() -> Iterator[tuple[str, list[float]]]:
    """A loopback HTTP server that answers every GET with 500; records when."""
    hits: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(time.monotonic())
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/imu.csv", hits
    server.shutdown()
    server.server_close()


def test_a_failing_source_backs_off_and_its_events_are_counted(
    cluster: Cluster, failing_source: tuple[str, list[float]]
) -> None:
    url, hits = failing_source
    ns = cluster.namespace("backoff")
    dataset = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "flaky", "namespace": ns},
        "spec": {
            "governance": {"classification": "internal"},
            "schema": {"features": [{"name": "ax", "type": "float"}]},
            "format": "csv",
            "sources": [{"http": {"url": url}}],
            # Would poll every 10 s; a failing source must back off instead.
            "collection": {"onNewObjects": True},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dataset))
    try:
        wait_for(lambda: hits, 60, "the first attempt")
        # The attempts of the minute after the first: a collection Job's retries wait 4, 8,
        # 16, 32 s plus a pod start each, so a 5th attempt never falls within the minute
        # and the window ends at the 4th (about 35 s) with what the minute would show.
        minute = time.monotonic() + 60
        while len(hits) < 4 and time.monotonic() < minute:
            time.sleep(0.2)
        _assert_backed_off(cluster, ns, list(hits))
    finally:
        # Retrying would go on for the rest of the session: a pod start every 5 min.
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _assert_backed_off(cluster: Cluster, ns: str, attempts: list[float]) -> None:
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 1, 2, 4, 8, 16, 32 s: a handful of attempts in a minute, not one every 2 s.
    assert 3 <= len(attempts) <= 9, gaps
    # The first gap also holds the first pass's own work (status, Event); from then on
    # each wait doubles.
    assert all(b >= a * 1.4 for a, b in itertools.pairwise(gaps[1:])), gaps
    assert gaps[-1] >= 8, gaps
    events = [e for e in cluster.events(ns, "flaky") if e["reason"] == "SourceUnavailable"]
    assert 1 <= len(events) <= 2, [(e["metadata"]["name"], e.get("count")) for e in events]
    counted = max(int(e.get("count") or 1) for e in events)
    assert counted > 1
    assert sum(int(e.get("count") or 1) for e in events) <= len(attempts)
