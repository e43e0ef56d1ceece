"""The fleet gateway's HTTP API (FastAPI): the app and its error handling.

Every error is JSON ``{"reason", "message"}``. Every request but enrollment's token check is
authenticated by an RFC 9421 signature (:mod:`edgeops.httpsig`) with the device's
key; enrollment is signed too, with the key it enrolls (proof of possession). Bodies are
:mod:`edgeops.api.wire` models. Devices, EdgeModels and FleetRollouts are read from watch
caches the app's lifespan starts (:mod:`edgeops.k8s.watchcache`); ``GET /readyz`` is 503
``NotReady`` until their first lists are in, and so is any request that needs them. Writes
go straight to the API server and into the cache (read-your-writes).
Endpoints live in one module each (:mod:`.enrollment`, :mod:`.desired`, :mod:`.artifacts`,
:mod:`.reports`, :mod:`.telemetry`, :mod:`.samples`). ``GET /metrics`` (unauthenticated,
like any Prometheus target) serves the fleet telemetry series (:mod:`edgeops.metrics.fleet`)
and the gateway's own request count and duration per route template, from the app's own
registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeops import __version__
from edgeops.api.wire import ErrorBody
from edgeops.gateway import artifacts, desired, enrollment, reports, samples, telemetry
from edgeops.gateway.context import COMPONENTS, ApiError, Gateway, ObjectCache
from edgeops.metrics.fleet import GATEWAY_REQUEST_DURATION_SECONDS, GATEWAY_REQUESTS_TOTAL
from edgeops.settings import GatewaySettings
from edgeops.store import ArtifactStore


class RequestMetrics:
    """ASGI middleware counting requests by route template and status and timing them.

    ``endpoint`` is the matched route's path template (``/v1/devices/{namespace}/{name}/
    desired``), never the concrete path, so device names do not become label values;
    requests no route matched are ``endpoint="unmatched"``. An exception that escapes the
    app counts as 500 (the outer error handler answers it so)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            GATEWAY_REQUESTS_TOTAL,
            "Requests the gateway answered, by route template and HTTP status code.",
            ["endpoint", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            GATEWAY_REQUEST_DURATION_SECONDS,
            "Wall time from request to response, seconds, by route template.",
            ["endpoint"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, code = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            endpoint = str(getattr(route, "path", "unmatched"))
            self.requests.labels(endpoint, str(code)).inc()
            self.duration.labels(endpoint).observe(time.perf_counter() - start)


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)


def create_app(
    config: GatewaySettings,
    store: Callable[[], ArtifactStore],
    *,
    wall_clock: Callable[[], float] = time.time,
    caches: tuple[ObjectCache, ObjectCache, ObjectCache] | None = None,
    namespaces: Collection[str] = (),
) -> FastAPI:
    """The gateway app; ``store`` is called when S3 is first needed, ``wall_clock`` (Unix
    seconds) is what signature ages are measured against, ``caches`` the Devices,
    EdgeModels and FleetRollouts caches (default: watch caches of the cluster), started
    and stopped by the app's lifespan; ``namespaces`` the ones served (empty: all; devices of
    any other get 404 ``NamespaceNotServed``)."""
    gw = Gateway(config, store, wall_clock, caches, namespaces)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for cache in gw.caches:
            cache.start()
        try:
            yield
        finally:
            for cache in gw.caches:
                cache.stop(0)  # daemon threads: signal, do not wait out a watch

    app = FastAPI(
        title="EdgeOps fleet gateway",
        version=__version__,
        description="Device enrollment, desired state and reports; requests are signed "
        "with RFC 9421 HTTP Message Signatures (ed25519).",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # Signed paths are exact: a redirect to the slash-less path would only fail the
        # signature one round trip later. A wrong path is a 404 JSON error.
        redirect_slashes=False,
    )
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

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """Liveness: the process serves HTTP."""
        return _json(200, {"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Readiness: 200 once the watch caches of the fleet have their first lists (the
        gateway refuses device requests with 503 ``NotReady`` before)."""
        if not gw.fleet.synced:
            return _json(
                503,
                {"reason": "NotReady", "message": "the fleet's watch caches are not synced"},
                {"Retry-After": "1"},
            )
        return _json(200, {"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        # Text format 0.0.4, or OpenMetrics when the scraper asks for it.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(gw.registry), media_type=content_type)

    for module in (enrollment, desired, artifacts, reports, telemetry, samples):
        app.include_router(module.router(gw))
    app.add_middleware(RequestMetrics, registry=gw.registry)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


def openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI 3.1 document: every request and answer body a named schema under
    ``components/schemas`` (the request bodies are declared with their pydantic schemas,
    whose ``$defs`` are moved there), and every error the one :class:`ErrorBody` shape
    instead of FastAPI's default validation error (the endpoints validate bodies themselves,
    after the signature)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template=f"{COMPONENTS}{{model}}")
    error = {"application/json": {"schema": {"$ref": f"{COMPONENTS}ErrorBody"}}}
    for operations in doc["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                schemas.update(schema.pop("$defs", {}))
                schemas[schema["title"]] = schema
                content["application/json"]["schema"] = {"$ref": COMPONENTS + schema["title"]}
            responses = operation["responses"]
            responses.pop("422", None)
            responses["4XX"] = {"description": "Refused: see reason.", "content": error}
            responses["5XX"] = {"description": "Gateway or cluster trouble.", "content": error}
    app.openapi_schema = doc
    return doc


def openapi_document(app: FastAPI) -> str:
    """The app's OpenAPI document as indented JSON."""
    return json.dumps(app.openapi(), indent=2)
