"""Secrets in logs (issue 17, item 9): URLs with userinfo and presigned query parameters are
redacted in every log line, whatever logger writes them (httpx, urllib3, minio, ours),
through the one helper that status messages and Events use too."""

from __future__ import annotations

import http.server
import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edgeops.datasets.sources import redact_url as datasets_redact_url
from edgeops.redaction import (
    RedactingLogFilter,
    install_log_redaction,
    redact_text,
    redact_url,
)
from edgeops.settings import redacted_url

SECRETS = ("hunter2", "s3cr3t", "AKIAEXAMPLE", "deadbeef", "FwoGZXIvYXdz")
PRESIGNED = (
    "https://minio.example:9000/edgeops/models/m.onnx?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=FwoGZXIvYXdz"
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=deadbeef"
)


def test_one_helper_serves_settings_datasets_and_logs() -> None:
    url = "https://reader:hunter2@data.example/imu.csv?token=s3cr3t"
    assert redacted_url(url) == datasets_redact_url(url) == redact_url(url)
    assert redact_url(url) == "https://***@data.example/imu.csv?***"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            'HTTP Request: GET https://reader:hunter2@data.example/imu.csv "HTTP/1.1 200 OK"',
            'HTTP Request: GET https://***@data.example/imu.csv "HTTP/1.1 200 OK"',
        ),
        (
            f"downloading {PRESIGNED}.",
            "downloading https://minio.example:9000/edgeops/models/m.onnx?***.",
        ),
        (
            "GET /edgeops/m.onnx?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAEXAMPLE HTTP/1.1",
            "GET /edgeops/m.onnx?X-Amz-Signature=***&X-Amz-Credential=*** HTTP/1.1",
        ),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=deadbeef",
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=***",
        ),
        ("no secret here: 3 rows, x=1", "no secret here: 3 rows, x=1"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A handler on the root logger, as the operator's ``logging.basicConfig`` installs,
    with the process-wide redaction installed as the operator does at start-up."""
    install_log_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_every_logger_is_redacted_end_to_end(captured: io.StringIO) -> None:
    url = "https://reader:hunter2@data.example/imu.csv?token=s3cr3t"
    logging.getLogger("urllib3.connectionpool").debug('%s "GET %s HTTP/1.1" 200', "x", PRESIGNED)
    logging.getLogger("minio").info("presigned %s", PRESIGNED)
    logging.getLogger("edgeops.datasets").warning("source %s failed", url)
    try:
        raise RuntimeError(f"could not fetch {url}")
    except RuntimeError:
        logging.getLogger("kopf.objects").exception("handler failed")
    text = captured.getvalue()
    for secret in SECRETS:
        assert secret not in text, text
    assert "https://***@data.example/imu.csv?***" in text
    assert "RuntimeError: could not fetch https://***@data.example/imu.csv?***" in text
    assert text.count("\n") >= 4  # nothing was dropped


def test_the_http_clients_own_log_lines_are_redacted(captured: io.StringIO) -> None:
    """httpx logs each request's URL at INFO (and httpcore at DEBUG): a real request."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        url = f"http://reader:hunter2@127.0.0.1:{port}/imu.csv?X-Amz-Signature=deadbeef"
        assert httpx.get(url).text == "ok"
    finally:
        httpd.shutdown()
        httpd.server_close()
    text = captured.getvalue()
    assert f"http://***@127.0.0.1:{port}/imu.csv?***" in text or (
        f"http://127.0.0.1:{port}/imu.csv?***" in text
    ), text
    for secret in SECRETS:
        assert secret not in text


def test_the_filter_on_a_handler_alone() -> None:
    """The filter class also works where a handler is configured by hand."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingLogFilter())
    logger = logging.getLogger("test.redaction.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetch %s failed: %d", PRESIGNED, 403)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == (
        "fetch https://minio.example:9000/edgeops/models/m.onnx?*** failed: 403\n"
    )
