"""Issue 17 item 10, the predictor's ASGI middleware on its own: bounded bodies (413, also
without a Content-Length) and 500s that never carry internal error text."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from edgeops.serving.limits import RequestLimits

LIMIT = 1024


def _call(
    app: Any, chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}
    asyncio.run(RequestLimits(app, LIMIT)(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    heads = {k.decode(): v.decode() for k, v in start["headers"]}
    return int(start["status"]), heads, json.loads(body) if body else {}


def _echo(seen: list[bytes]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    return app


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    seen: list[bytes] = []
    status, headers, body = _call(_echo(seen), [b"a" * 600, b"b" * 400])
    assert status == 200 and body == {"ok": True} and seen == [b"a" * 600 + b"b" * 400]
    assert headers["x-request-id"]


def test_a_declared_length_over_the_limit_is_413_unread() -> None:
    seen: list[bytes] = []
    status, _, body = _call(_echo(seen), [b"x"], [(b"content-length", b"999999")])
    assert status == 413 and body["maxRequestBytes"] == LIMIT and seen == []


def test_a_chunked_body_over_the_limit_is_413() -> None:
    seen: list[bytes] = []
    status, _, body = _call(_echo(seen), [b"x" * 700, b"y" * 700, b"z" * 700])
    assert status == 413 and "EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES" in body["error"]
    assert seen == []


def test_an_exception_is_a_500_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret detail /var/lib/model key=abc")

    with caplog.at_level(logging.ERROR, logger="edgeops.serving"):
        status, headers, body = _call(app, [b"{}"], [(b"x-request-id", b"req-42")])
    assert status == 500 and "secret" not in json.dumps(body)
    assert body["requestId"] == "req-42" == headers["x-request-id"]
    assert "secret detail" in caplog.text and "req-42" in caplog.text


def test_a_500_an_error_handler_wrote_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error": "onnx: /tmp/x.onnx"}'})

    with caplog.at_level(logging.ERROR, logger="edgeops.serving"):
        status, _, body = _call(app, [b"{}"], [(b"x-request-id", b"not a valid id!")])
    assert status == 500 and "onnx" not in json.dumps(body)
    assert len(body["requestId"]) == 36  # a fresh UUID: the header's id was not usable
    assert "/tmp/x.onnx" in caplog.text
