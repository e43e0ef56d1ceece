"""The operator's one ArtifactStore, configured from the environment and (optionally) a
credentials Secret named by EDGEOPS_S3_SECRET ("name" in the operator's namespace, or
"namespace/name")."""

from __future__ import annotations

import os
import threading

from edgeops.k8s import client as k8s
from edgeops.store import ArtifactStore, StoreConfig

DEFAULT_SECRET_NAMESPACE = "edgeops-system"

_lock = threading.Lock()
_store: ArtifactStore | None = None


def artifact_store() -> ArtifactStore:
    """Built on first use, so the operator starts (and reports StorageAvailable=False)
    even when S3 is misconfigured or down."""
    global _store
    with _lock:
        if _store is None:
            env = dict(os.environ)
            secret_ref = env.get("EDGEOPS_S3_SECRET")
            secret = None
            if secret_ref:
                namespace, _, name = secret_ref.rpartition("/")
                secret = k8s.read_secret(
                    namespace or env.get("EDGEOPS_NAMESPACE", DEFAULT_SECRET_NAMESPACE), name
                )
            _store = ArtifactStore(StoreConfig.from_env(env, secret))
        return _store
