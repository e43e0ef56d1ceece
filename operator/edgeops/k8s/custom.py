"""Helpers for the objects an EdgeModel owns or publishes: custom objects of any group
(EdgeOps kinds, KServe InferenceServices and ServingRuntimes), ServiceAccounts, and the
ConfigMap/Secret pair of the signing key."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

from kubernetes import client
from kubernetes.client.rest import ApiException

from edgeops.api.constants import GROUP, VERSION, Labels
from edgeops.canonical_json import sorted_json
from edgeops.k8s.client import api_client

MANAGED = {Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE}
#: Hash of the spec `apply` last wrote: a spec the operator stopped setting a key in is a
#: change, while keys a defaulting webhook added to the live object are not.
APPLIED_SPEC: Final = "edgeops.dev/applied-spec"


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def list_labelled(namespace: str, plural: str, selector: str) -> list[dict[str, Any]]:
    """EdgeOps objects of ``plural`` matching a label selector."""
    result = _custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, label_selector=selector
    )
    return list(result.get("items", []))


def read(namespace: str, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object(
            group, version, namespace, plural, name
        )
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


class StaleOwnerError(Exception):
    """An object of the wanted name exists but is controlled by another owner (typically
    a deleted one of the same name whose dependents are still being garbage-collected):
    it must not be adopted. Retryable: the name is free once the old object is gone."""

    def __init__(self, kind: str, name: str, owner: dict[str, Any], wanted: dict[str, Any]):
        self.kind, self.name, self.owner, self.wanted = kind, name, owner, wanted
        owner_kind = owner.get("kind") or "owner"
        if owner.get("name") == wanted.get("name"):
            whose = f"a previous {owner_kind} of the same name"
        else:
            whose = f"{owner_kind} {owner.get('name')}"
        super().__init__(
            f"{kind} {name} still belongs to {whose} (uid {owner.get('uid')}); "
            "waiting for it to be garbage-collected"
        )


def _controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((dict(r) for r in refs if r.get("controller")), None)


def check_adoptable(existing: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Raises StaleOwnerError when ``existing`` (found by the manifest's name) has a
    controller whose uid is not the manifest's controller's: adopting it would mix up two
    owners' state. Objects without a controller, or with the same one, are adoptable."""
    wanted = _controller_ref(manifest)
    current = _controller_ref(existing)
    if wanted is None or current is None or current.get("uid") == wanted.get("uid"):
        return
    kind = str(existing.get("kind") or manifest.get("kind") or "object")
    raise StaleOwnerError(kind, manifest["metadata"]["name"], current, wanted)


def create_or_adopt(
    namespace: str,
    plural: str,
    manifest: dict[str, Any],
    group: str = GROUP,
    version: str = VERSION,
) -> tuple[dict[str, Any], bool]:
    """Creates the custom object, or returns the existing one of that name (a restarted
    operator, or a stale read, must not create a second one). Returns (object, created).
    Raises StaleOwnerError instead of adopting an object another owner controls."""
    try:
        obj = _custom().create_namespaced_custom_object(group, version, namespace, plural, manifest)
        return obj, True
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = read(namespace, group, version, plural, manifest["metadata"]["name"])
    if existing is None:  # deleted in between: try once more
        return create_or_adopt(namespace, plural, manifest, group, version)
    check_adoptable(existing, manifest)
    return existing, False


def apply(
    namespace: str, plural: str, manifest: dict[str, Any], group: str, version: str
) -> tuple[dict[str, Any], str]:
    """Creates the object or brings its spec, labels and annotations to the manifest's.
    Fields the live spec has beyond the manifest's (a webhook's defaults) are left alone.
    Returns (object, "created" | "updated" | "unchanged")."""
    # ASCII-escaped, as the annotations already on objects were computed.
    spec_hash = hashlib.sha256(sorted_json(manifest.get("spec"), ensure_ascii=True)).hexdigest()
    metadata = manifest["metadata"]
    annotations = {**(metadata.get("annotations") or {}), APPLIED_SPEC: spec_hash}
    manifest = {**manifest, "metadata": {**metadata, "annotations": annotations}}
    # Read first: in the steady state this is the only call.
    existing = read(namespace, group, version, plural, manifest["metadata"]["name"])
    if existing is None:
        obj, created = create_or_adopt(namespace, plural, manifest, group, version)
        if created:
            return obj, "created"
    else:
        obj = existing
    wanted_meta = manifest["metadata"]
    meta = obj.get("metadata") or {}
    drift: dict[str, Any] = {}
    applied = (meta.get("annotations") or {}).get(APPLIED_SPEC)
    if applied != spec_hash or not _contains(obj.get("spec"), manifest.get("spec")):
        drift["spec"] = manifest.get("spec")
    for key in ("labels", "annotations"):
        wanted = wanted_meta.get(key) or {}
        if any((meta.get(key) or {}).get(k) != v for k, v in wanted.items()):
            drift.setdefault("metadata", {})[key] = wanted
    if not drift:
        return obj, "unchanged"
    if "spec" in drift:
        # A merge patch cannot remove keys we stopped setting: replace the spec instead.
        body = {**obj, "spec": manifest.get("spec")}
        body["metadata"] = {**meta, **drift.get("metadata", {})}
        updated = _custom().replace_namespaced_custom_object(
            group, version, namespace, plural, meta["name"], body
        )
    else:
        updated = _custom().patch_namespaced_custom_object(
            group, version, namespace, plural, meta["name"], drift
        )
    return updated, "updated"


def _contains(live: Any, wanted: Any) -> bool:
    """Whether ``live`` has every field of ``wanted`` with its value, recursively (lists
    element by element)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            k in live and _contains(live[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(_contains(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


def delete(namespace: str, group: str, version: str, plural: str, name: str) -> bool:
    try:
        _custom().delete_namespaced_custom_object(group, version, namespace, plural, name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def patch_metadata(
    namespace: str,
    plural: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Merge-patches labels/annotations of an EdgeOps object (never its spec)."""
    metadata: dict[str, Any] = {}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    result: dict[str, Any] = _custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, {"metadata": metadata}
    )
    return result


def read_config_map_data(namespace: str, name: str) -> dict[str, str]:
    """A ConfigMap's data, or {} when it does not exist."""
    try:
        return dict(_core().read_namespaced_config_map(name, namespace).data or {})
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise


def ensure_config_map(namespace: str, name: str, data: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": MANAGED},
        "data": data,
    }
    core = _core()
    try:
        core.create_namespaced_config_map(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = core.read_namespaced_config_map(name, namespace)
        if (current.data or {}) != data:
            core.patch_namespaced_config_map(name, namespace, {"data": data})


def _secret(
    name: str, data: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": MANAGED, "annotations": annotations or {}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def create_secret_once(namespace: str, name: str, data: dict[str, str]) -> dict[str, str]:
    """Creates the Secret unless it exists, and returns the data that is stored: the first
    writer wins, so concurrent operators end up with the same key."""
    core = _core()
    try:
        core.create_namespaced_secret(namespace, _secret(name, data))
        return dict(data)
    except ApiException as exc:
        if exc.status != 409:
            raise
    secret = core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def ensure_secret(
    namespace: str, name: str, data: dict[str, str], annotations: dict[str, str] | None = None
) -> None:
    """Creates or updates an operator-managed Secret: S3 credentials for training Jobs, or
    for KServe, whose storage initializer reads its S3 settings from the annotations."""
    annotations = annotations or {}
    body = _secret(name, data, annotations)
    core = _core()
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = core.read_namespaced_secret(name, namespace)
        if (current.data or {}) != body["data"] or any(
            (current.metadata.annotations or {}).get(k) != v for k, v in annotations.items()
        ):
            core.patch_namespaced_secret(
                name, namespace, {"data": body["data"], "metadata": {"annotations": annotations}}
            )


def ensure_service_account(namespace: str, name: str, secrets: list[str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "labels": MANAGED},
        "secrets": [{"name": s} for s in secrets],
    }
    core = _core()
    try:
        core.create_namespaced_service_account(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = core.read_namespaced_service_account(name, namespace)
        if sorted(s.name for s in current.secrets or []) != sorted(secrets):
            core.patch_namespaced_service_account(name, namespace, {"secrets": body["secrets"]})


def annotate(namespace: str, plural: str, name: str, annotations: dict[str, str]) -> None:
    """For the CLI: sets annotations on an EdgeOps object (e.g. a retrain request)."""
    patch_metadata(namespace, plural, name, annotations=annotations)


def namespace_terminating(error: BaseException) -> bool:
    """The namespace is being deleted: nothing new can be created in it, and its objects
    are about to disappear, so reconciling it is pointless rather than an error."""
    return (
        isinstance(error, ApiException)
        and error.status == 403
        and "NamespaceTerminating" in str(error.body or "")
    )
