"""The fleet gateway's HTTP API (FastAPI): the app and its error handling.

Every error is JSON ``{"reason", "message"}``. Every request but enrollment's token check is
authenticated by an RFC 9421 signature (:mod:`edgeops.httpsig`) with the device's
key; enrollment is signed too, with the key it enrolls (proof of possession). Bodies are
:mod:`edgeops.api.wire` models. Reads of Devices, EdgeModels and FleetRollouts go through a
short TTL cache (``EDGEOPS_GATEWAY_CACHE_SECONDS``); writes go straight to the API server.
Endpoints live in one module each (:mod:`.enrollment`, :mod:`.desired`, :mod:`.artifacts`,
:mod:`.reports`, :mod:`.samples`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from edgeops import __version__
from edgeops.gateway import artifacts, desired, enrollment, reports, samples
from edgeops.gateway.context import ApiError, Gateway
from edgeops.settings import GatewaySettings
from edgeops.store import ArtifactStore


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)


def create_app(
    config: GatewaySettings,
    store: Callable[[], ArtifactStore],
    *,
    wall_clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The gateway app; ``store`` is called when S3 is first needed, ``wall_clock`` (Unix
    seconds) is what signature ages are measured against."""
    app = FastAPI(
        title="EdgeOps fleet gateway",
        version=__version__,
        description="Device enrollment, desired state and reports; requests are signed "
        "with RFC 9421 HTTP Message Signatures (ed25519).",
        docs_url=None,
        redoc_url=None,
    )
    gw = Gateway(config, store, wall_clock)
    app.state.gateway = gw

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return _json(exc.status, {"reason": exc.reason, "message": exc.message}, exc.headers)

    @app.exception_handler(404)
    async def _not_found(_: Request, exc: Exception) -> Response:
        return _json(404, {"reason": "NotFound", "message": "no such endpoint"})

    @app.exception_handler(405)
    async def _not_allowed(_: Request, exc: Exception) -> Response:
        return _json(405, {"reason": "MethodNotAllowed", "message": "method not allowed"})

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> Response:
        return _json(500, {"reason": "InternalError", "message": type(exc).__name__})

    for module in (enrollment, desired, artifacts, reports, samples):
        app.include_router(module.router(gw))
    return app


def openapi_document(app: FastAPI) -> str:
    """The app's OpenAPI document as indented JSON."""
    return json.dumps(app.openapi(), indent=2)
