"""Read helpers for the child objects controllers own (writes: `edgeops.k8s.apply`), and
the deletion of a finished Job."""

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


def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _plain(client.BatchV1Api(api_client()).read_namespaced_job(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete_job(namespace: str, name: str, uid: str) -> bool:
    """Deletes a finished Job and, in the background, its pods; only the Job of ``uid``
    (a Job created since under the same name is left alone). False when it is gone."""
    options = client.V1DeleteOptions(
        propagation_policy="Background", preconditions=client.V1Preconditions(uid=uid)
    )
    try:
        client.BatchV1Api(api_client()).delete_namespaced_job(name, namespace, body=options)
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


def read_custom(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    """An EdgeOps object (group edgeops.dev), or None when it does not exist."""
    return custom.read(namespace, GROUP, VERSION, plural, name)


def read_pod_log(namespace: str, name: str, container: str, tail_lines: int = 20) -> str | None:
    """The last ``tail_lines`` lines of a container's log, or None when the pod is gone."""
    try:
        log: str = client.CoreV1Api(api_client()).read_namespaced_pod_log(
            name, namespace, container=container, tail_lines=tail_lines
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return log
