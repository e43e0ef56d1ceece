"""The fleet gateway's HTTP API (FastAPI): enrollment, desired state and status reports.

Every error is JSON ``{"reason", "message"}``. Every request but enrollment's token check is
authenticated by an RFC 9421 signature (:mod:`edgeops.gateway.httpsig`) with the device's
key; enrollment is signed too, with the key it enrolls (proof of possession). Reads of
Devices, EdgeModels and FleetRollouts go through a short TTL cache
(``EDGEOPS_GATEWAY_CACHE_SECONDS``); writes go straight to the API server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from edgeops import __version__
from edgeops.api.common import DNS_SUBDOMAIN, LabelSelector, format_time
from edgeops.api.constants import EDGE_MODELS, FLEET_ROLLOUTS, GROUP, VERSION
from edgeops.api.device import REASON_CODE, DeviceSpec, Health, Slots, UpdatePhase
from edgeops.api.edgemodel import Target
from edgeops.canonical_json import jcs
from edgeops.gateway import httpsig
from edgeops.gateway.limits import NonceCache, RateLimiter
from edgeops.gateway.tokens import TokenError, check_token, secret_name
from edgeops.k8s import fleet
from edgeops.policy.desired import RolloutView, choose_target, desired_version
from edgeops.policy.serving import model_prefix
from edgeops.settings import GatewaySettings
from edgeops.store import ArtifactStore, StoreError

_RESERVED_LABEL_PREFIX = f"{GROUP}/"


class ApiError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Capabilities(_Body):
    arch: str | None = Field(None, max_length=32)
    runtimes: list[str] = Field(default_factory=list, max_length=8)
    agent_version: str | None = Field(None, max_length=64)


class EnrollRequest(_Body):
    """Enrollment: a bootstrap token and the key the request is signed with."""

    token: str = Field(min_length=1, max_length=128)
    namespace: str = Field(min_length=1, max_length=63, pattern=DNS_SUBDOMAIN)
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    public_key: str = Field(
        min_length=44, max_length=44, description="base64 of the 32 raw Ed25519 bytes"
    )
    target_type: Literal["linux", "mcu"]
    hardware: str | None = Field(None, max_length=128)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    capabilities: Capabilities = Field(default_factory=Capabilities)


class UpdateReport(_Body):
    target_version: int = Field(ge=1)
    phase: UpdatePhase
    attempt: int = Field(1, ge=1, le=1000)
    reason_code: str | None = Field(None, max_length=63, pattern=REASON_CODE)
    message: str | None = Field(None, max_length=1024)


class StatusReport(_Body):
    """A device's report; ``sequence`` must exceed the last accepted one."""

    sequence: int = Field(ge=0, le=2**53 - 1)
    agent_version: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=253)
    version: int | None = Field(None, ge=1)
    slots: Slots | None = None
    update: UpdateReport | None = None
    health: Health | None = None


def enrollment_state(spec: dict[str, Any]) -> str:
    """Revoked when decommissioned, else what spec.approval says."""
    if spec.get("decommissioned"):
        return "Revoked"
    return str(spec.get("approval") or "Pending")


def public_key_of(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 raw bytes, or PEM."""
    if text.strip().startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return key
    raw = base64.b64decode(text.strip(), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def _raw(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class _Cached:
    at: float
    value: Any


@dataclass
class Fleet:
    """Reads of the API server with a TTL cache; writes invalidate what they change."""

    ttl: float
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, str, str], _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _get(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit.at < self.ttl:
                return hit.value
        value = load()
        with self._lock:
            self._cache[key] = _Cached(now, value)
        return value

    def device(self, namespace: str, name: str, fresh: bool = False) -> dict[str, Any] | None:
        key = ("device", namespace, name)
        if fresh:
            self.forget(namespace, name)
        return self._get(key, lambda: fleet.read_device(namespace, name))  # type: ignore[no-any-return]

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._cache.pop(("device", namespace, name), None)

    def remember(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self._cache[("device", namespace, name)] = _Cached(self.clock(), obj)

    def models(self, namespace: str) -> list[dict[str, Any]]:
        return self._get(  # type: ignore[no-any-return]
            ("list", namespace, EDGE_MODELS), lambda: fleet.list_objects(namespace, EDGE_MODELS)
        )

    def rollouts(self, namespace: str) -> list[dict[str, Any]]:
        return self._get(  # type: ignore[no-any-return]
            ("list", namespace, FLEET_ROLLOUTS),
            lambda: fleet.list_objects(namespace, FLEET_ROLLOUTS),
        )


def rollout_view(obj: dict[str, Any]) -> RolloutView | None:
    spec, status, meta = obj.get("spec", {}), obj.get("status") or {}, obj.get("metadata", {})
    try:
        selector = LabelSelector.model_validate(spec["selector"]) if spec.get("selector") else None
        percent = status.get("currentPercent")
        if percent is None and status.get("currentStep") is not None:
            percent = spec["steps"][int(status["currentStep"])]["percent"]
        return RolloutView(
            name=meta["name"],
            uid=meta["uid"],
            created=meta.get("creationTimestamp", ""),
            model=spec["modelRef"]["name"],
            version=int(spec["version"]),
            phase=status.get("phase"),
            percent=int(percent or 0),
            selector=selector,
        )
    except (KeyError, ValueError, IndexError, TypeError, ValidationError):
        return None


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)


def create_app(
    config: GatewaySettings,
    store: Callable[[], ArtifactStore],
    *,
    wall_clock: Callable[[], float] = time.time,
) -> FastAPI:
    app = FastAPI(
        title="EdgeOps fleet gateway",
        version=__version__,
        description="Device enrollment, desired state and reports; requests are signed "
        "with RFC 9421 HTTP Message Signatures (ed25519).",
        docs_url=None,
        redoc_url=None,
    )
    devices = Fleet(config.gateway_cache_seconds)
    window = config.gateway_signature_window_seconds
    nonces = NonceCache(2 * window)
    limiter = RateLimiter(config.gateway_requests_per_minute)
    sequences: dict[tuple[str, str], int] = {}
    last_seen_written: dict[tuple[str, str], float] = {}
    seq_lock = threading.Lock()

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

    async def read_body(request: Request) -> bytes:
        limit = config.gateway_max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(413, "BodyTooLarge", f"request bodies are limited to {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "BodyTooLarge", f"request bodies are limited to {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def parse_signature(request: Request) -> httpsig.Parsed:
        sig_input = request.headers.get("signature-input")
        sig = request.headers.get("signature")
        if not sig_input or not sig:
            raise ApiError(401, "Unsigned", "requests must carry Signature-Input and Signature")
        try:
            return httpsig.parse(sig_input, sig)
        except httpsig.SignatureError as exc:
            raise ApiError(401, exc.reason, str(exc)) from None

    def authenticate(
        request: Request, body: bytes, keys: list[Ed25519PublicKey], parsed: httpsig.Parsed
    ) -> httpsig.Verified:
        """Signature, time window, body digest, then the nonce (only once all else holds)."""
        try:
            verified = httpsig.check_profile(parsed)
            httpsig.verify(parsed, keys, request.method, request.url.path, request.headers)
        except httpsig.SignatureError as exc:
            raise ApiError(401, exc.reason, str(exc)) from None
        now = wall_clock()
        if abs(now - verified.created) > window:
            raise ApiError(
                401, "SignatureExpired", f"created is more than {window} s from the gateway's clock"
            )
        if not httpsig.digest_matches(request.headers.get("content-digest", ""), body):
            raise ApiError(401, "DigestMismatch", "Content-Digest does not match the body")
        if not nonces.add(verified.keyid, verified.nonce, now):
            raise ApiError(401, "Replayed", "this nonce was used already")
        wait = limiter.take(verified.keyid, time.monotonic())
        if wait > 0:
            raise ApiError(
                429, "RateLimited", "too many requests", {"Retry-After": str(int(wait) + 1)}
            )
        return verified

    def device_keys(device: dict[str, Any]) -> list[Ed25519PublicKey]:
        identity = (device.get("spec") or {}).get("identity") or {}
        keys = []
        for text in (identity.get("publicKey"), identity.get("nextPublicKey")):
            if text:
                try:
                    keys.append(public_key_of(text))
                except ValueError:
                    continue
        return keys

    async def signed_device(
        request: Request, namespace: str, name: str, body: bytes
    ) -> dict[str, Any]:
        """The Device the request is signed by, which must be the one in the path."""
        parsed = parse_signature(request)
        keyid = parsed.params.get("keyid")
        if not isinstance(keyid, str) or keyid.count("/") != 1:
            raise ApiError(401, "BadSignatureInput", 'keyid must be "<namespace>/<device>"')
        key_ns, key_name = keyid.split("/")
        signer = await run_in_threadpool(devices.device, key_ns, key_name)
        if signer is None:
            raise ApiError(401, "UnknownDevice", f"no device {keyid}")
        authenticate(request, body, device_keys(signer), parsed)
        if (key_ns, key_name) != (namespace, name):
            raise ApiError(403, "WrongDevice", f"{keyid} may only act for itself")
        state = enrollment_state(signer.get("spec") or {})
        if state == "Revoked":
            raise ApiError(403, "DeviceRevoked", "the device is decommissioned")
        if state == "Rejected":
            raise ApiError(403, "DeviceRejected", "the device's enrollment was rejected")
        return signer

    # --- enrollment -----------------------------------------------------------------------

    @app.post(
        "/v1/enroll",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EnrollRequest.model_json_schema()}},
            }
        },
    )
    async def enroll(request: Request) -> Response:
        body = await read_body(request)
        try:
            req = EnrollRequest.model_validate_json(body)
        except ValidationError as exc:
            raise ApiError(422, "InvalidRequest", _errors(exc)) from None
        if any(k.startswith(_RESERVED_LABEL_PREFIX) for k in req.labels):
            raise ApiError(
                422, "InvalidRequest", f"labels under {_RESERVED_LABEL_PREFIX} come from the token"
            )
        try:
            key = public_key_of(req.public_key)
        except (ValueError, binascii.Error):
            raise ApiError(422, "InvalidRequest", "publicKey is not an Ed25519 key") from None
        parsed = parse_signature(request)
        if parsed.params.get("keyid") != f"{req.namespace}/{req.name}":
            raise ApiError(401, "BadSignatureInput", "keyid must name the enrolling device")
        authenticate(request, body, [key], parsed)
        return await run_in_threadpool(_enroll, req, key)

    def _enroll(req: EnrollRequest, key: Ed25519PublicKey) -> Response:
        try:
            secret = secret_name(req.token)
        except TokenError as exc:
            raise ApiError(401, exc.reason, str(exc)) from None
        now = datetime.fromtimestamp(wall_clock(), UTC)
        existing = fleet.read_device(req.namespace, req.name)
        if existing is not None:
            spec = existing.get("spec") or {}
            keys = device_keys(existing)
            identity = spec.get("identity")
            if identity and not any(_raw(k) == _raw(key) for k in keys):
                raise ApiError(403, "KeyMismatch", "the device exists with another public key")
            state = enrollment_state(spec)
            if state == "Revoked":
                raise ApiError(403, "DeviceRevoked", "the device is decommissioned")
            if state == "Rejected":
                raise ApiError(403, "DeviceRejected", "the device's enrollment was rejected")
        grant = _use_token(req, secret, now)
        raw = _raw(key)
        identity = {
            "publicKey": base64.b64encode(raw).decode(),
            "fingerprint": hashlib.sha256(raw).hexdigest(),
        }
        labels = {**req.labels, **grant.labels}
        if existing is None:
            spec_model = DeviceSpec(
                target_type=req.target_type,
                hardware=req.hardware,
                approval="Approved" if grant.auto_approve else "Pending",
            )
            spec_doc = spec_model.model_dump(by_alias=True, exclude_none=True)
            spec_doc["identity"] = identity
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Device",
                "metadata": {
                    "name": req.name,
                    "labels": labels,
                    "annotations": {f"{GROUP}/bootstrap-token": secret},
                },
                "spec": spec_doc,
            }
            device = fleet.create_device(req.namespace, body)
            if device is None:
                raise ApiError(409, "Conflict", "the device was created meanwhile; enroll again")
        else:
            patch: dict[str, Any] = {"metadata": {"labels": labels}}
            spec = existing.get("spec") or {}
            if not spec.get("identity"):
                patch["spec"] = {"identity": identity}
            if grant.auto_approve and spec.get("approval", "Pending") == "Pending":
                patch.setdefault("spec", {})["approval"] = "Approved"
            device = fleet.patch_device(req.namespace, req.name, patch)
        state = enrollment_state(device.get("spec") or {})
        status = {
            "enrollment": state,
            "enrolledAt": format_time(now),
            "capabilities": req.capabilities.model_dump(by_alias=True, exclude_none=True),
            "agentVersion": req.capabilities.agent_version,
        }
        device = fleet.patch_device_status(req.namespace, req.name, status)
        devices.remember(req.namespace, req.name, device)
        return _json(201, {"namespace": req.namespace, "name": req.name, "enrollment": state})

    def _use_token(req: EnrollRequest, secret: str, now: datetime) -> Any:
        """Counts one use of the token: compare-and-swap on the Secret's resourceVersion."""
        for _ in range(10):
            found = fleet.read_token_secret(req.namespace, secret)
            if found is None:
                raise ApiError(401, "InvalidToken", "the bootstrap token is not valid")
            try:
                grant = check_token(req.token, found.data, now)
            except TokenError as exc:
                raise ApiError(401, exc.reason, str(exc)) from None
            data = {**found.data, "uses": str(grant.uses + 1)}
            if fleet.update_token_secret(req.namespace, secret, data, found.resource_version):
                return grant
        raise ApiError(409, "Conflict", "the bootstrap token is busy; try again")

    # --- desired state --------------------------------------------------------------------

    @app.get("/v1/devices/{namespace}/{name}/desired")
    async def desired(request: Request, namespace: str, name: str) -> Response:
        body = await read_body(request)
        device = await signed_device(request, namespace, name, body)
        if enrollment_state(device.get("spec") or {}) != "Approved":
            raise ApiError(403, "DevicePending", "the device is not approved yet")
        document = await run_in_threadpool(_desired, namespace, name, device)
        data = jcs(document)
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(data, media_type="application/json", headers={"ETag": etag})

    def _desired(namespace: str, name: str, device: dict[str, Any]) -> dict[str, Any]:
        labels = (device.get("metadata") or {}).get("labels") or {}
        models = {m["metadata"]["name"]: m for m in devices.models(namespace)}
        current = {n: (m.get("status") or {}).get("currentVersion") for n, m in models.items()}
        views = [v for v in map(rollout_view, devices.rollouts(namespace)) if v is not None]
        choice = desired_version(name, labels, current, views)
        if choice is None or choice.model not in models:
            raise ApiError(404, "NothingAssigned", "no model version is assigned to this device")
        model = models[choice.model]
        spec = device.get("spec") or {}
        try:
            targets = [Target.model_validate(t) for t in model["spec"]["targets"]]
        except (KeyError, ValidationError):
            targets = []
        target = choose_target(targets, spec.get("targetType", ""), spec.get("hardware"))
        if target is None:
            raise ApiError(404, "NoTarget", f"{choice.model} has no target for this device")
        uid = model["metadata"]["uid"]
        key = f"{model_prefix(namespace, choice.model, uid)}/versions/{choice.version}"
        key += f"/bundles/{target.name}.json"
        try:
            manifest = store().get_bytes(key)
        except StoreError:
            raise ApiError(
                404, "NoBundle", f"no signed bundle for {choice.model} v{choice.version}"
            ) from None
        return {
            "model": choice.model,
            "modelUid": uid,
            "version": choice.version,
            "rollout": choice.rollout,
            "cohort": choice.cohort,
            "target": {
                "name": target.name,
                "type": target.target_type,
                "format": target.format,
            },
            # The stored bytes, exactly: verify_manifest checks them byte for byte.
            "bundleManifest": manifest.decode(),
        }

    # --- reports --------------------------------------------------------------------------

    @app.post(
        "/v1/devices/{namespace}/{name}/status",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": StatusReport.model_json_schema()}},
            }
        },
    )
    async def report(request: Request, namespace: str, name: str) -> Response:
        body = await read_body(request)
        await signed_device(request, namespace, name, body)
        try:
            req = StatusReport.model_validate_json(body)
        except ValidationError as exc:
            raise ApiError(422, "InvalidRequest", _errors(exc)) from None
        return await run_in_threadpool(_report, namespace, name, req)

    def _report(namespace: str, name: str, req: StatusReport) -> Response:
        device = devices.device(namespace, name, fresh=True)
        if device is None:
            raise ApiError(404, "UnknownDevice", "the device was deleted")
        status = device.get("status") or {}
        with seq_lock:
            last = max(sequences.get((namespace, name), -1), int(status.get("sequence", -1)))
            if req.sequence <= last:
                raise ApiError(409, "StaleSequence", f"sequence must exceed {last}")
            sequences[(namespace, name)] = req.sequence
        now = wall_clock()
        wanted: dict[str, Any] = {}
        if req.agent_version is not None:
            wanted["agentVersion"] = req.agent_version
        if req.model is not None:
            wanted["model"] = req.model
        if req.version is not None:
            wanted["version"] = req.version
        if req.health is not None:
            wanted["health"] = req.health
        if req.slots is not None:
            wanted["slots"] = req.slots.model_dump(by_alias=True, exclude_none=True)
        if req.update is not None:
            update = req.update.model_dump(by_alias=True, exclude_none=True)
            old = status.get("update") or {}
            if {k: v for k, v in old.items() if k != "time"} != update:
                update["time"] = format_time(datetime.fromtimestamp(now, UTC))
                wanted["update"] = update
        state = enrollment_state(device.get("spec") or {})
        if status.get("enrollment") != state:
            wanted["enrollment"] = state
        changed = {k: v for k, v in wanted.items() if status.get(k) != v}
        key = (namespace, name)
        seen_due = now - last_seen_written.get(key, 0.0) >= config.gateway_last_seen_seconds
        if changed or seen_due:
            changed["lastSeen"] = format_time(datetime.fromtimestamp(now, UTC))
            changed["sequence"] = req.sequence
            updated = fleet.patch_device_status(namespace, name, changed)
            devices.remember(namespace, name, updated)
            last_seen_written[key] = now
        return _json(200, {"sequence": req.sequence, "written": sorted(changed)})

    return app


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        loc = ".".join(str(p) for p in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else str(error["msg"]))
    return "; ".join(parts)


def openapi_document(app: FastAPI) -> str:
    return json.dumps(app.openapi(), indent=2)
