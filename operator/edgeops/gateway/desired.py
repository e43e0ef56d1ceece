"""``GET /v1/devices/{namespace}/{name}/desired``: what the device should run.

The version is :func:`edgeops.policy.desired.desired_version` of the device's labels, the
EdgeModels' current versions and the namespace's FleetRollouts (the same function the
FleetRollout controller counts with). The bundle manifest is returned as the stored bytes,
so the agent verifies exactly what the operator signed. An ETag makes an unchanged poll a
304 with no body.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from edgeops.api.edgemodel import SamplingPolicy, Target
from edgeops.api.wire import (
    DesiredRetries,
    DesiredSampling,
    DesiredState,
    DesiredTarget,
    ProfileFeature,
)
from edgeops.canonical_json import jcs
from edgeops.gateway.context import ApiError, Gateway
from edgeops.gateway.profiles import reference_bins, version_entry, wire_profile
from edgeops.policy.desired import Desired, choose_target, desired_version
from edgeops.policy.desired import rollout_view as rollout_view
from edgeops.policy.serving import model_prefix
from edgeops.store import StoreError

#: For Devices created before spec.reportIntervalSeconds existed.
DEFAULT_REPORT_INTERVAL_SECONDS = 60


def assignment(
    gw: Gateway, namespace: str, name: str, device: dict[str, Any]
) -> tuple[Desired, dict[str, Any], Target]:
    """The device's model version, its EdgeModel and its target; 404 with the reason
    (``NothingAssigned``, ``NoTarget``) when there is none."""
    labels = (device.get("metadata") or {}).get("labels") or {}
    models = {m["metadata"]["name"]: m for m in gw.fleet.models(namespace)}
    current = {n: (m.get("status") or {}).get("currentVersion") for n, m in models.items()}
    views = [v for v in map(rollout_view, gw.fleet.rollouts(namespace)) if v is not None]
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
    return choice, model, target


def bundle_key(namespace: str, model: dict[str, Any], version: int, target: Target) -> str:
    """S3 key of the signed bundle manifest of one version and target."""
    prefix = model_prefix(namespace, model["metadata"]["name"], model["metadata"]["uid"])
    return f"{prefix}/versions/{version}/bundles/{target.name}.json"


def desired_profile(
    gw: Gateway, model: dict[str, Any], version: int
) -> dict[str, ProfileFeature] | None:
    """The version's reference-profile bins for :attr:`DesiredState.profile`, or None. A
    profile S3 cannot give now is left out rather than failing the poll: installing the
    version matters more, and the ETag changes once the profile is there."""
    entry = version_entry(model, version)
    if entry is None:
        return None
    try:
        return wire_profile(reference_bins(gw, entry))
    except ApiError:
        return None


def desired_state(gw: Gateway, namespace: str, name: str, device: dict[str, Any]) -> DesiredState:
    """The device's :class:`DesiredState`; 404 ``NoBundle`` before the version is signed.
    Reads only through ``gw.fleet`` and has no side effects (:meth:`Gateway.cache_first`)."""
    choice, model, target = assignment(gw, namespace, name, device)
    key = bundle_key(namespace, model, choice.version, target)
    try:
        # Kept gateway_cache_seconds: a fleet polling every few seconds would otherwise
        # cost an S3 GET per poll, and a bundle signed again (another key) still reaches
        # devices within that time.
        manifest: bytes = gw.fleet.cached(
            ("bundle", namespace, key), lambda: gw.store().get_bytes(key)
        )
    except StoreError:
        raise ApiError(
            404, "NoBundle", f"no signed bundle for {choice.model} v{choice.version}"
        ) from None
    return DesiredState(
        model=choice.model,
        model_uid=model["metadata"]["uid"],
        version=choice.version,
        rollout=choice.rollout,
        rollout_uid=choice.rollout_uid,
        cohort=choice.cohort,
        target=DesiredTarget(name=target.name, type=target.target_type, format=target.format),
        # The stored bytes, exactly: verify_manifest checks them byte for byte.
        bundle_manifest=manifest.decode(),
        report_interval_seconds=int(
            (device.get("spec") or {}).get("reportIntervalSeconds")
            or DEFAULT_REPORT_INTERVAL_SECONDS
        ),
        profile=desired_profile(gw, model, choice.version),
        sampling=desired_sampling(model),
        retries=None
        if choice.retries is None
        else DesiredRetries(limit=choice.retries[0], backoff_seconds=choice.retries[1]),
    )


def sampling_policy(model: dict[str, Any]) -> SamplingPolicy | None:
    """The EdgeModel's ``spec.sampling``, or None when it has none (or an unreadable one,
    which the API server's schema would have refused)."""
    raw = (model.get("spec") or {}).get("sampling")
    if not raw:
        return None
    try:
        return SamplingPolicy.model_validate(raw)
    except ValidationError:
        return None


def desired_sampling(model: dict[str, Any]) -> DesiredSampling | None:
    """What the agent applies of the model's sampling policy (the Dataset stays the
    gateway's business: a device never names where its samples go)."""
    policy = sampling_policy(model)
    if policy is None:
        return None
    return DesiredSampling(
        confidence_below=policy.confidence_below,
        misclassified=policy.misclassified,
        random_share=policy.random_share,
        max_rows_per_hour=policy.max_rows_per_hour,
    )


def router(gw: Gateway) -> APIRouter:
    """The desired-state endpoint."""
    api = APIRouter()

    @api.get(
        "/v1/devices/{namespace}/{name}/desired",
        response_model=None,
        responses={
            200: {"model": DesiredState, "description": "ETag: the document's hash."},
            304: {"description": "If-None-Match matched: the desired state is unchanged."},
        },
    )
    async def desired(request: Request, namespace: str, name: str) -> Response:
        body = await gw.read_body(request)
        device = await gw.signed_device(request, namespace, name, body)
        device = await gw.approved_device(device)
        document = await gw.cache_first(desired_state, gw, namespace, name, device)
        data = jcs(document.model_dump(by_alias=True, exclude_none=True, mode="json"))
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(data, media_type="application/json", headers={"ETag": etag})

    return api
