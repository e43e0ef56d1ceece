"""``POST /v1/devices/{namespace}/{name}/telemetry``: a device's aggregates since its last
report, added to the fleet series the gateway exports at ``/metrics``
(:mod:`edgeops.metrics.fleet`).

A report is checked against what the device should run before anything is counted:

* the model must be the device's assigned one (409 ``ModelNotAssigned``): a device whose
  assignment moved on must not keep feeding the old model's series;
* the version must be registered in the EdgeModel's ``status.versions`` (422
  ``UnknownVersion``);
* features and bin counts must fit the version's reference profile, latency and confidence
  counts the wire bucket bounds (422 ``UnknownFeature`` / ``BinMismatch``, naming the
  field);
* the sequence must exceed the Device's stored ``status.sequence`` (409 ``StaleSequence``);
  it is stored (compare-and-swap, :meth:`Gateway.take_sequence`) last, after every other
  check, so a report refused for another reason can be fixed and sent with the same
  number, and before anything is counted, so a report replayed to another replica is
  refused there and never counted twice.

The cohort label is the assignment's cohort only when the report is about the assigned
version: a device in a canary cohort that still runs the old version (download pending,
rolled back) produces stable traffic, and counting it as canary would blur exactly the
comparison a rollout's analysis makes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from edgeops.api.wire import TelemetryAnswer, TelemetryReport
from edgeops.gateway.context import ApiError, Gateway, json_body, parse_body
from edgeops.gateway.desired import assignment
from edgeops.gateway.profiles import reference_bins, version_entry
from edgeops.metrics.fleet import ReferenceBins, ReportMismatchError, SeriesKey


def check(
    gw: Gateway, namespace: str, name: str, device: dict[str, Any], report: TelemetryReport
) -> tuple[SeriesKey, ReferenceBins]:
    """Checks ``report`` (see the module) without side effects (reads only, as
    :meth:`Gateway.cache_first` needs); the series it counts under and the reference bins it
    is folded against. Raises :class:`ApiError` with the refusal."""
    choice, model, _ = assignment(gw, namespace, name, device)
    if report.model != choice.model:
        raise ApiError(
            409,
            "ModelNotAssigned",
            f"the device is assigned model {choice.model}, not {report.model}",
        )
    version = version_entry(model, report.version)
    if version is None:
        raise ApiError(422, "UnknownVersion", f"{report.model} has no version {report.version}")
    reference = reference_bins(gw, version)
    try:
        reference.check(report)
    except ReportMismatchError as exc:
        raise ApiError(422, exc.reason, str(exc)) from None
    cohort = choice.cohort if report.version == choice.version else "stable"
    return SeriesKey(namespace, report.model, str(report.version), cohort), reference


def router(gw: Gateway) -> APIRouter:
    """The telemetry endpoint."""
    api = APIRouter()

    @api.post(
        "/v1/devices/{namespace}/{name}/telemetry",
        openapi_extra=json_body(TelemetryReport),
        responses={200: {"model": TelemetryAnswer}},
    )
    async def telemetry(request: Request, namespace: str, name: str) -> Response:
        body = await gw.read_body(request)
        device = await gw.signed_device(request, namespace, name, body)
        device = await gw.approved_device(device)
        report = parse_body(TelemetryReport, body)
        key, reference = await gw.cache_first(check, gw, namespace, name, device, report)
        await run_in_threadpool(gw.take_sequence, device, report.sequence)
        gw.telemetry.add(key, report, reference)
        return JSONResponse({"sequence": report.sequence, "version": report.version,
                             "cohort": key.cohort})  # fmt: skip

    return api
