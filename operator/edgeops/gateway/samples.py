"""``POST /v1/devices/{namespace}/{name}/samples``: rows a device chose to upload
(:class:`~edgeops.api.wire.SampleUpload`) into the inbox of a Dataset.

The Dataset is never the device's choice: it is the one the ``spec.sampling.datasetRef`` of
the device's assigned EdgeModel names, in the device's own namespace, and the object goes
under that Dataset's inbox prefix, which must lie in ``inbox/<namespace>/``. So nothing a
device sends reaches another namespace's inbox.

Rows are validated against the Dataset's schema (:mod:`edgeops.policy.samples`, which
mirrors what the Dataset's collection accepts) and written as one JSON Lines object named
by the SHA-256 of its bytes: an upload retried with the same rows finds its object and
writes nothing (nor is it charged to the row budget). The Dataset's next collection
(``collection.onNewObjects``, or its schedule) turns new objects into a new version.

Answers: 200 ``{"sequence", "rows", "sha256", "written"}``; 409 ``StaleSequence``,
``SamplingDisabled`` (the model has no sampling policy, or ``maxRowsPerHour`` is 0),
``ModelNotAssigned`` (the body's model is not the device's), ``NoDataset``,
``DatasetInvalid``, ``NoInbox``, ``DeviceLabelMissing`` (a slice or row-key column the
device has no label for); 422 ``InvalidRequest`` (the body), ``InvalidSample`` (a row,
naming its index and field), ``TooManyRows`` (more rows than ``maxRowsPerHour`` in one
upload); 429 ``RateLimited`` with ``Retry-After`` past ``maxRowsPerHour`` rows an hour for
the device (per gateway replica); 503 ``StorageUnavailable``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from edgeops.api.dataset import DatasetSpec
from edgeops.api.wire import SampleAnswer, SampleUpload
from edgeops.gateway.context import ApiError, Gateway, json_body, parse_body
from edgeops.gateway.desired import assignment, sampling_policy
from edgeops.policy.samples import (
    InvalidSampleError,
    MissingDeviceLabelError,
    dataset_inbox,
    inbox_object,
    sample_records,
)
from edgeops.store import StoreError


def _dataset(gw: Gateway, namespace: str, name: str) -> tuple[DatasetSpec, str]:
    """The Dataset's spec and inbox prefix; 409 ``NoDataset``, ``DatasetInvalid`` or
    ``NoInbox``."""
    obj = gw.fleet.dataset(namespace, name)
    if obj is None:
        raise ApiError(409, "NoDataset", f"the sampling policy's Dataset {name} does not exist")
    try:
        spec = DatasetSpec.model_validate(obj.get("spec") or {})
        prefix = dataset_inbox(namespace, name, spec)
    except (ValidationError, ValueError):
        raise ApiError(409, "DatasetInvalid", f"Dataset {name} has an invalid spec") from None
    if prefix is None or spec.data_schema is None:
        raise ApiError(409, "NoInbox", f"Dataset {name} has no inbox source")
    return spec, prefix


def store_upload(
    gw: Gateway, namespace: str, name: str, device: dict[str, Any], upload: SampleUpload
) -> dict[str, Any]:
    """Validates ``upload`` for the device and writes its object (unless it exists); the
    answer's document. Raises ApiError as listed in the module docstring."""
    choice, model, _ = assignment(gw, namespace, name, device)
    policy = sampling_policy(model)
    if policy is None:
        raise ApiError(409, "SamplingDisabled", f"EdgeModel {choice.model} has no sampling policy")
    if upload.model != choice.model:
        raise ApiError(
            409, "ModelNotAssigned", f"the device runs EdgeModel {choice.model}, not {upload.model}"
        )
    if policy.max_rows_per_hour == 0:
        raise ApiError(409, "SamplingDisabled", f"{choice.model}: sampling.maxRowsPerHour is 0")
    if len(upload.rows) > policy.max_rows_per_hour:
        raise ApiError(
            422,
            "TooManyRows",
            f"at most sampling.maxRowsPerHour={policy.max_rows_per_hour} rows per upload",
        )
    spec, prefix = _dataset(gw, namespace, policy.dataset_ref.name)
    assert spec.data_schema is not None  # _dataset checked it
    labels = (device.get("metadata") or {}).get("labels") or {}
    try:
        records = sample_records(upload.rows, spec.data_schema, spec.validation, labels)
        obj = inbox_object(prefix, records)
    except InvalidSampleError as error:
        raise ApiError(422, "InvalidSample", str(error)) from None
    except MissingDeviceLabelError as error:
        raise ApiError(409, "DeviceLabelMissing", str(error)) from None
    except ValueError:  # a string JCS cannot encode (a lone surrogate)
        raise ApiError(422, "InvalidSample", "rows: not encodable as JSON text") from None
    answer = {"sequence": upload.sequence, "rows": len(records), "sha256": obj.sha256}
    store = gw.store()
    try:
        if store.exists(obj.key):
            # A retry of an upload that was stored: nothing to write, nothing to charge.
            return {**answer, "written": False}
        key = f"{namespace}/{name}"
        wait = gw.rows.take(key, len(records), policy.max_rows_per_hour, time.monotonic())
        if wait > 0:
            raise ApiError(
                429,
                "RateLimited",
                f"more than sampling.maxRowsPerHour={policy.max_rows_per_hour} rows an hour",
                {"Retry-After": str(math.ceil(wait))},
            )
        try:
            # One PUT (far below the multipart size): S3 shows the object whole or not at
            # all, so a collection listing the inbox meanwhile never reads half an upload.
            store.put_bytes(obj.key, obj.data, "application/x-ndjson")
        except StoreError:
            gw.rows.give_back(key, len(records))
            raise
    except StoreError:
        raise ApiError(
            503, "StorageUnavailable", "the sample store is unavailable", {"Retry-After": "30"}
        ) from None
    return {**answer, "written": True}


def router(gw: Gateway) -> APIRouter:
    """The sample-upload endpoint."""
    api = APIRouter()

    @api.post(
        "/v1/devices/{namespace}/{name}/samples",
        openapi_extra=json_body(SampleUpload),
        responses={200: {"model": SampleAnswer}},
    )
    async def samples(request: Request, namespace: str, name: str) -> Response:
        body = await gw.read_body(request)
        device = await gw.signed_device(request, namespace, name, body)
        device = await gw.approved_device(device)
        upload = parse_body(SampleUpload, body)
        # The stored sequence first: a replay to any replica is refused before any work.
        device = await run_in_threadpool(gw.take_sequence, device, upload.sequence)
        answer = await run_in_threadpool(store_upload, gw, namespace, name, device, upload)
        return JSONResponse(answer)

    return api
