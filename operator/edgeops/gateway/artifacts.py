"""``GET /v1/devices/{namespace}/{name}/artifacts/{sha256}``: an OTA artifact download.

Answered with 307 to a presigned S3 GET URL of the object, valid for
``gateway_presign_seconds``, so the bytes never pass through the gateway and a device never
holds S3 credentials: only a URL for one object, for minutes. Only artifacts listed in the
signed bundle manifest of the device's *current* desired version and target (the one
``.../desired`` returns) are served; any other hash, including an artifact of another
version, model or target, is 404 ``ArtifactNotAssigned``. The device verifies what it
downloads against the manifest's size and SHA-256, so the gateway does not read the bytes.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from edgeops.gateway.context import ApiError, Gateway
from edgeops.gateway.desired import assignment, bundle_key
from edgeops.store import StoreError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def manifest_artifacts(envelope: bytes) -> list[dict[str, Any]]:
    """The ``artifacts`` of a stored signed-manifest envelope ``{"keyId", "manifest",
    "signature"}`` (see :mod:`edgeops.signing.bundle`): dicts with name, format, uri, size,
    sha256. Raises ValueError for anything else. The signature is not checked here: the
    envelope comes from the operator's own bucket, and the device verifies it."""
    document = json.loads(envelope)
    artifacts = document["manifest"]["artifacts"] if isinstance(document, dict) else None
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        raise ValueError("no artifacts list in the manifest")
    return artifacts


def artifact_key(uri: str, bucket: str) -> str:
    """The key in ``bucket`` of an ``s3://<bucket>/<key>`` artifact URI; ValueError for a
    URI of another scheme or bucket (the gateway presigns in its own bucket only)."""
    rest = uri.removeprefix("s3://")
    found_bucket, _, key = rest.partition("/")
    if rest == uri or found_bucket != bucket or not key:
        raise ValueError("artifact URI is not an object of the gateway's bucket")
    return key


def artifact_location(
    gw: Gateway, namespace: str, name: str, device: dict[str, Any], sha256: str
) -> str:
    """The presigned URL of the assigned artifact ``sha256``.

    Raises ApiError: 404 ``NothingAssigned``/``NoTarget`` (see
    :func:`~edgeops.gateway.desired.assignment`), ``NoBundle`` before the version is signed,
    ``ArtifactNotAssigned`` for a hash the manifest does not list; 502
    ``ArtifactUnavailable`` for a manifest or artifact the gateway cannot serve (unreadable,
    another bucket, the object missing)."""
    choice, model, target = assignment(gw, namespace, name, device)
    store = gw.store()
    try:
        envelope = store.get_bytes(bundle_key(namespace, model, choice.version, target))
    except StoreError:
        raise ApiError(
            404, "NoBundle", f"no signed bundle for {choice.model} v{choice.version}"
        ) from None
    try:
        listed = manifest_artifacts(envelope)
    except (ValueError, KeyError, TypeError):
        raise ApiError(502, "ArtifactUnavailable", "the bundle manifest is unreadable") from None
    entry = next((a for a in listed if a.get("sha256") == sha256), None)
    if entry is None:
        raise ApiError(
            404,
            "ArtifactNotAssigned",
            f"{sha256} is not an artifact of {choice.model} v{choice.version} "
            f"for target {target.name}",
        )
    try:
        key = artifact_key(str(entry.get("uri", "")), store.bucket)
    except ValueError as error:
        raise ApiError(502, "ArtifactUnavailable", str(error)) from None
    # A missing object would send the device to an S3 error page instead of a JSON answer.
    if not store.exists(key):
        raise ApiError(502, "ArtifactUnavailable", f"artifact {sha256} is missing from storage")
    return store.presigned_get(key, timedelta(seconds=gw.config.gateway_presign_seconds))


def router(gw: Gateway) -> APIRouter:
    """The artifact-download endpoint."""
    api = APIRouter()

    @api.get(
        "/v1/devices/{namespace}/{name}/artifacts/{sha256}",
        response_model=None,
        status_code=307,
        responses={
            307: {"description": "Location: a presigned S3 GET URL of the artifact."},
            404: {"description": "ArtifactNotAssigned: not in the current desired manifest."},
        },
    )
    async def artifact(request: Request, namespace: str, name: str, sha256: str) -> Response:
        body = await gw.read_body(request)
        device = await gw.signed_device(request, namespace, name, body)
        device = await gw.approved_device(device)
        if not _SHA256.match(sha256):
            raise ApiError(
                404, "ArtifactNotAssigned", "artifacts are named by lowercase hex SHA-256"
            )
        url = await run_in_threadpool(artifact_location, gw, namespace, name, device, sha256)
        # no-store: the URL expires, and is for this device; no cache may hand it on.
        return Response(status_code=307, headers={"Location": url, "Cache-Control": "no-store"})

    return api
