"""Small read helpers over the kubernetes client for what Kopf does not provide."""

from __future__ import annotations

import base64
import functools
import os
from typing import Any

from kubernetes import client, config

from edgeops.api.constants import EDGE_MODELS, GROUP, TRAINING_RUNS, VERSION


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


def deployed_dataset_versions(namespace: str) -> set[str]:
    """Dataset versions that back a model a fleet runs, may run again or is about to run:
    every approved or candidate version of every EdgeModel in the namespace (a rollback
    can return to any approved version), a dataset version pinned in a model's spec, and
    the version every unfinished TrainingRun trains on (its Job reads it, maybe again on
    a retry)."""
    versions = training_dataset_versions(namespace)
    for model in list_custom(namespace, EDGE_MODELS):
        status = model.get("status") or {}
        live = {status.get("currentVersion"), status.get("candidateVersion")} - {None}
        for entry in status.get("versions") or []:
            keep = entry.get("number") in live or entry.get("state") in ("Approved", "Candidate")
            if keep and entry.get("datasetVersion"):
                versions.add(str(entry["datasetVersion"]))
        pinned = (((model.get("spec") or {}).get("training") or {}).get("datasetRef") or {}).get(
            "version"
        )
        if pinned:
            versions.add(str(pinned))
    return versions


def training_dataset_versions(namespace: str) -> set[str]:
    """Dataset versions that unfinished TrainingRuns in the namespace train on."""
    versions: set[str] = set()
    for run in list_custom(namespace, TRAINING_RUNS):
        status = run.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        pinned = ((run.get("spec") or {}).get("datasetRef") or {}).get("version")
        for version in (status.get("datasetVersion"), pinned):
            if version:
                versions.add(str(version))
    return versions
