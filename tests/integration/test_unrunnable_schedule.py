"""A schedule the controllers cannot run never fails quietly in a timer. The admission
webhook refuses it (tests/integration/invalid/*-cron-*.yaml), but its failurePolicy is
Ignore: while the operator is down such a spec can still be stored. Then the Dataset is
Ready=False with reason InvalidSpec and a Warning Event naming the field, and nothing is
collected."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration

WEBHOOK = "admission.edgeops.dev"


@contextlib.contextmanager
def webhook_removed(cluster: Cluster) -> Iterator[None]:
    """As if the operator were down when the object was written: the webhook
    configuration is taken away, then put back exactly as it was."""
    saved = cluster.get("validatingwebhookconfiguration", WEBHOOK)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        saved["metadata"].pop(key, None)
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK)
    try:
        yield
    finally:
        cluster.kubectl("create", "-f", "-", input=json.dumps(saved))


def test_a_stored_unrunnable_schedule_is_invalid_spec_with_an_event(cluster: Cluster) -> None:
    ns = cluster.namespace("cron")
    dataset: dict[str, Any] = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "hourly"},
        "spec": {
            "sources": [{"builtin": {"name": "basic-motions"}}],
            "governance": {"classification": "internal"},
            "collection": {"schedule": "61 * * * *"},
        },
    }
    refused = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(dataset), check=False)
    assert refused.returncode != 0
    assert "spec.collection.schedule: cron minute '61'" in refused.stderr
    with webhook_removed(cluster):
        cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(dataset))

    def invalid() -> dict[str, Any] | None:
        status = cluster.get("dataset", "hourly", "-n", ns).get("status") or {}
        ready = condition(status, "Ready") if status.get("conditions") else None
        return status if ready and ready["reason"] == "InvalidSpec" else None

    status = wait_for(invalid, 60, "Ready=False InvalidSpec")
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert (
        "spec.collection.schedule: cron minute '61': values must be within 0-59"
        in (ready["message"])
    )
    assert not status.get("versions")
    events = wait_for(
        lambda: [e for e in cluster.events(ns, "hourly") if e["reason"] == "InvalidSpec"],
        30, "an InvalidSpec Event",
    )  # fmt: skip
    assert events[0]["type"] == "Warning" and "cron minute '61'" in events[0]["message"]
