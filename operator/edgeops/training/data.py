"""Loading a published dataset version from S3 into arrays, verifying every hash."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from edgeops.api import DatasetSchema
from edgeops.canonical_json import sorted_json
from edgeops.datasets import layout
from edgeops.datasets.cleaning import category
from edgeops.datasets.manifest import parse_manifest
from edgeops.datasets.profile import build_profile
from edgeops.datasets.protocol import Store
from edgeops.store.errors import ObjectMissingError
from edgeops.training import selection
from edgeops.training.pipeline import TrainingData

NUMERIC_TYPES = ("float", "int", "bool")


class DatasetFormatError(ValueError):
    """The version cannot be trained on as is (message names the column)."""


def read_version(
    store: Store, namespace: str, name: str, version: str
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The version's schema document and its rows per split, in stored order."""
    manifest = store.get_bytes(layout.manifest_key(namespace, name, version))
    entries = {e.key: e for e in parse_manifest(manifest)}
    # get_blob re-hashes the content: a corrupted shard fails here, not in training.
    files = {key: store.get_blob(entry.sha256) for key, entry in entries.items()}
    schema = json.loads(files["schema.json"])
    splits = {
        split: [json.loads(line) for line in files[f"data/{split}.jsonl"].splitlines() if line]
        for split in ("train", "validation", "test")
    }
    return schema, splits


def load_version(
    store: Store, namespace: str, name: str, version: str, slice_columns: list[str]
) -> tuple[TrainingData, bytes]:
    """The version's splits as arrays, and its reference profile (raw JSON bytes)."""
    schema, splits = read_version(store, namespace, name, version)
    profile = store.get_bytes(layout.profile_key(namespace, name, version))
    return to_arrays(schema, splits, slice_columns), profile


def load_selected(
    store: Store,
    namespace: str,
    name: str,
    version: str,
    slice_columns: list[str],
    field_data: dict[str, Any],
) -> tuple[TrainingData, bytes, dict[str, Any]]:
    """For a run with ``field_data`` (its spec's ``fieldData``, camelCase JSON): the arrays
    and the reference profile (JSON bytes) by the selection rule of
    :mod:`edgeops.training.selection`, and the selection's summary for the results.

    A baseline version that is gone (retention deleted it) leaves no way to tell field
    rows apart: the run trains as without ``field_data`` on all rows and the version's own
    profile, and the summary says so (``baselineMissing``). Other store errors raise."""
    schema, splits = read_version(store, namespace, name, version)
    try:
        _, old = read_version(store, namespace, name, str(field_data["baselineVersion"]))
    except ObjectMissingError as error:
        print(f"baseline version unreadable ({error}): training on all rows", flush=True)
        profile = store.get_bytes(layout.profile_key(namespace, name, version))
        summary: dict[str, Any] = {"referenceFrom": "all", "baselineMissing": True}
        return to_arrays(schema, splits, slice_columns), profile, summary
    chosen = selection.select(
        splits,
        [r for rows in old.values() for r in rows],
        min_reference_rows=int(field_data.get("minReferenceRows", 50)),
        weight_share=float(field_data.get("weightShare", 0.5)),
        max_repeats=int(field_data.get("maxRepeats", 10)),
    )
    counts = {s: len(rows) for s, rows in splits.items()}
    document = build_profile(chosen.reference, DatasetSchema.model_validate(schema), counts)
    summary = chosen.summary()
    print(f"field data since the drift: {json.dumps(summary, sort_keys=True)}", flush=True)
    return to_arrays(schema, chosen.splits, slice_columns), sorted_json(document), summary


def to_arrays(
    schema: dict[str, Any], splits: dict[str, list[dict[str, Any]]], slice_columns: list[str]
) -> TrainingData:
    features = [f for f in schema["features"] if f["name"] != schema.get("label")]
    non_numeric = [f["name"] for f in features if f.get("type", "float") not in NUMERIC_TYPES]
    if non_numeric:
        raise DatasetFormatError(
            f"features {non_numeric} are not numeric; the built-in trainer takes float, int "
            "and bool features (encode categories in the Dataset or use a custom trainer image)"
        )
    names = [f["name"] for f in features]
    label = schema["label"]
    if not splits["train"]:
        raise DatasetFormatError("the train split is empty")
    # Classes by value, as ingestion writes them (edgeops.datasets.cleaning.category), so a
    # version published before labels were normalised ("0" and "0.0") still has 2 classes.
    classes = sorted({category(r[label]) for rows in splits.values() for r in rows})
    if len(classes) < 2:
        raise DatasetFormatError(f"label {label!r} has {len(classes)} class(es); need 2 or more")
    index = {c: i for i, c in enumerate(classes)}

    def matrix(rows: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
        x = np.array([[_number(r.get(n)) for n in names] for r in rows], dtype=np.float32).reshape(
            len(rows), len(names)
        )
        return x

    x_train = matrix(splits["train"])
    # Missing values (allowed by the Dataset's rules) become the train mean of the column.
    means = np.nan_to_num(np.nanmean(x_train, axis=0)) if len(x_train) else np.zeros(len(names))

    def filled(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.where(np.isnan(x), means, x).astype(np.float32)

    def labels(rows: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
        return np.array([index[category(r[label])] for r in rows], dtype=np.int64)

    test = splits["test"]
    missing = [c for c in slice_columns if test and c not in test[0]]
    if missing:
        raise DatasetFormatError(f"slice columns {missing} are not in the dataset")
    return TrainingData(
        x_train=filled(x_train),
        y_train=labels(splits["train"]),
        x_val=filled(matrix(splits["validation"])),
        y_val=labels(splits["validation"]),
        x_test=filled(matrix(test)),
        y_test=labels(test),
        classes=classes,
        feature_names=names,
        test_slices={c: np.array([category(r.get(c)) for r in test]) for c in slice_columns},
    )


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return float(value)
