"""Keeps a KServe InferenceService on the EdgeModel's current version (when serving is
enabled): the S3 Secret and service account KServe's storage initializer needs, the EdgeOps
ServingRuntime, and the InferenceService itself, validated by the API server against
KServe's CRD."""

from __future__ import annotations

from typing import Any

import kopf

from edgeops import __version__
from edgeops.api.constants import ConditionType, ImageRepositories, Reason
from edgeops.api.edgemodel import EdgeModelSpec, EdgeModelStatus
from edgeops.controllers import events
from edgeops.controllers.signing_key import trusted_public_keys
from edgeops.controllers.storage import artifact_store
from edgeops.k8s import apply, custom
from edgeops.policy import promotion, registry
from edgeops.policy import serving as policy
from edgeops.settings import settings

Conditions = dict[str, tuple[str, str, str]]


def _owned(obj: dict[str, Any] | None, owner: kopf.Body) -> bool:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in refs)


def reconcile_serving(
    body: kopf.Body,
    namespace: str,
    spec: EdgeModelSpec,
    status: EdgeModelStatus,
    conditions: Conditions,
    memo: kopf.Memo,
    live: dict[str, Any] | None = None,
) -> None:
    """Sets ``conditions[Serving]``; applies or deletes the model's InferenceService.
    ``live`` is the InferenceService of the model's name as the watch cache has it. Only an
    InferenceService this model owns is ever deleted or changed."""
    name = body["metadata"]["name"]
    if spec.serving is None or not spec.serving.enabled:
        if live is not None and _owned(live, body):
            custom.delete(
                namespace, policy.KSERVE_GROUP, policy.ISVC_VERSION, policy.INFERENCE_SERVICES, name
            )
        memo["isvc_manifest"] = None
        conditions[ConditionType.SERVING] = (
            "False",
            Reason.SERVING_DISABLED,
            "spec.serving.enabled is false",
        )
        return
    version = registry.find(status, status.current_version)
    if version is None:
        conditions[ConditionType.SERVING] = (
            "False",
            Reason.NO_VERSION,
            "no current version to serve yet",
        )
        return
    if not any(a.format == "onnx" for a in version.artifacts):
        conditions[ConditionType.SERVING] = (
            "False",
            Reason.NO_ONNX_ARTIFACT,
            f"v{version.number} has no onnx artifact; add onnx to spec.training.exports",
        )
        return
    store = artifact_store()
    prefix = policy.serving_prefix(namespace, name, str(body["metadata"]["uid"]), version.number)
    uri = f"s3://{store.bucket}/{prefix}"
    manifest = policy.inference_service(
        dict(body),
        promotion.owner_reference(dict(body)),
        spec.serving,
        uri,
        version.number,
        trusted_public_keys(),
    )
    if live is not None and not _owned(live, body):
        conditions[ConditionType.SERVING] = (
            "False",
            Reason.NAME_TAKEN,
            f"an InferenceService named {name} exists and is not owned by this EdgeModel; "
            "EdgeOps leaves it alone: delete or rename it to serve this model",
        )
        return
    if memo.get("isvc_manifest") == manifest and live is not None and _ready(live):
        conditions[ConditionType.SERVING] = _serving_condition(live, version.number, uri)
        return  # applied by this process and serving: nothing to write
    # Applied when the wanted InferenceService changes, when it is missing, and while it
    # is not Ready (a deleted Secret or ServiceAccount is then put back).
    _prerequisites(namespace, spec.serving.runtime is None)
    isvc, action = apply.apply_owned(namespace, manifest)
    memo["isvc_manifest"] = manifest
    if action != "unchanged":
        events.normal(
            body,
            Reason.INFERENCE_SERVICE_APPLIED,
            f"InferenceService {name} {action} for v{version.number} ({uri})",
        )
    conditions[ConditionType.SERVING] = _serving_condition(isvc, version.number, uri)


def _prerequisites(namespace: str, own_runtime: bool) -> None:
    config = artifact_store().config
    endpoint = settings().s3_job_endpoint or config.endpoint
    s3 = policy.S3Settings(endpoint=endpoint, region=config.region or "us-east-1")
    apply.server_side_apply(
        namespace,
        custom.secret_manifest(
            policy.S3_SECRET,
            {"AWS_ACCESS_KEY_ID": config.access_key, "AWS_SECRET_ACCESS_KEY": config.secret_key},
            policy.s3_secret_annotations(s3),
        ),
    )
    apply.server_side_apply(
        namespace, custom.service_account_manifest(policy.SERVICE_ACCOUNT, [policy.S3_SECRET])
    )
    if own_runtime:
        apply.server_side_apply(
            namespace, policy.serving_runtime(f"{ImageRepositories.PREDICTOR}:{__version__}")
        )


def _ready_condition(isvc: dict[str, Any]) -> dict[str, Any] | None:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def _ready(isvc: dict[str, Any]) -> bool:
    return (_ready_condition(isvc) or {}).get("status") == "True"


def _serving_condition(isvc: dict[str, Any], number: int, uri: str) -> tuple[str, str, str]:
    ready = _ready_condition(isvc)
    name = isvc["metadata"]["name"]
    if ready is not None and ready.get("status") == "True":
        url = (isvc.get("status") or {}).get("url", "")
        return ("True", Reason.INFERENCE_SERVICE_READY, f"{name} serves v{number} at {url}")
    detail = (ready or {}).get("message") or "KServe has not reported it Ready yet"
    return (
        "Unknown",
        Reason.INFERENCE_SERVICE_APPLIED,
        f"InferenceService {name} accepted for v{number} (storageUri {uri}); {detail}",
    )
