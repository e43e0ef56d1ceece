"""Keeps a KServe InferenceService on the EdgeModel's current version (when serving is
enabled): the model's own S3 Secret and service account KServe's storage initializer
needs, the EdgeOps ServingRuntime, and the InferenceService itself, validated by the API
server against KServe's CRD.

The S3 Secret holds scoped, short-lived credentials (STS ``AssumeRole``) that may read the
served version's prefix only, never the operator's keys. KServe's storage initializer reads
them when a predictor pod starts (a new replica, a restart), so they must stay valid while
the model is served: they are re-issued after half their lifetime
(``EDGEOPS_S3_POD_CREDENTIALS_SECONDS``) and whenever the served version changes, and the
model's reconcile asks to be woken for it. A Secret, service account or InferenceService
of the model's names that the model does not own, or a ServingRuntime ``edgeops-predictor``
without the ``app.kubernetes.io/managed-by=edgeops`` label, is left alone and reported
(``Serving=False``, reason ``NameTaken``, and a Warning Event), retried with backoff.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from edgeops import __version__
from edgeops.api.constants import ConditionType, ImageRepositories, Reason
from edgeops.api.edgemodel import EdgeModelSpec, EdgeModelStatus
from edgeops.controllers import events, pod_credentials, reconciler
from edgeops.controllers.signing_key import trusted_public_keys
from edgeops.controllers.storage import artifact_store
from edgeops.k8s import apply, custom
from edgeops.policy import credentials, promotion, registry
from edgeops.policy import serving as policy
from edgeops.settings import settings
from edgeops.store import ArtifactStore

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
) -> float | None:
    """Sets ``conditions[Serving]``; applies or deletes the model's InferenceService.
    ``live`` is the InferenceService of the model's name as the watch cache has it. Only an
    InferenceService this model owns is ever deleted or changed. Returns the seconds until
    the predictor's credentials are due for renewal, or until a name taken by an object
    EdgeOps does not own is looked at again (backoff); None when nothing is due."""
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
        return None
    version = registry.find(status, status.current_version)
    if version is None:
        conditions[ConditionType.SERVING] = (
            "False",
            Reason.NO_VERSION,
            "no current version to serve yet",
        )
        return None
    if not any(a.format == "onnx" for a in version.artifacts):
        conditions[ConditionType.SERVING] = (
            "False",
            Reason.NO_ONNX_ARTIFACT,
            f"v{version.number} has no onnx artifact; add onnx to spec.training.exports",
        )
        return None
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
        return _name_taken(
            body,
            conditions,
            memo,
            f"an InferenceService named {name} exists and is not owned by this EdgeModel; "
            "EdgeOps leaves it alone: delete or rename it to serve this model",
        )
    try:
        renew_in = _credentials(body, namespace, store, prefix, memo)
    except custom.NameTakenError as error:
        return _name_taken(
            body, conditions, memo, f"cannot give the predictor its S3 credentials: {error}"
        )
    if memo.get("isvc_manifest") == manifest and live is not None and _ready(live):
        conditions[ConditionType.SERVING] = _serving_condition(live, version.number, uri)
        return renew_in  # applied by this process and serving: nothing to write
    # Applied when the wanted InferenceService changes, when it is missing, and while it
    # is not Ready (a deleted ServingRuntime is then put back).
    try:
        if spec.serving.runtime is None:
            # The runtime verifies bundles with keys the InferenceService's env carries.
            # Shared by the namespace's models: recognised by its managed-by label.
            apply.apply_owned(
                namespace, policy.serving_runtime(f"{ImageRepositories.PREDICTOR}:{__version__}")
            )
        isvc, action = apply.apply_owned(namespace, manifest)
    except custom.NameTakenError as error:
        return _name_taken(body, conditions, memo, f"cannot serve this model: {error}")
    memo["isvc_manifest"] = manifest
    if action != "unchanged":
        events.normal(
            body,
            Reason.INFERENCE_SERVICE_APPLIED,
            f"InferenceService {name} {action} for v{version.number} ({uri})",
        )
    conditions[ConditionType.SERVING] = _serving_condition(isvc, version.number, uri)
    return renew_in


def _name_taken(body: kopf.Body, conditions: Conditions, memo: kopf.Memo, message: str) -> float:
    """Reports a name held by an object EdgeOps does not own (``Serving=False``,
    ``NameTaken``, a Warning Event) and returns the backoff before looking again."""
    conditions[ConditionType.SERVING] = ("False", Reason.NAME_TAKEN, message)
    events.warning(body, Reason.NAME_TAKEN, message)
    return reconciler.retry_later(memo)


def _credentials(
    body: kopf.Body, namespace: str, store: ArtifactStore, prefix: str, memo: kopf.Memo
) -> float:
    """Issues read-only credentials for ``prefix`` into the model's S3 Secret (and applies
    its service account) when this process has not yet, when the served prefix changed or
    when half their lifetime is over. Returns the seconds until the next renewal.

    Raises NameTakenError (the Secret or service account name is held by an object the
    model does not own: left alone), StaleOwnerError, StoreError (STS refused or down)."""
    now = dt.datetime.now(dt.UTC)
    issued = memo.get("s3_credentials")  # (prefix, renew at)
    if issued is not None and issued[0] == prefix and now < issued[1]:
        return float((issued[1] - now).total_seconds())
    name = body["metadata"]["name"]
    owner = promotion.owner_reference(dict(body))
    account = policy.service_account(name, owner)
    conf = settings()
    seconds = conf.s3_pod_credentials_seconds
    endpoint = conf.s3_job_endpoint or store.config.endpoint
    s3 = policy.S3Settings(endpoint=endpoint, region=store.config.region or "us-east-1")
    pod_credentials.issue(
        namespace,
        store,
        secret_name=policy.s3_secret_name(name),
        owner=owner,
        session_policy=lambda: credentials.serving_policy(store.bucket, prefix),
        seconds=seconds,
        session_name=f"edgeops-model-{body['metadata']['uid']}",
        keys=(policy.ACCESS_KEY, policy.SECRET_KEY, policy.SESSION_TOKEN),
        secret=lambda data, expires: policy.credentials_secret(name, owner, data, expires, s3),
        also_owned=[account],
    )
    apply.server_side_apply(namespace, account)
    renew = credentials.renew_after(seconds)
    memo["s3_credentials"] = (prefix, now + dt.timedelta(seconds=renew))
    return renew


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
