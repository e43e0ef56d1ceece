"""``POST /v1/enroll``: gated enrollment with a bootstrap token, signed with the key it
enrolls (proof of possession). A pre-created Device with ``spec.identity`` accepts only
that key; a new Device starts Pending unless the token auto-approves. A token use is
reserved (compare-and-swap on its Secret) before the Device is written and given back if
that fails, so concurrent enrollments never over-use a token and a failed one costs none;
enrolling again with the key a Device is enrolled with already changes nothing and uses
no token (an agent retrying, or the request replayed to another replica). Refused enrollments
(any 4xx) are charged to the client's address; past ``gateway_enrollments_per_minute`` of
them the address gets 429 ``RateLimited`` with ``Retry-After``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from edgeops.api.common import format_time
from edgeops.api.constants import GROUP, VERSION
from edgeops.api.device import DeviceSpec
from edgeops.api.wire import EnrollAnswer, EnrollRequest
from edgeops.gateway.context import (
    ApiError,
    Gateway,
    device_keys,
    enrollment_state,
    json_body,
    parse_body,
    public_key_of,
    raw_public_key,
    refuse_if_ended,
)
from edgeops.gateway.tokens import TokenError, TokenGrant, check_token, secret_name
from edgeops.k8s import fleet

_RESERVED_LABEL_PREFIX = f"{GROUP}/"
log = logging.getLogger(__name__)


def router(gw: Gateway) -> APIRouter:
    """The enrollment endpoint."""
    api = APIRouter()

    @api.post(
        "/v1/enroll",
        status_code=201,
        openapi_extra=json_body(EnrollRequest),
        responses={201: {"model": EnrollAnswer}},
    )
    async def enroll(request: Request) -> Response:
        # Unauthenticated until the token checks out: every refusal is charged to the
        # client's address, and an address out of budget is refused before any work.
        address = gw.client_address(request)
        gw.check_enroll_budget(address)
        try:
            return await _checked(request)
        except ApiError as exc:
            if 400 <= exc.status < 500:
                gw.count_enroll_failure(address)
            raise

    async def _checked(request: Request) -> Response:
        body = await gw.read_body(request)
        req = parse_body(EnrollRequest, body)
        gw.check_served(req.namespace)
        if any(k.startswith(_RESERVED_LABEL_PREFIX) for k in req.labels):
            raise ApiError(
                422, "InvalidRequest", f"labels under {_RESERVED_LABEL_PREFIX} come from the token"
            )
        try:
            key = public_key_of(req.public_key)
        except (ValueError, binascii.Error):
            raise ApiError(422, "InvalidRequest", "publicKey is not an Ed25519 key") from None
        parsed = gw.parse_signature(request)
        if parsed.params.get("keyid") != f"{req.namespace}/{req.name}":
            raise ApiError(401, "BadSignatureInput", "keyid must name the enrolling device")
        gw.authenticate(request, body, [key], parsed)
        return await run_in_threadpool(_enroll, gw, req, key)

    return api


def _enroll(gw: Gateway, req: EnrollRequest, key: Ed25519PublicKey) -> Response:
    try:
        secret = secret_name(req.token)
    except TokenError as exc:
        raise ApiError(401, exc.reason, str(exc)) from None
    now = datetime.fromtimestamp(gw.wall_clock(), UTC)
    existing = fleet.read_device(req.namespace, req.name)
    raw = raw_public_key(key)
    enrolled = False
    if existing is not None:
        spec = existing.get("spec") or {}
        identity = spec.get("identity")
        if identity and not any(raw_public_key(k) == raw for k in device_keys(existing)):
            raise ApiError(403, "KeyMismatch", "the device exists with another public key")
        refuse_if_ended(existing)
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        # Enrolled with this key already: its status says so, or this token created it
        # (and the status write that followed failed).
        enrolled = bool(identity) and (
            bool((existing.get("status") or {}).get("enrolledAt"))
            or annotations.get(f"{GROUP}/bootstrap-token") == secret
        )
    if existing is not None and enrolled:
        # An agent that lost its answer, or the request replayed to another replica:
        # no token use, nothing changed but a missing enrollment status.
        device = existing
        if (existing.get("status") or {}).get("enrolledAt"):
            gw.fleet.remember(existing)
            return _answer(req, enrollment_state(existing.get("spec") or {}))
    else:
        grant = _use_token(req, secret, now)
        try:
            device = _create_or_adopt(gw, req, existing, grant, raw, secret)
        except BaseException as exc:
            # The use counts only for a Device that was enrolled.
            _give_back_token(req.namespace, secret)
            if isinstance(exc, (fleet.DeviceRefusedError, ValidationError)):
                # E.g. a label value Kubernetes does not accept: the request's fault.
                raise ApiError(422, "InvalidRequest", f"the device is refused: {exc}") from None
            raise
    state = enrollment_state(device.get("spec") or {})
    status = {
        "enrollment": state,
        "enrolledAt": format_time(now),
        "capabilities": req.capabilities.model_dump(by_alias=True, exclude_none=True),
        "agentVersion": req.capabilities.agent_version,
    }
    device = fleet.patch_device_status(req.namespace, req.name, status)
    # Read-your-writes: the device's next request (to this replica) finds it at once.
    gw.fleet.remember(device)
    return _answer(req, state)


def _answer(req: EnrollRequest, state: str) -> Response:
    return JSONResponse(
        {"namespace": req.namespace, "name": req.name, "enrollment": state}, status_code=201
    )


def _create_or_adopt(
    gw: Gateway,
    req: EnrollRequest,
    existing: dict[str, Any] | None,
    grant: TokenGrant,
    raw: bytes,
    secret: str,
) -> dict[str, Any]:
    """Creates the Device, or completes a pre-created one (labels, identity, approval)."""
    identity = {
        "publicKey": base64.b64encode(raw).decode(),
        "fingerprint": hashlib.sha256(raw).hexdigest(),
    }
    labels = {**req.labels, **grant.labels}
    if existing is None:
        spec_doc = DeviceSpec(
            target_type=req.target_type,
            hardware=req.hardware,
            approval="Approved" if grant.auto_approve else "Pending",
        ).model_dump(by_alias=True, exclude_none=True)
        spec_doc["identity"] = identity
        created = fleet.create_device(
            req.namespace,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Device",
                "metadata": {
                    "name": req.name,
                    "labels": labels,
                    "annotations": {f"{GROUP}/bootstrap-token": secret},
                },
                "spec": spec_doc,
            },
        )
        if created is None:
            raise ApiError(409, "Conflict", "the device was created meanwhile; enroll again")
        return created
    spec = existing.get("spec") or {}
    if spec.get("approval") == "Approved" and not grant.auto_approve:
        # Approved before any key was bound: whoever holds a token would inherit the
        # approval. The admin either binds the key (spec.identity) or uses a token that
        # is itself trusted to approve.
        raise ApiError(
            403,
            "IdentityRequired",
            f"Device {req.namespace}/{req.name} is approved but has no spec.identity: set "
            "its public key there, or enroll with a token created with --auto-approve",
        )
    patch: dict[str, Any] = {"metadata": {"labels": labels}}
    if not spec.get("identity"):
        patch["spec"] = {"identity": identity}
    if grant.auto_approve and spec.get("approval", "Pending") == "Pending":
        patch.setdefault("spec", {})["approval"] = "Approved"
    return fleet.patch_device(req.namespace, req.name, patch)


#: Compare-and-swap attempts on a token's use count before answering 503 ``TokenBusy``,
#: and the first wait between them in seconds (doubling, with jitter, so concurrent
#: enrollments on one token spread out instead of colliding again).
TOKEN_ATTEMPTS = 12
TOKEN_BACKOFF_SECONDS = 0.01


def _use_token(req: EnrollRequest, secret: str, now: datetime) -> TokenGrant:
    """Reserves one use of the token (compare-and-swap on the Secret's resourceVersion,
    so concurrent enrollments never use it more than ``maxUses`` times). A lost race is
    retried; past :data:`TOKEN_ATTEMPTS` 503 ``TokenBusy`` with Retry-After. The caller
    gives the use back if the enrollment then fails (:func:`_give_back_token`)."""
    wait = TOKEN_BACKOFF_SECONDS
    for _ in range(TOKEN_ATTEMPTS):
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
        time.sleep(random.uniform(0, wait))
        wait *= 2
    raise ApiError(
        503,
        "TokenBusy",
        f"the bootstrap token's use count changed under {TOKEN_ATTEMPTS} attempts; try again",
        {"Retry-After": "1"},
    )


def _give_back_token(namespace: str, secret: str) -> None:
    """Returns a use reserved by :func:`_use_token` (compare-and-swap, retried). Best
    effort: a failure here is logged, and the enrollment's own error is what the device
    gets."""
    for _ in range(TOKEN_ATTEMPTS):
        try:
            found = fleet.read_token_secret(namespace, secret)
            if found is None:
                return
            uses = max(0, int(found.data.get("uses", "0")) - 1)
            data = {**found.data, "uses": str(uses)}
            if fleet.update_token_secret(namespace, secret, data, found.resource_version):
                return
        except Exception:
            log.exception("could not give back a use of token %s/%s", namespace, secret)
            return
        time.sleep(random.uniform(0, TOKEN_BACKOFF_SECONDS))
    log.warning("could not give back a use of token %s/%s: busy", namespace, secret)
