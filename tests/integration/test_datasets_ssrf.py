"""Server-side request forgery through a Dataset's HTTP(S) source, on the devcluster (issue
17, item 4): the session's operator admits 127.0.0.1 only (``tests/conftest.py`` sets
``EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS``); a tenant's URL to another loopback address (behind
userinfo), to the cloud metadata address, or a redirect from an admitted server to a
refused one, is refused before any connection, with a message that tells nothing about
the target, and the operator's log shows no credential of the URL.

Network: the metadata URL is refused from its literal address before a socket is opened
(tests/unit/test_datasets_http_ssrf.py proves no connection is attempted); every server
here listens on loopback.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

GENERIC = "refused: the host is not one HTTP(S) sources may use"
SCHEMA = {"features": [{"name": "ax", "type": "float"}], "label": "label"}
GOVERNANCE = {"classification": "internal", "retentionDays": 30, "region": "eu-central-1"}


@pytest.fixture
def forbidden_listener() -> Iterator[tuple[int, list[int]]]:
    """A listener on 127.0.0.2 (loopback, not admitted) counting the connections it gets."""
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.listen()
    sock.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], accepted
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def redirector() -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """An admitted server on 127.0.0.1 that redirects each path to a configured URL."""
    targets: dict[str, str] = {}
    served: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            self.send_response(302 if self.path in targets else 404)
            if self.path in targets:
                self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", targets, served
    server.shutdown()
    server.server_close()


def _apply(cluster: Cluster, ns: str, name: str, url: str) -> None:
    body = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "governance": GOVERNANCE,
            "schema": SCHEMA,
            "sources": [{"http": {"url": url}}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def _ready(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    def refused() -> dict[str, Any] | None:
        status = cluster.get("dataset", name, "-n", ns).get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] != "Reconciling" else None

    return dict(wait_for(refused, 60, f"{ns}/{name} to report its source"))


def test_internal_urls_are_refused_without_a_connection(
    cluster: Cluster,
    forbidden_listener: tuple[int, list[int]],
    redirector: tuple[str, dict[str, str], list[str]],
) -> None:
    ns = cluster.namespace("ds-ssrf")
    port, accepted = forbidden_listener
    base, targets, served = redirector
    targets["/imu.csv"] = f"http://127.0.0.2:{port}/imu.csv"
    cases = {
        # Loopback behind userinfo that names another host, with credentials in the URL.
        "loopback": f"http://data.example.com:hunter2@127.0.0.2:{port}/imu.csv?token=s3cr3t",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        # The first hop is admitted; the redirect to 127.0.0.2 is not.
        "redirected": f"{base}/imu.csv",
    }
    for name, url in cases.items():
        _apply(cluster, ns, name, url)
    for name in cases:
        ready = _ready(cluster, ns, name)
        assert (ready["status"], ready["reason"]) == ("False", "SourceRefused"), ready
        message = ready["message"]
        assert GENERIC in message
        for leak in ("hunter2", "s3cr3t", "Connect", "HTTP 4", "HTTP 5", "timed out", "resolves"):
            assert leak not in message, message
        events = [e for e in cluster.events(ns, name) if e["reason"] == "SourceRefused"]
        assert events and GENERIC in events[0]["message"]
    assert served and set(served) == {"/imu.csv"}  # the admitted first hop was fetched
    time.sleep(0.5)
    assert accepted == [], "a refused address was connected to"
    log = (cluster.dev.logs / "operator.log").read_text(errors="replace")
    assert "refused" in log and "hunter2" not in log and "s3cr3t" not in log
