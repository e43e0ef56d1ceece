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


def _config_map(data: dict[str, str], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "child", "labels": {"app.kubernetes.io/managed-by": "edgeops"}}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
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


def test_an_object_of_another_owner_is_not_adopted(ns: str) -> None:
    # Two real owners: a child whose owner does not exist is garbage-collected at once.
    first = apply.server_side_apply(ns, {**_config_map({}), "metadata": {"name": "owner-a"}})
    second = apply.server_side_apply(ns, {**_config_map({}), "metadata": {"name": "owner-b"}})
    apply.server_side_apply(ns, _config_map({"a": "1"}, owner=first))
    with pytest.raises(custom.StaleOwnerError, match="ConfigMap child still belongs"):
        apply.apply_owned(ns, _config_map({"a": "2"}, owner=second))
    assert apply.read(ns, _config_map({}))["data"] == {"a": "1"}  # type: ignore[index]
