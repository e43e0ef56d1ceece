"""What the fleet gateway and the ``edgeops device`` commands read and write in the API
server: bootstrap-token Secrets (compare-and-swap on resourceVersion), Devices (create,
spec and status merge patches), EdgeModels and FleetRollouts (lists), Datasets (reads: the
inbox a device's samples go to)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client
from kubernetes.client.rest import ApiException

from edgeops.api.constants import DEVICES, GROUP, VERSION
from edgeops.k8s import custom
from edgeops.k8s.client import api_client

BOOTSTRAP_LABEL: Final = f"{GROUP}/bootstrap-token"


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


@dataclass(frozen=True)
class SecretData:
    data: dict[str, str]
    labels: dict[str, str]
    resource_version: str


def read_token_secret(namespace: str, name: str) -> SecretData | None:
    """A bootstrap-token Secret (only one labelled as such), or None."""
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    labels = dict(secret.metadata.labels or {})
    if labels.get(BOOTSTRAP_LABEL) != "true":
        return None
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return SecretData(data, labels, secret.metadata.resource_version)


def update_token_secret(
    namespace: str, name: str, data: dict[str, str], resource_version: str
) -> bool:
    """Replaces the Secret's data if it still is at ``resource_version``; False when it
    changed meanwhile (409: read again and retry)."""
    body = {
        "metadata": {"resourceVersion": resource_version},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    try:
        _core().patch_namespaced_secret(name, namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def create_token_secret(namespace: str, name: str, data: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "labels": {BOOTSTRAP_LABEL: "true", "app.kubernetes.io/managed-by": "edgeops"},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    _core().create_namespaced_secret(namespace, body)


def read_device(namespace: str, name: str) -> dict[str, Any] | None:
    """The Device, or None when it does not exist."""
    return custom.read(namespace, GROUP, VERSION, DEVICES, name)


class DeviceRefusedError(ValueError):
    """The API server refused a Device for its content (422 Invalid, e.g. a label value it
    does not accept); the message is the server's."""


def _refused(exc: ApiException) -> DeviceRefusedError:
    try:
        message = json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        message = str(exc.reason)
    return DeviceRefusedError(message)


def create_device(namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Creates the Device; None when one of that name exists already (409). Raises
    :class:`DeviceRefusedError` for a Device the API server refuses (422)."""
    try:
        obj: dict[str, Any] = _custom().create_namespaced_custom_object(
            GROUP, VERSION, namespace, DEVICES, body
        )
    except ApiException as exc:
        if exc.status == 409:
            return None
        if exc.status == 422:
            raise _refused(exc) from None
        raise
    return obj


def patch_device(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge-patches the Device (metadata and spec). Raises :class:`DeviceRefusedError` for
    a patch the API server refuses (422)."""
    try:
        obj: dict[str, Any] = _custom().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, DEVICES, name, patch
        )
    except ApiException as exc:
        if exc.status == 422:
            raise _refused(exc) from None
        raise
    return obj


def patch_device_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = _custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, DEVICES, name, {"status": status}
    )
    return obj


def swap_device_status(
    namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> dict[str, Any] | None:
    """Merge-patches the Device's status if the Device still is at ``resource_version``
    (compare-and-swap); the Device as now stored, or None when another writer came first
    (409: read again and decide again). Raises ``LookupError`` when the Device is gone,
    the API server's other errors as they are."""
    try:
        return custom.patch_status(namespace, DEVICES, name, status, resource_version)
    except ApiException as exc:
        if exc.status == 409:
            return None
        if exc.status == 404:
            raise LookupError(f"device {namespace}/{name} is gone") from None
        raise


def read_object(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    """An EdgeOps object of kind ``plural`` (e.g. ``datasets``), or None when it does not
    exist."""
    return custom.read(namespace, GROUP, VERSION, plural, name)


def list_objects(namespace: str, plural: str) -> list[dict[str, Any]]:
    result = _custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    return list(result.get("items", []))


def is_api_error(error: BaseException) -> bool:
    return isinstance(error, ApiException)
