"""The gateway's published contract: /openapi.json is a valid OpenAPI 3.1 document in
which every body is a named schema (firmware teams generate clients from it), paths are
exact, and wire bodies are taken as sent, never coerced."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from pydantic import ValidationError

from edgeops.api.wire import StatusReport, TelemetryReport
from edgeops.gateway.app import create_app
from edgeops.settings import GatewaySettings


def _no_store() -> Any:
    raise AssertionError("S3 is not needed here")


@pytest.fixture(scope="module")
def gateway() -> TestClient:
    return TestClient(create_app(GatewaySettings(), _no_store))


def test_the_document_is_valid_and_every_reference_resolves(gateway: TestClient) -> None:
    doc = gateway.get("/openapi.json").json()
    validate(doc)
    schemas = doc["components"]["schemas"]
    text = json.dumps(doc)
    assert "$defs" not in text and "HTTPValidationError" not in text
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs <= set(schemas)
    for path, method, request, answer in (
        ("/v1/enroll", "post", "EnrollRequest", ("201", "EnrollAnswer")),
        ("/v1/devices/{namespace}/{name}/status", "post", "StatusReport", ("200", "StatusAnswer")),
        ("/v1/devices/{namespace}/{name}/telemetry", "post", "TelemetryReport",
         ("200", "TelemetryAnswer")),
        ("/v1/devices/{namespace}/{name}/samples", "post", "SampleUpload",
         ("200", "SampleAnswer")),
        ("/v1/devices/{namespace}/{name}/desired", "get", None, ("200", "DesiredState")),
    ):  # fmt: skip
        operation = doc["paths"][path][method]
        if request:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": f"#/components/schemas/{request}"}
        status, model = answer
        content = operation["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}
        error = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schemas["ErrorBody"]["required"]) == {"reason", "message"}


def test_a_trailing_slash_is_not_redirected(gateway: TestClient) -> None:
    answer = gateway.post("/v1/enroll/", content=b"{}", follow_redirects=False)
    assert answer.status_code == 404 and answer.json()["reason"] == "NotFound"


def test_wire_bodies_are_not_coerced() -> None:
    with pytest.raises(ValidationError, match="sequence"):
        StatusReport.model_validate_json('{"sequence": "7"}')
    assert StatusReport.model_validate_json('{"sequence": 7}').sequence == 7
    report = TelemetryReport.model_validate_json(
        '{"sequence": 1, "model": "m", "version": 1, "intervalSeconds": 60, "inferences": 3}'
    )
    assert report.interval_seconds == 60.0  # an integer is a number


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("predictions", {"a": 3, "b": 2}, "predictions add up to 5, more than inferences \\(4\\)"),
        ("confidence", {"counts": [5] + [0] * 9}, "confidence.counts add up to 5"),
        ("latencySeconds", {"counts": [0] * 11 + [6]}, "latencySeconds.counts add up to 6"),
    ],
)
def test_per_inference_counts_cannot_exceed_inferences(field: str, value: Any, why: str) -> None:
    body = {"sequence": 1, "model": "m", "version": 1, "intervalSeconds": 60, "inferences": 4}
    with pytest.raises(ValidationError, match=why):
        TelemetryReport.model_validate({**body, field: value})
    TelemetryReport.model_validate({**body, "inferences": 10, field: value})


def test_devices_of_namespaces_not_served_are_refused_before_any_lookup() -> None:
    """`edgeops gateway run --namespace team-a`: the gateway has neither caches nor RBAC
    elsewhere, so it says so (404 NamespaceNotServed) instead of a misleading 401/5xx."""
    served = TestClient(create_app(GatewaySettings(), _no_store, namespaces=["team-a"]))
    refused = served.get("/v1/devices/team-b/dev-1/desired")
    assert refused.status_code == 404
    assert refused.json() == {
        "reason": "NamespaceNotServed",
        "message": "namespace 'team-b' is not served by this gateway",
    }
    enroll = {
        "token": "x" * 43, "namespace": "team-b", "name": "dev-1", "publicKey": "A" * 43 + "=",
        "targetType": "linux",
    }  # fmt: skip
    assert served.post("/v1/enroll", json=enroll).json()["reason"] == "NamespaceNotServed"
    # A served namespace goes on to authentication (no signature here: 401).
    assert served.get("/v1/devices/team-a/dev-1/desired").status_code == 401
