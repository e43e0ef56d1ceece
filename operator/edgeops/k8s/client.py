"""Small read helpers over the kubernetes client for what Kopf does not provide."""

from __future__ import annotations

import base64
import functools
import os
from typing import Any

from kubernetes import client, config

from edgeops.api.constants import GROUP, VERSION


@functools.cache
def api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        # Read KUBECONFIG now: the client library fixes its default path at import time.
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def read_secret(namespace: str, name: str) -> dict[str, str]:
    """The Secret's data, base64-decoded."""
    secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def list_custom(namespace: str, plural: str) -> list[dict[str, Any]]:
    api = client.CustomObjectsApi(api_client())
    result = api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    return list(result.get("items", []))
