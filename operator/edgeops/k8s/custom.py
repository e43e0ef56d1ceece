"""Reads and small writes of custom objects (EdgeOps kinds, KServe) and the manifests of the
core objects the operator owns; `edgeops.k8s.apply` writes them (server-side apply)."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from edgeops.api.constants import GROUP, VERSION, Labels
from edgeops.k8s.client import api_client

MANAGED = {Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE}


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


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


class NameTakenError(Exception):
    """An object of the wanted name exists and EdgeOps may not take it over: a child name
    held by an object with no controller (a user's own Job, ConfigMap, Secret,
    TrainingRun…), or a shared object without the ``app.kubernetes.io/managed-by=edgeops``
    label. It is never adopted, changed or deleted. Not retryable by waiting alone:
    someone has to delete or rename it."""

    def __init__(self, kind: str, name: str, detail: str = "is not owned by EdgeOps"):
        self.kind, self.name = kind, name
        super().__init__(
            f"a {kind} named {name} exists and {detail}; it is left alone: delete or rename it"
        )


def _controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((dict(r) for r in refs if r.get("controller")), None)


def check_adoptable(existing: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Raises StaleOwnerError when ``existing`` (found by the manifest's name) has a
    controller whose uid is not the manifest's controller's: adopting it would mix up two
    owners' state. Objects without a controller, or with the same one, pass this check
    (:func:`check_controlled` is the full rule every write uses)."""
    wanted = _controller_ref(manifest)
    current = _controller_ref(existing)
    if wanted is None or current is None or current.get("uid") == wanted.get("uid"):
        return
    kind = str(existing.get("kind") or manifest.get("kind") or "object")
    raise StaleOwnerError(kind, manifest["metadata"]["name"], current, wanted)


def check_controlled(existing: dict[str, Any] | None, manifest: dict[str, Any]) -> None:
    """Whether the operator may write (adopt, update) ``existing``, the live object of the
    manifest's name (None: absent, so it may be created).

    - A manifest with a controller reference (a child: ``<run>-train`` Job and ConfigMap,
      ``<model>-r<N>`` TrainingRun, ``<model>-v<N>-<k>`` FleetRollout, credentials Secrets,
      the InferenceService) may only write an object controlled by that same owner (uid),
      which is what the operator created before, e.g. before a restart.
    - A manifest without one (a shared object: the per-namespace ServingRuntime
      ``edgeops-predictor``, the signing ConfigMap, the evaluator's objects in the
      operator's namespace) may only write an object labelled
      ``app.kubernetes.io/managed-by=edgeops``.

    Raises StaleOwnerError when another controller holds the name (a deleted owner of the
    same name, awaiting garbage collection: retryable by waiting), NameTakenError when the
    object is not EdgeOps's (no controller, or no managed-by label): never touched."""
    if existing is None:
        return
    check_adoptable(existing, manifest)
    kind = str(existing.get("kind") or manifest.get("kind") or "object")
    name = manifest["metadata"]["name"]
    if _controller_ref(manifest) is not None:
        if _controller_ref(existing) is None:
            raise NameTakenError(kind, name, "is not owned by EdgeOps (it has no owner reference)")
        return
    labels = (existing.get("metadata") or {}).get("labels") or {}
    if labels.get(Labels.MANAGED_BY) != Labels.MANAGED_BY_VALUE:
        raise NameTakenError(
            kind,
            name,
            f"is not owned by EdgeOps (not labelled {Labels.MANAGED_BY}={Labels.MANAGED_BY_VALUE})",
        )


def check_owned(existing: dict[str, Any] | None, manifest: dict[str, Any]) -> None:
    """For children checked before anything is written (credentials Secrets, before STS
    is asked): the same rule as :func:`check_controlled`."""
    check_controlled(existing, manifest)


def patch_status(
    namespace: str,
    plural: str,
    name: str,
    status: dict[str, Any],
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge-patches the status subresource of an EdgeOps object (``None`` values delete
    keys, RFC 7386) and returns the object the API server now has. With
    ``resource_version`` the patch applies only to that version of the object (optimistic
    concurrency: 409 Conflict, see :func:`is_conflict`, if another writer came first).
    Raises ApiException."""
    body: dict[str, Any] = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    result: dict[str, Any] = _custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, body
    )
    return result


def is_conflict(error: BaseException) -> bool:
    """Whether the API server answered 409 (the object changed since it was read)."""
    return isinstance(error, ApiException) and error.status == 409


def is_refused(error: BaseException) -> bool:
    """Whether the API server refused a write for its content (422 Invalid against the
    schema, 413 or etcd's "request is too large"): sending it again cannot succeed."""
    if not isinstance(error, ApiException):
        return False
    if error.status in (413, 422):
        return True
    return error.status == 500 and "too large" in str(error.body or "")


def is_not_found(error: BaseException) -> bool:
    """Whether the API server answered 404 (the object is gone)."""
    return isinstance(error, ApiException) and error.status == 404


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


def secret_manifest(
    name: str, data: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """An operator-managed Opaque Secret of ``data`` (plain strings, base64-encoded here),
    labelled managed-by edgeops."""
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
        core.create_namespaced_secret(namespace, secret_manifest(name, data))
        return dict(data)
    except ApiException as exc:
        if exc.status != 409:
            raise
    secret = core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def config_map_manifest(name: str, data: dict[str, str]) -> dict[str, Any]:
    """An operator-managed ConfigMap of ``data``, labelled managed-by edgeops."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": MANAGED},
        "data": data,
    }


def service_account_manifest(name: str, secrets: list[str]) -> dict[str, Any]:
    """An operator-managed ServiceAccount that lists ``secrets`` (KServe's storage
    initializer reads S3 settings from the Secrets of its pod's service account)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "labels": MANAGED},
        "secrets": [{"name": s} for s in secrets],
    }


def patch_user_spec(namespace: str, plural: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """For the CLI only (a person's request, like ``kubectl patch``): merge-patches the spec
    of an EdgeOps object. The operator never writes spec."""
    result: dict[str, Any] = _custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, {"spec": spec}
    )
    return result


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
