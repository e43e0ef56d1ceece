"""Create-or-adopt and read helpers for the child objects controllers own."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from edgeops.api.constants import GROUP, VERSION
from edgeops.k8s import custom
from edgeops.k8s.client import api_client


def _plain(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = api_client().sanitize_for_serialization(obj)
    return result


def create_or_adopt(namespace: str, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Creates the object, or returns the existing one of that name (a restarted operator
    adopts what it created before). Returns (object, created). Raises
    custom.StaleOwnerError instead of adopting an object another owner controls (e.g. the
    Job of a deleted run of the same name, not yet garbage-collected)."""
    kind = manifest["kind"]
    name = manifest["metadata"]["name"]
    api = _api_for(kind)
    create, read = api
    try:
        return _plain(create(namespace, manifest)), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = _plain(read(name, namespace))
    custom.check_adoptable(existing, manifest)
    return existing, False


def _api_for(kind: str) -> tuple[Any, Any]:
    core = client.CoreV1Api(api_client())
    batch = client.BatchV1Api(api_client())
    table = {
        "Job": (batch.create_namespaced_job, batch.read_namespaced_job),
        "ConfigMap": (core.create_namespaced_config_map, core.read_namespaced_config_map),
        "Secret": (core.create_namespaced_secret, core.read_namespaced_secret),
    }
    return table[kind]


def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _plain(client.BatchV1Api(api_client()).read_namespaced_job(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = client.CoreV1Api(api_client()).list_namespaced_pod(namespace, label_selector=selector)
    return [_plain(p) for p in pods.items]


def read_custom(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    """An EdgeOps object (group edgeops.dev), or None when it does not exist."""
    return custom.read(namespace, GROUP, VERSION, plural, name)
