"""Server-side apply (SSA) of the objects the operator owns, with field manager ``edgeops``.

Every child object (Jobs, ConfigMaps, Secrets, ServiceAccounts, TrainingRuns,
FleetRollouts, KServe InferenceServices and ServingRuntimes) is written here, one way:
the API server merges the manifest into the live object and records which fields
``edgeops`` owns, so fields a defaulting webhook or a person added are kept, and a field the
operator stops setting is removed (https://kubernetes.io/docs/reference/using-api/server-side-apply/).

One guard SSA does not give, applied by :func:`apply_owned` to every write: an existing
object of the wanted name is only adopted or changed when it is EdgeOps's
(:func:`edgeops.k8s.custom.check_controlled`): a child must be controlled by the same
owner (uid), a shared object must carry ``app.kubernetes.io/managed-by=edgeops``. Another
controller (a deleted owner of the same name whose dependents await garbage collection) is
:class:`edgeops.k8s.custom.StaleOwnerError`; a user's own object of that name is
:class:`edgeops.k8s.custom.NameTakenError` and is never touched.
"""

from __future__ import annotations

from typing import Any, Final

from kubernetes import client
from kubernetes.client.rest import ApiException

from edgeops.k8s.client import api_client
from edgeops.k8s.custom import check_controlled

FIELD_MANAGER: Final = "edgeops"
APPLY_PATCH: Final = "application/apply-patch+yaml"

#: Kinds the operator writes through the custom-objects endpoint (any named API group).
_GROUPED: Final[dict[str, str]] = {
    "Job": "jobs",
    "TrainingRun": "trainingruns",
    "FleetRollout": "fleetrollouts",
    "InferenceService": "inferenceservices",
    "ServingRuntime": "servingruntimes",
}
#: Kinds of the core ("") API group: (read, patch) method names of CoreV1Api.
_CORE: Final[dict[str, tuple[str, str]]] = {
    "ConfigMap": ("read_namespaced_config_map", "patch_namespaced_config_map"),
    "Secret": ("read_namespaced_secret", "patch_namespaced_secret"),
    "ServiceAccount": ("read_namespaced_service_account", "patch_namespaced_service_account"),
}


def _plain(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = api_client().sanitize_for_serialization(obj)
    return result


def read(namespace: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The live object the manifest names, or None when there is none."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    try:
        if kind in _CORE:
            method = getattr(client.CoreV1Api(api_client()), _CORE[kind][0])
            return _plain(method(name, namespace))
        group, version = _group_version(manifest)
        result: dict[str, Any] = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
            group, version, namespace, _GROUPED[kind], name
        )
        return result
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def server_side_apply(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Applies the manifest (create or update) as field manager ``edgeops``, taking over
    fields another manager set (``force``): the operator is the authority on what it
    applies. Returns the live object. Raises ApiException (e.g. 422 for an invalid or
    immutable change)."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY_PATCH}
    if kind in _CORE:
        method = getattr(client.CoreV1Api(api_client()), _CORE[kind][1])
        return _plain(method(name, namespace, manifest, **options))
    group, version = _group_version(manifest)
    result = client.CustomObjectsApi(api_client()).patch_namespaced_custom_object(
        group, version, namespace, _GROUPED[kind], name, manifest, **options
    )
    if result is None:
        # The generated client maps only 200 to a body; an apply that creates answers 201.
        created = read(namespace, manifest)
        if created is None:
            raise ApiException(status=404, reason=f"{kind} {name} vanished after it was applied")
        return created
    return dict(result)


def apply_owned(
    namespace: str, manifest: dict[str, Any], *, update: bool = True
) -> tuple[dict[str, Any], str]:
    """Applies an object EdgeOps owns after the ownership guard
    (:func:`edgeops.k8s.custom.check_controlled`). Returns (object, action) with action
    ``created``, ``updated`` or ``unchanged`` (the object already matched, or ``update`` is
    False and it existed: an immutable Job, a TrainingRun or FleetRollout whose spec now
    belongs to the user). Raises StaleOwnerError (another owner's object), NameTakenError
    (an object that is not EdgeOps's: left untouched), ApiException."""
    existing = read(namespace, manifest)
    if existing is not None:
        check_controlled(existing, manifest)
        if not update:
            return existing, "unchanged"
    applied = server_side_apply(namespace, manifest)
    if existing is None:
        return applied, "created"
    before = (existing.get("metadata") or {}).get("resourceVersion")
    after = (applied.get("metadata") or {}).get("resourceVersion")
    return applied, "unchanged" if before == after else "updated"


def _group_version(manifest: dict[str, Any]) -> tuple[str, str]:
    group, _, version = str(manifest["apiVersion"]).rpartition("/")
    return group, version
