"""What every gateway endpoint shares: settings, the S3 store, the read cache of the fleet,
request bodies with a size bound, RFC 9421 authentication and the per-device report
sequence. One :class:`Gateway` per app; endpoint modules receive it."""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from fastapi import Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from edgeops import httpsig
from edgeops.api.constants import DATASETS, EDGE_MODELS, FLEET_ROLLOUTS
from edgeops.gateway.limits import NonceCache, RateLimiter, RowBudget
from edgeops.k8s import fleet
from edgeops.metrics.fleet import FleetTelemetry
from edgeops.policy.device import enrollment_state as policy_enrollment_state
from edgeops.settings import GatewaySettings
from edgeops.store import ArtifactStore

_T = TypeVar("_T")
#: True while a :class:`Fleet` read must not do I/O (see :meth:`Gateway.cache_first`).
_CACHE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("cache_only", default=False)


class CacheMissError(Exception):
    """A :class:`Fleet` read missed its cache while I/O was not allowed."""


class ApiError(Exception):
    """An error answered as JSON ``{reason, message}`` with ``status`` (and ``headers``)."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers


Body = TypeVar("Body", bound=BaseModel)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON request body of ``model``'s schema (the
    endpoints read the raw body themselves: its bytes are what the signature covers)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def parse_body(model: type[Body], body: bytes) -> Body:
    """``body`` as ``model``; 422 ``InvalidRequest`` naming the fields at fault."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(422, "InvalidRequest", validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    """The first five errors of a refused body, each as ``field.path: message``."""
    parts = []
    for error in exc.errors()[:5]:
        loc = ".".join(str(p) for p in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else str(error["msg"]))
    return "; ".join(parts)


def enrollment_state(spec: dict[str, Any]) -> str:
    """A Device spec's enrollment state (Pending, Approved, Rejected, Revoked): the Device
    controller's rule (:func:`edgeops.policy.device.enrollment_state`) applied to a raw
    spec, so the gateway and the controller, both writers of status.enrollment, never
    disagree."""
    return policy_enrollment_state(
        str(spec.get("approval") or "Pending"), bool(spec.get("decommissioned"))
    )


def refuse_if_ended(device: dict[str, Any]) -> None:
    """403 ``DeviceRevoked`` for a decommissioned Device, ``DeviceRejected`` for one whose
    enrollment was rejected: the gateway serves neither, whatever the request."""
    state = enrollment_state(device.get("spec") or {})
    if state == "Revoked":
        raise ApiError(403, "DeviceRevoked", "the device is decommissioned")
    if state == "Rejected":
        raise ApiError(403, "DeviceRejected", "the device's enrollment was rejected")


@functools.lru_cache(maxsize=4096)
def public_key_of(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 raw bytes, or PEM. Raises ``ValueError``
    (``binascii.Error`` is one) for anything else. Cached (keys are immutable): every signed
    request looks its device's key up, and parsing it again each time was a measurable share
    of a telemetry report's cost (``benchmarks/gateway.py``)."""
    if text.strip().startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return key
    raw = base64.b64decode(text.strip(), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of ``key``."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key_or_none(text: Any) -> Ed25519PublicKey | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return public_key_of(text)
    except ValueError:
        return None


def identity_keys(
    device: dict[str, Any],
) -> tuple[Ed25519PublicKey | None, Ed25519PublicKey | None]:
    """A Device's (publicKey, nextPublicKey), each None when absent or unreadable."""
    identity = (device.get("spec") or {}).get("identity") or {}
    return _key_or_none(identity.get("publicKey")), _key_or_none(identity.get("nextPublicKey"))


def device_keys(device: dict[str, Any]) -> list[Ed25519PublicKey]:
    """The keys a Device's requests may be signed with: publicKey and nextPublicKey."""
    return [k for k in identity_keys(device) if k is not None]


def promoted_identity(next_key: Ed25519PublicKey) -> dict[str, Any]:
    """The merge patch of spec.identity that completes a key rotation: ``next_key`` becomes
    publicKey (base64 of its raw bytes) with its fingerprint, nextPublicKey is removed
    (null deletes a field in a JSON merge patch)."""
    raw = raw_public_key(next_key)
    return {
        "publicKey": base64.b64encode(raw).decode(),
        "fingerprint": hashlib.sha256(raw).hexdigest(),
        "nextPublicKey": None,
    }


@dataclass
class _Cached:
    at: float
    value: Any


@dataclass
class Fleet:
    """Reads of the API server with a TTL cache (seconds); writes refresh what they change."""

    ttl: float
    clock: Callable[[], float] = time.monotonic
    immutable_size: int = 64
    _cache: dict[tuple[str, str, str], _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _immutable: OrderedDict[tuple[str, str], Any] = field(default_factory=OrderedDict)

    def _get(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit.at < self.ttl:
                return hit.value
        if _CACHE_ONLY.get():
            raise CacheMissError(key)
        value = load()
        with self._lock:
            self._cache[key] = _Cached(now, value)
        return value

    def device(self, namespace: str, name: str, fresh: bool = False) -> dict[str, Any] | None:
        """The Device, or None; ``fresh`` reads past the cache."""
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
        """The namespace's EdgeModels."""
        return self._get(  # type: ignore[no-any-return]
            ("list", namespace, EDGE_MODELS), lambda: fleet.list_objects(namespace, EDGE_MODELS)
        )

    def rollouts(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's FleetRollouts."""
        return self._get(  # type: ignore[no-any-return]
            ("list", namespace, FLEET_ROLLOUTS),
            lambda: fleet.list_objects(namespace, FLEET_ROLLOUTS),
        )

    def dataset(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Dataset, or None."""
        return self._get(  # type: ignore[no-any-return]
            ("object", namespace, f"{DATASETS}/{name}"),
            lambda: fleet.read_object(namespace, DATASETS, name),
        )

    def cached(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        """Any other read (a Dataset) under the same TTL."""
        return self._get(key, load)

    def immutable(self, key: tuple[str, str], load: Callable[[], Any]) -> Any:
        """A read of something that never changes once written, such as a content-addressed
        reference profile (key ``(kind, sha256)``): kept past the TTL in a small LRU of
        ``immutable_size`` entries. A failed load raises and caches nothing."""
        with self._lock:
            if key in self._immutable:
                self._immutable.move_to_end(key)
                return self._immutable[key]
        if _CACHE_ONLY.get():
            raise CacheMissError(key)
        value = load()
        with self._lock:
            self._immutable[key] = value
            while len(self._immutable) > self.immutable_size:
                self._immutable.popitem(last=False)
        return value


class Gateway:
    """State shared by the endpoints of one app (one replica)."""

    def __init__(
        self,
        config: GatewaySettings,
        store: Callable[[], ArtifactStore],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.wall_clock = wall_clock
        self.fleet = Fleet(config.gateway_cache_seconds)
        self.window = config.gateway_signature_window_seconds
        self.nonces = NonceCache(2 * self.window)
        self.limiter = RateLimiter(config.gateway_requests_per_minute)
        #: Failed enrollments per client address: enrollment is the one endpoint anybody
        #: may call, so guessing tokens or flooding it with bad requests is bounded here.
        self.enroll_failures = RateLimiter(config.gateway_enrollments_per_minute)
        #: Uploaded sample rows per device (the sampling policy's maxRowsPerHour).
        self.rows = RowBudget()
        self._sequences: dict[tuple[str, str, str], int] = {}
        self._seq_lock = threading.Lock()
        # Per app, not prometheus_client's global registry: several apps (tests, replicas
        # in one process) must not collide or share counts.
        self.registry = CollectorRegistry()
        self.telemetry = FleetTelemetry()
        self.registry.register(self.telemetry)

    async def cache_first(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the event loop when every :class:`Fleet` read it makes hits the
        cache, else (on the first miss) again from the start in the threadpool, where its
        reads may block on the API server or S3. ``fn`` must make all its reads before any
        side effect, since a miss reruns it.

        Why: at steady state a device's reads are cache hits, and a hop to the threadpool
        and back cost more than the work itself (``benchmarks/gateway.py``)."""
        token = _CACHE_ONLY.set(True)
        try:
            return fn(*args)
        except CacheMissError:
            pass
        finally:
            _CACHE_ONLY.reset(token)
        return await run_in_threadpool(fn, *args)

    async def read_body(self, request: Request) -> bytes:
        """The request body; 413 ``BodyTooLarge`` past ``gateway_max_body_bytes``."""
        limit = self.config.gateway_max_body_bytes
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

    def parse_signature(self, request: Request) -> httpsig.Parsed:
        """The request's Signature-Input and Signature; 401 when absent or malformed."""
        sig_input = request.headers.get("signature-input")
        sig = request.headers.get("signature")
        if not sig_input or not sig:
            raise ApiError(401, "Unsigned", "requests must carry Signature-Input and Signature")
        try:
            return httpsig.parse(sig_input, sig)
        except httpsig.SignatureError as exc:
            raise ApiError(401, exc.reason, str(exc)) from None

    def authenticate(
        self,
        request: Request,
        body: bytes,
        keys: list[Ed25519PublicKey],
        parsed: httpsig.Parsed,
    ) -> httpsig.Verified:
        """Signature, time window, body digest, then the nonce (only once all else holds),
        then the per-device rate limit (429 with Retry-After). The answer's ``key`` is the
        index in ``keys`` of the key the signature verified with."""
        try:
            verified = httpsig.check_profile(parsed)
            index = httpsig.verify(parsed, keys, request.method, request.url.path, request.headers)
            verified = dataclasses.replace(verified, key=index)
        except httpsig.SignatureError as exc:
            raise ApiError(401, exc.reason, str(exc)) from None
        now = self.wall_clock()
        if abs(now - verified.created) > self.window:
            raise ApiError(
                401,
                "SignatureExpired",
                f"created is more than {self.window} s from the gateway's clock",
            )
        if not httpsig.digest_matches(request.headers.get("content-digest", ""), body):
            raise ApiError(401, "DigestMismatch", "Content-Digest does not match the body")
        if not self.nonces.add(verified.keyid, verified.nonce, now):
            raise ApiError(401, "Replayed", "this nonce was used already")
        wait = self.limiter.take(verified.keyid, time.monotonic())
        if wait > 0:
            raise ApiError(
                429, "RateLimited", "too many requests", {"Retry-After": str(int(wait) + 1)}
            )
        return verified

    async def signed_device(
        self, request: Request, namespace: str, name: str, body: bytes
    ) -> dict[str, Any]:
        """The Device the request is signed by, which must be the one in the path (403
        ``WrongDevice`` otherwise) and neither rejected nor decommissioned."""
        parsed = self.parse_signature(request)
        keyid = parsed.params.get("keyid")
        if not isinstance(keyid, str) or keyid.count("/") != 1:
            raise ApiError(401, "BadSignatureInput", 'keyid must be "<namespace>/<device>"')
        key_ns, key_name = keyid.split("/")
        signer = await self.cache_first(self.fleet.device, key_ns, key_name)
        if signer is None:
            raise ApiError(401, "UnknownDevice", f"no device {keyid}")
        current, upcoming = identity_keys(signer)
        keys = [k for k in (current, upcoming) if k is not None]
        verified = self.authenticate(request, body, keys, parsed)
        if (key_ns, key_name) != (namespace, name):
            raise ApiError(403, "WrongDevice", f"{keyid} may only act for itself")
        refuse_if_ended(signer)
        if upcoming is not None and keys[verified.key] is upcoming:
            signer = await run_in_threadpool(self.promote_key, key_ns, key_name, upcoming)
        return signer

    def promote_key(self, namespace: str, name: str, next_key: Ed25519PublicKey) -> dict[str, Any]:
        """Completes a key rotation once the device proved it holds ``next_key`` (a request
        signed with spec.identity.nextPublicKey): patches spec.identity to
        :func:`promoted_identity`, so the old key is refused from then on. Reads the Device
        past the cache first and patches only if nextPublicKey is still that key (another
        replica may have promoted it, or a person replaced it meanwhile). Returns the
        Device as it now is; raises the API server's errors."""
        device = self.fleet.device(namespace, name, fresh=True)
        if device is None:
            raise ApiError(404, "UnknownDevice", "the device was deleted")
        _, upcoming = identity_keys(device)
        if upcoming is None or raw_public_key(upcoming) != raw_public_key(next_key):
            return device
        patched = fleet.patch_device(
            namespace, name, {"spec": {"identity": promoted_identity(next_key)}}
        )
        self.fleet.remember(namespace, name, patched)
        return patched

    def client_address(self, request: Request) -> str:
        """The peer address of the connection (never a forwarded-for header: the gateway
        runs without proxy headers, so a client cannot pick its own bucket)."""
        return request.client.host if request.client is not None else "unknown"

    def check_enroll_budget(self, address: str) -> None:
        """429 ``RateLimited`` with Retry-After while ``address`` has used up its failed
        enrollments (``gateway_enrollments_per_minute``)."""
        wait = self.enroll_failures.wait(address, time.monotonic())
        if wait > 0:
            raise ApiError(
                429,
                "RateLimited",
                "too many failed enrollments from this address",
                {"Retry-After": str(int(wait) + 1)},
            )

    def count_enroll_failure(self, address: str) -> None:
        """Charges one failed enrollment to ``address``."""
        self.enroll_failures.take(address, time.monotonic())

    def approved_device(self, device: dict[str, Any]) -> None:
        """403 ``DevicePending`` unless the device is approved."""
        if enrollment_state(device.get("spec") or {}) != "Approved":
            raise ApiError(403, "DevicePending", "the device is not approved yet")

    def take_sequence(self, device: dict[str, Any], sequence: int) -> None:
        """Accepts ``sequence`` if it exceeds every one seen for this Device (in this replica,
        and ``status.sequence``); 409 ``StaleSequence`` otherwise. Keyed by the Device's UID
        too: a Device deleted and enrolled again under the same name starts afresh."""
        meta = device.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid")))
        stored = int((device.get("status") or {}).get("sequence", -1))
        with self._seq_lock:
            last = max(self._sequences.get(key, -1), stored)
            if sequence <= last:
                raise ApiError(409, "StaleSequence", f"sequence must exceed {last}")
            self._sequences[key] = sequence
