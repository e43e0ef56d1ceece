"""KServe objects for cloud-side serving of the current version's ONNX artifact.

The InferenceService uses the KServe storage initializer: ``storageUri`` points at the
version's serving prefix in S3 (model.onnx next to its signed bundle manifest), and the
model's own service account (``<model>-kserve``) carries the model's own S3 Secret
(``<model>-kserve-s3``, with the annotations KServe reads for MinIO). The Secret holds
scoped, short-lived credentials that may read that prefix only
(`edgeops.policy.credentials.serving_policy`), never the operator's keys; both objects
are owned by the EdgeModel.

What the predictor verifies against comes from the operator, as literal environment values
of the InferenceService's model container (:func:`predictor_env`): the public keys the
operator published in its own namespace, and the namespace, model, model UID and version
the bundle must be signed for. Never a reference to a ConfigMap in the tenant's namespace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from edgeops.api.constants import Labels
from edgeops.api.edgemodel import Serving
from edgeops.policy import credentials as credentials_policy

KSERVE_GROUP: Final = "serving.kserve.io"
ISVC_VERSION: Final = "v1beta1"
RUNTIME_VERSION: Final = "v1alpha1"
INFERENCE_SERVICES: Final = "inferenceservices"
SERVING_RUNTIMES: Final = "servingruntimes"
DEFAULT_RUNTIME: Final = "edgeops-predictor"
#: Keys of the predictor's S3 Secret, the environment variables KServe's storage
#: initializer (boto3) reads.
ACCESS_KEY: Final = "AWS_ACCESS_KEY_ID"
SECRET_KEY: Final = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN: Final = "AWS_SESSION_TOKEN"
#: Annotation on the S3 Secret: when its credentials expire (RFC 3339, UTC).
SIGNING_CONFIG_MAP: Final = "edgeops-signing"
PUBLIC_KEYS_KEY: Final = "publicKeys.json"


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # http(s)://host:port
    region: str


def service_account_name(model: str) -> str:
    """The model's own predictor service account (one per EdgeModel, owned by it)."""
    return f"{model}-kserve"


def s3_secret_name(model: str) -> str:
    """The model's own predictor S3 Secret (one per EdgeModel, owned by it)."""
    return f"{model}-kserve-s3"


def model_prefix(namespace: str, model: str, uid: str) -> str:
    """Where one EdgeModel's registry and bundles live. The UID is part of it: a model
    deleted and created again under the same name starts a new line of versions, and its
    v1 must never be taken for the old v1 that devices may still hold."""
    return f"models/{namespace}/{model}/{uid}"


def serving_prefix(namespace: str, model: str, uid: str, version: int) -> str:
    return f"{model_prefix(namespace, model, uid)}/versions/{version}/serving"


def s3_secret_annotations(s3: S3Settings) -> dict[str, str]:
    parts = urlsplit(s3.endpoint)
    https = parts.scheme == "https"
    return {
        "serving.kserve.io/s3-endpoint": parts.netloc,
        "serving.kserve.io/s3-usehttps": "1" if https else "0",
        "serving.kserve.io/s3-verifyssl": "1" if https else "0",
        "serving.kserve.io/s3-region": s3.region,
        "serving.kserve.io/s3-useanoncredential": "false",
    }


def credentials_secret(
    model: str,
    owner: dict[str, Any],
    credentials: dict[str, str],
    expires: str,
    s3: S3Settings,
) -> dict[str, Any]:
    """The predictor's S3 Secret: ``credentials`` (keys ACCESS_KEY, SECRET_KEY,
    SESSION_TOKEN) valid until ``expires`` (RFC 3339), KServe's S3 annotations, owned by
    the EdgeModel (``owner`` is its controller reference)."""
    return credentials_policy.secret(
        s3_secret_name(model),
        {Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE, Labels.MODEL: model},
        owner,
        {key: credentials[key] for key in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)},
        expires,
        s3_secret_annotations(s3),
    )


def service_account(model: str, owner: dict[str, Any]) -> dict[str, Any]:
    """The model's predictor service account, listing its S3 Secret (KServe's storage
    initializer reads S3 settings from the Secrets of its pod's service account)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": service_account_name(model),
            "labels": {Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE, Labels.MODEL: model},
            "ownerReferences": [owner],
        },
        "secrets": [{"name": s3_secret_name(model)}],
    }


def predictor_env(
    namespace: str, model: str, uid: str, version: int, public_keys: Mapping[str, str]
) -> list[dict[str, str]]:
    """The predictor's ``EDGEOPS_*`` variables (:class:`edgeops.settings.PredictorSettings`):
    the trusted public keys and the binding the served bundle must be signed for."""
    return [
        {
            "name": "EDGEOPS_SIGNING_PUBLIC_KEYS",
            "value": json.dumps(dict(sorted(public_keys.items()))),
        },
        {"name": "EDGEOPS_MODEL_NAMESPACE", "value": namespace},
        {"name": "EDGEOPS_MODEL_NAME", "value": model},
        {"name": "EDGEOPS_MODEL_UID", "value": uid},
        {"name": "EDGEOPS_MODEL_VERSION", "value": str(version)},
    ]


def inference_service(
    model: dict[str, Any],
    owner: dict[str, Any],
    serving: Serving,
    storage_uri: str,
    version: int,
    public_keys: Mapping[str, str],
) -> dict[str, Any]:
    """The model's InferenceService serving ``version`` from ``storage_uri``, its model
    container told what to verify (:func:`predictor_env`)."""
    name = model["metadata"]["name"]
    meta = model["metadata"]
    predictor: dict[str, Any] = {
        "serviceAccountName": service_account_name(name),
        "minReplicas": serving.min_replicas,
        "maxReplicas": serving.max_replicas,
        "model": {
            "modelFormat": {"name": "onnx"},
            "runtime": serving.runtime or DEFAULT_RUNTIME,
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "env": predictor_env(
                str(meta.get("namespace")), name, str(meta.get("uid")), version, public_keys
            ),
        },
    }
    return {
        "apiVersion": f"{KSERVE_GROUP}/{ISVC_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "labels": {
                Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE,
                Labels.MODEL: name,
                Labels.MODEL_VERSION: str(version),
            },
            # No Knative in most edge clusters: plain Deployments.
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
            "ownerReferences": [owner],
        },
        "spec": {"predictor": predictor},
    }


def serving_runtime(image: str) -> dict[str, Any]:
    """The EdgeOps predictor as a namespaced ServingRuntime for the onnx model format. It
    carries no keys: each InferenceService passes its own (:func:`predictor_env`)."""
    return {
        "apiVersion": f"{KSERVE_GROUP}/{RUNTIME_VERSION}",
        "kind": "ServingRuntime",
        "metadata": {
            "name": DEFAULT_RUNTIME,
            "labels": {Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE},
        },
        "spec": {
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "args": [
                        "--model_name={{.Name}}",
                        "--model_dir=/mnt/models",
                        "--http_port=8080",
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    },
                }
            ],
        },
    }
