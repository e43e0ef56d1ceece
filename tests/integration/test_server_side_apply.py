"""Child objects are written with server-side apply (field manager ``edgeops``) on the real
API server: what another manager (a defaulting webhook, a person) added is kept and is not
a change; a field the operator stops setting is removed; a stale owner is never adopted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeops.k8s import apply, custom
from tests.conftest import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def ns(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(apply, "api_client", cluster.api_client)
    return cluster.namespace("ssa")


def _config_map(data: dict[str, str], owner_uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "child", "labels": {"app.kubernetes.io/managed-by": "edgeops"}}
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "owner",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def test_other_managers_fields_are_kept_and_dropped_fields_removed(
    cluster: Cluster, ns: str
) -> None:
    obj, action = apply.apply_owned(ns, _config_map({"a": "1", "b": "2"}))
    assert action == "created" and obj["data"] == {"a": "1", "b": "2"}
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert apply.FIELD_MANAGER in managers
    # Another manager adds a field, as a defaulting webhook would.
    cluster.kubectl(
        "patch",
        "configmap",
        "child",
        "-n",
        ns,
        "--type",
        "merge",
        "--field-manager",
        "webhook",
        "-p",
        json.dumps({"data": {"c": "3"}}),
    )
    obj, action = apply.apply_owned(ns, _config_map({"a": "1", "b": "2"}))
    assert action == "unchanged" and obj["data"] == {"a": "1", "b": "2", "c": "3"}
    # A key the operator stops setting disappears; the other manager's stays.
    obj, action = apply.apply_owned(ns, _config_map({"a": "1"}))
    assert action == "updated" and obj["data"] == {"a": "1", "c": "3"}
    # A value someone changed by hand is put back.
    cluster.kubectl(
        "patch",
        "configmap",
        "child",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"a": "tampered"}}),
    )
    obj, action = apply.apply_owned(ns, _config_map({"a": "1"}))
    assert action == "updated" and obj["data"]["a"] == "1"


def test_an_object_of_a_deleted_owner_is_not_adopted(ns: str) -> None:
    apply.server_side_apply(ns, _config_map({"a": "1"}, owner_uid="uid-old"))
    with pytest.raises(custom.StaleOwnerError, match="ConfigMap child still belongs"):
        apply.apply_owned(ns, _config_map({"a": "2"}, owner_uid="uid-new"))
    assert apply.read(ns, _config_map({}))["data"] == {"a": "1"}  # type: ignore[index]
