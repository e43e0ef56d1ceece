"""Request limits and error hygiene of the predictor's HTTP server (an ASGI middleware).

- The request body is bounded (``EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES``): a declared
  ``Content-Length`` over it is answered 413 without reading the body; a body without one
  (chunked) is read only up to the bound, then answered 413. The app sees the body only
  once it is known to be within the bound.
- A 500 never carries internal error text: whatever the server raised (an exception, or
  KServe's own error handlers' ``{"error": str(exc)}``) is logged with a request id and
  answered ``{"error": "internal error", "requestId": ...}``. The id is the request's
  ``x-request-id`` header when it has a short one, else a new UUID; it is also sent back
  as ``x-request-id``.

Bodies are JSON: ``{"error": message, ...}``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("edgeops.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestLimits:
    """ASGI middleware: bounds request bodies (413) and hides internal errors (500)."""

    def __init__(self, app: App, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_request_bytes:
            await _reply(send, 413, self._too_large(declared), request_id)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > self.max_request_bytes:
                await _reply(send, 413, self._too_large(None), request_id)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        started = False
        hidden = False

        async def guarded_send(message: Message) -> None:
            nonlocal started, hidden
            if message["type"] == "http.response.start":
                started = True
                if message.get("status") == 500:
                    hidden = True
                    await _reply(send, 500, _internal(request_id), request_id)
                    return
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and hidden:
                log.error(
                    "request %s: internal error answered 500: %s",
                    request_id,
                    bytes(message.get("body", b""))[:2000].decode(errors="replace"),
                )
                return
            await send(message)

        try:
            await self.app(scope, replay, guarded_send)
        except Exception:
            log.exception("request %s: internal error answered 500", request_id)
            if not started:
                await _reply(send, 500, _internal(request_id), request_id)

    def _too_large(self, declared: int | None) -> dict[str, Any]:
        size = f"{declared} bytes" if declared is not None else "the request body"
        return {
            "error": f"{size} is more than the {self.max_request_bytes} bytes this predictor "
            "accepts (EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES); send smaller batches",
            "maxRequestBytes": self.max_request_bytes,
        }


def _internal(request_id: str) -> dict[str, Any]:
    return {
        "error": "internal error; the predictor's log has the details under this request id",
        "requestId": request_id,
    }


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _REQUEST_ID.match(text):
                return text
    return str(uuid.uuid4())


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Send, status: int, document: dict[str, Any], request_id: str) -> None:
    body = json.dumps(document).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
