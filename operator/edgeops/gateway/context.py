"""What every gateway endpoint shares: settings, the S3 store, the watch caches of the
fleet, request bodies with a size bound, RFC 9421 authentication and the per-device report
sequence (stored in the Device, so it holds across replicas). One :class:`Gateway` per app;
endpoint modules receive it."""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

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
from starlette.requests import ClientDisconnect

from edgeops import httpsig
from edgeops.api.common import format_time
from edgeops.api.constants import DATASETS, DEVICES, EDGE_MODELS, FLEET_ROLLOUTS
from edgeops.gateway.limits import NonceCache, RateLimiter, RowBudget
from edgeops.k8s import fleet
from edgeops.k8s.watchcache import NamespacedCaches, WatchCache
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


#: Where the OpenAPI document keeps named schemas (:func:`edgeops.gateway.app.openapi`
#: moves every request body's schema and its ``$defs`` there).
COMPONENTS: Final = "#/components/schemas/"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON request body of ``model``'s schema (the
    endpoints read the raw body themselves: its bytes are what the signature covers)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": model.model_json_schema(ref_template=f"{COMPONENTS}{{model}}")
                }
            },
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


class ObjectCache(Protocol):
    """What the gateway reads fleet objects from: :class:`edgeops.k8s.watchcache.WatchCache`
    (list + watch); reads never do I/O."""

    @property
    def synced(self) -> bool: ...

    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, namespace: str) -> list[dict[str, Any]]: ...

    def apply(self, obj: dict[str, Any]) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


@dataclass
class _Cached:
    at: float
    value: Any


@dataclass
class Fleet:
    """The gateway's view of the cluster. Devices, EdgeModels and FleetRollouts come from
    watch-fed caches (``devices``, ``edge_models``, ``rollouts``); reads before they are
    synced are 503 ``NotReady``. What the gateway writes is stored at once
    (:meth:`remember`), so the next request sees it (read-your-writes). Datasets and signed
    bundle manifests (S3) are kept ``ttl`` seconds (:meth:`cached`); content-addressed
    reads in a small LRU (:meth:`immutable`)."""

    devices: ObjectCache
    edge_models: ObjectCache
    rollouts_cache: ObjectCache
    ttl: float
    clock: Callable[[], float] = time.monotonic
    immutable_size: int = 64
    _cache: dict[tuple[str, str, str], _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _immutable: OrderedDict[tuple[str, str], Any] = field(default_factory=OrderedDict)

    @property
    def synced(self) -> bool:
        """Whether every watch cache has its first list (the gateway is ready)."""
        return all(c.synced for c in (self.devices, self.edge_models, self.rollouts_cache))

    def _ready(self, cache: ObjectCache) -> ObjectCache:
        if not cache.synced:
            raise ApiError(
                503,
                "NotReady",
                "the gateway is still loading the fleet; try again",
                {"Retry-After": "1"},
            )
        return cache

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

    def device(
        self, namespace: str, name: str, fresh: bool = False, cached_only: bool = False
    ) -> dict[str, Any] | None:
        """The Device, or None. From the watch cache; a miss (a Device another replica
        created a moment ago, not yet delivered by the watch) and ``fresh`` read the API
        server (I/O: a :class:`CacheMissError` where I/O is not allowed), unless
        ``cached_only`` (then a miss is None)."""
        if not fresh:
            hit = self._ready(self.devices).get(namespace, name)
            if hit is not None or cached_only:
                return hit
        if _CACHE_ONLY.get():
            raise CacheMissError(("device", namespace, name))
        found = fleet.read_device(namespace, name)
        if found is not None:
            self.devices.apply(found)
        return found

    def remember(self, obj: dict[str, Any]) -> None:
        """Stores a Device the gateway just wrote, as the API server returned it."""
        self.devices.apply(obj)

    def models(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's EdgeModels."""
        return self._ready(self.edge_models).list(namespace)

    def rollouts(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's FleetRollouts."""
        return self._ready(self.rollouts_cache).list(namespace)

    def dataset(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Dataset, or None (kept ``ttl`` seconds: read only by sample uploads)."""
        return self._get(  # type: ignore[no-any-return]
            ("object", namespace, f"{DATASETS}/{name}"),
            lambda: fleet.read_object(namespace, DATASETS, name),
        )

    def cached(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        """Any other read (a bundle manifest in S3) kept ``ttl`` seconds."""
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


def watch_caches(
    namespaces: Collection[str] = (),
) -> tuple[ObjectCache, ObjectCache, ObjectCache]:
    """Unstarted watch caches of Devices, EdgeModels and FleetRollouts: of the whole cluster,
    or one namespaced list + watch per kind and namespace when ``namespaces`` is given."""
    kinds = (DEVICES, EDGE_MODELS, FLEET_ROLLOUTS)
    if namespaces:
        devices, models, rollouts = (NamespacedCaches(kind, namespaces) for kind in kinds)
        return devices, models, rollouts
    return WatchCache(DEVICES), WatchCache(EDGE_MODELS), WatchCache(FLEET_ROLLOUTS)


class Gateway:
    """State shared by the endpoints of one app (one replica)."""

    def __init__(
        self,
        config: GatewaySettings,
        store: Callable[[], ArtifactStore],
        wall_clock: Callable[[], float] = time.time,
        caches: tuple[ObjectCache, ObjectCache, ObjectCache] | None = None,
        namespaces: Collection[str] = (),
    ) -> None:
        """``caches`` are the Devices, EdgeModels and FleetRollouts caches (default:
        :func:`watch_caches` of ``namespaces``, started by the app's lifespan);
        ``namespaces`` are the ones served (empty: every namespace)."""
        self.config = config
        self.store = store
        self.wall_clock = wall_clock
        self.namespaces = frozenset(namespaces)
        self.caches = caches if caches is not None else watch_caches(self.namespaces)
        self.fleet = Fleet(*self.caches, ttl=config.gateway_cache_seconds)
        self.window = config.gateway_signature_window_seconds
        # Per replica, the first line against replays: a replay to another replica is
        # refused by the stored report sequence (take_sequence) instead.
        self.nonces = NonceCache(2 * self.window)
        #: With gateway_replay_scope "replica": the last sequence accepted per Device UID.
        self.sequences: dict[str, int] = {}
        self._sequences_lock = threading.Lock()
        self.limiter = RateLimiter(config.gateway_requests_per_minute)
        #: Failed enrollments per client address: enrollment is the one endpoint anybody
        #: may call, so guessing tokens or flooding it with bad requests is bounded here.
        self.enroll_failures = RateLimiter(config.gateway_enrollments_per_minute)
        #: Uploaded sample rows per device (the sampling policy's maxRowsPerHour).
        self.rows = RowBudget()
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
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(
                        413, "BodyTooLarge", f"request bodies are limited to {limit} bytes"
                    )
                chunks.append(chunk)
        except ClientDisconnect:
            # Flaky edge links drop mid-body: the client's fault, not a gateway error (5xx
            # alerts must not fire on it); nobody reads the answer.
            raise ApiError(
                400, "ClientDisconnected", "the client left before its body ended"
            ) from None
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

    def check_served(self, namespace: str) -> None:
        """Raises 404 ``NamespaceNotServed`` for a namespace this gateway does not serve
        (``--namespace``): it has neither caches nor permissions there."""
        if self.namespaces and namespace not in self.namespaces:
            raise ApiError(
                404, "NamespaceNotServed", f"namespace {namespace!r} is not served by this gateway"
            )

    async def signed_device(
        self, request: Request, namespace: str, name: str, body: bytes
    ) -> dict[str, Any]:
        """The Device the request is signed by, which must be the one in the path (403
        ``WrongDevice`` otherwise) and neither rejected nor decommissioned."""
        self.check_served(namespace)
        parsed = self.parse_signature(request)
        keyid = parsed.params.get("keyid")
        if not isinstance(keyid, str) or keyid.count("/") != 1:
            raise ApiError(401, "BadSignatureInput", 'keyid must be "<namespace>/<device>"')
        key_ns, key_name = keyid.split("/")
        self.check_served(key_ns)
        signer = await self.cache_first(self.fleet.device, key_ns, key_name, False, True)
        if signer is None:
            # Not in the watch cache: a Device another replica enrolled a moment ago, or
            # none. Asking the API server is charged to the client's address like a failed
            # enrollment when there is none, so unknown names cannot flood it with reads.
            address = self.client_address(request)
            self.check_enroll_budget(address)
            signer = await run_in_threadpool(self.fleet.device, key_ns, key_name, True)
            if signer is None:
                self.count_enroll_failure(address)
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
        self.fleet.remember(patched)
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

    async def approved_device(self, device: dict[str, Any]) -> dict[str, Any]:
        """The Device if it is approved, else 403 ``DevicePending``. A refusal is checked
        against the API server first (the approval may be newer than this replica's watch
        has delivered); an approved Device costs no read. Returns the Device as checked."""
        if enrollment_state(device.get("spec") or {}) == "Approved":
            return device
        meta = device.get("metadata") or {}
        fresh = await run_in_threadpool(
            self.fleet.device, str(meta.get("namespace")), str(meta.get("name")), True
        )
        if fresh is None or (fresh.get("metadata") or {}).get("uid") != meta.get("uid"):
            raise ApiError(404, "UnknownDevice", "the device was deleted or enrolled again")
        refuse_if_ended(fresh)
        if enrollment_state(fresh.get("spec") or {}) != "Approved":
            raise ApiError(403, "DevicePending", "the device is not approved yet")
        return fresh

    def last_seen_due(self, status: dict[str, Any], now: float) -> bool:
        """Whether ``status.lastSeen`` is missing or at least ``gateway_last_seen_seconds``
        older than ``now`` (Unix seconds): lastSeen is written that coarsely, and judged from
        the stored value, so replicas do not each refresh it."""
        text = status.get("lastSeen")
        if not isinstance(text, str):
            return True
        try:
            seen = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return True
        return now - seen >= self.config.gateway_last_seen_seconds

    def remembers_sequences(self) -> bool:
        """Whether this replica keeps report sequences in memory (gateway_replay_scope
        ``replica``) rather than in every Device write."""
        return self.config.gateway_replay_scope == "replica"

    def _needs_write(
        self,
        device: dict[str, Any],
        sequence: int,
        changes: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> bool:
        """Accepts ``sequence`` in memory (409 ``StaleSequence`` unless it exceeds both the
        remembered and the stored one); whether the report must still be written because
        it changes the status or lastSeen is due."""
        status = device.get("status") or {}
        uid = str((device.get("metadata") or {}).get("uid"))
        with self._sequences_lock:
            last = max(self.sequences.get(uid, -1), int(status.get("sequence", -1)))
            if sequence <= last:
                raise ApiError(409, "StaleSequence", f"sequence must exceed {last}")
            self.sequences[uid] = sequence
        if changes is not None and changes(status):
            return True
        return self.last_seen_due(status, self.wall_clock())

    def take_sequence(
        self,
        device: dict[str, Any],
        sequence: int,
        changes: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Accepts a report's ``sequence`` by storing it as the Device's ``status.sequence``
        in a compare-and-swap on the Device's resourceVersion, together with
        ``changes(status)`` (the status fields the report changes, decided on the status it
        is written over) and lastSeen when due (:meth:`last_seen_due`). The stored value is
        the one every replica checks against, so a report replayed to any replica (same
        sequence) is refused: 409 ``StaleSequence`` unless ``sequence`` exceeds it. A lost
        race reads the Device again and decides again, up to 5 times (then 503 ``Busy``
        with Retry-After); a Device deleted or enrolled again meanwhile (another UID) is 404
        ``UnknownDevice``. With gateway_replay_scope ``replica`` (:meth:`remembers_sequences`)
        the sequence is checked in memory and the write is skipped when the report changes
        nothing and lastSeen is not due. Blocking I/O: call it from a worker thread.
        Returns the Device as stored (or as cached, when nothing was written)."""
        meta = device.get("metadata") or {}
        namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), meta.get("uid")
        if self.remembers_sequences() and not self._needs_write(device, sequence, changes):
            return device
        current: dict[str, Any] | None = device
        for _ in range(5):
            if current is None or (current.get("metadata") or {}).get("uid") != uid:
                raise ApiError(404, "UnknownDevice", "the device was deleted or enrolled again")
            status = current.get("status") or {}
            last = int(status.get("sequence", -1))
            if sequence <= last:
                raise ApiError(409, "StaleSequence", f"sequence must exceed {last}")
            now = self.wall_clock()
            patch = {**(changes(status) if changes else {}), "sequence": sequence}
            if self.last_seen_due(status, now):
                patch["lastSeen"] = format_time(datetime.fromtimestamp(now, UTC))
            try:
                written = fleet.swap_device_status(
                    namespace, name, patch, str(current["metadata"]["resourceVersion"])
                )
            except LookupError:
                written, current = None, None
                continue
            if written is not None:
                self.fleet.remember(written)
                return written
            current = self.fleet.device(namespace, name, fresh=True)
        if current is None or (current.get("metadata") or {}).get("uid") != uid:
            raise ApiError(404, "UnknownDevice", "the device was deleted or enrolled again")
        raise ApiError(
            503,
            "Busy",
            "the device's status kept changing under the report; try again",
            {"Retry-After": "1"},
        )
