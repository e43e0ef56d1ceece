"""Keeps a KServe InferenceService on the EdgeModel's current version (when serving is
enabled): the S3 Secret and service account KServe's storage initializer needs, the EdgeOps
ServingRuntime, and the InferenceService itself, validated by the API server against
KServe's CRD."""

from __future__ import annotations

import time
from typing import Any

import kopf

from edgeops import __version__
from edgeops.api.constants import ConditionType, ImageRepositories, Reason
from edgeops.api.edgemodel import EdgeModelSpec, EdgeModelStatus
from edgeops.controllers import events
from edgeops.controllers.signing_key import publish_public_key
from edgeops.controllers.storage import artifact_store
from edgeops.k8s import custom
from edgeops.policy import promotion, registry
from edgeops.policy import serving as policy
from edgeops.settings import settings

Conditions = dict[str, tuple[str, str, str]]
#: Seconds between checks of the Secret, ServiceAccount and ServingRuntime.
REFRESH = 60.0


def reconcile_serving(
    body: kopf.Body,
    namespace: str,
    spec: EdgeModelSpec,
    status: EdgeModelStatus,
    conditions: Conditions,
    memo: kopf.Memo,
) -> None:
    name = body["metadata"]["name"]
    if spec.serving is None or not spec.serving.enabled:
        # Once per operator process too: memo is per process, and serving may have been
        # switched off while the operator was down.
        if memo.get("isvc") or not memo.get("isvc_swept"):
            custom.delete(
                namespace, policy.KSERVE_GROUP, policy.ISVC_VERSION, policy.INFERENCE_SERVICES, name
            )
            memo["isvc"] = None
            memo["isvc_swept"] = True
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
        dict(body), promotion.owner_reference(dict(body)), spec.serving, uri, version.number
    )
    # The prerequisites rarely change: re-check them when the InferenceService changes
    # and once a minute (someone may have deleted them), not on every tick.
    now = time.monotonic()
    if memo.get("isvc_manifest") != manifest or now - memo.get("prereq_at", 0.0) > REFRESH:
        _prerequisites(namespace, spec.serving.runtime is None)
        memo["prereq_at"] = now
        memo["isvc_manifest"] = manifest
    isvc, action = custom.apply(
        namespace,
        policy.INFERENCE_SERVICES,
        manifest,
        policy.KSERVE_GROUP,
        policy.ISVC_VERSION,
    )
    memo["isvc"] = name
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
    custom.ensure_secret(
        namespace,
        policy.S3_SECRET,
        {"AWS_ACCESS_KEY_ID": config.access_key, "AWS_SECRET_ACCESS_KEY": config.secret_key},
        policy.s3_secret_annotations(s3),
    )
    custom.ensure_service_account(namespace, policy.SERVICE_ACCOUNT, [policy.S3_SECRET])
    if own_runtime:
        publish_public_key(namespace)  # the runtime verifies bundles with it
        custom.apply(
            namespace,
            policy.SERVING_RUNTIMES,
            policy.serving_runtime(f"{ImageRepositories.PREDICTOR}:{__version__}"),
            policy.KSERVE_GROUP,
            policy.RUNTIME_VERSION,
        )


def _serving_condition(isvc: dict[str, Any], number: int, uri: str) -> tuple[str, str, str]:
    ready = next(
        (c for c in (isvc.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
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
