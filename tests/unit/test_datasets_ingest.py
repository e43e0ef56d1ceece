"""Collections end to end against an in-memory store: versioning, crash safety,
rejection limits, splits, profiles and retention."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from edgeops.api import DatasetSpec
from edgeops.datasets import layout
from edgeops.datasets.ingest import Outcome, collect
from edgeops.datasets.manifest import ManifestEntry, parse_manifest, version_id
from edgeops.datasets.retention import collect_garbage, enforce_retention
from edgeops.datasets.split import assign
from edgeops.store import ObjectMissingError
from edgeops.store.artifacts import BlobRef, ObjectInfo, blob_key

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
NS, NAME = "team", "imu"


class MemoryStore:
    """Dict-backed stand-in for ArtifactStore (same keys, same semantics)."""

    bucket = "edgeops"

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, datetime]] = {}
        self.clock = NOW

    def ping(self) -> None:
        pass

    def put_blob(self, data: bytes) -> BlobRef:
        ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
        self.objects.setdefault(ref.key, (data, self.clock))
        return ref

    def get_blob(self, sha256: str) -> bytes:
        return self.get_bytes(blob_key(sha256))

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[key] = (data, self.clock)

    def get_bytes(self, key: str, bucket: str | None = None) -> bytes:
        if key not in self.objects:
            raise ObjectMissingError(key)
        return self.objects[key][0]

    def put_json(self, key: str, document: Any) -> None:
        self.put_bytes(key, json.dumps(document).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def stat(self, key: str, bucket: str | None = None) -> ObjectInfo | None:
        if key not in self.objects:
            return None
        data, when = self.objects[key]
        return ObjectInfo(key, len(data), hashlib.md5(data).hexdigest(), when)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str, bucket: str | None = None) -> list[ObjectInfo]:
        return [i for k in sorted(self.objects) if k.startswith(prefix) if (i := self.stat(k))]

    def delete(self, keys: Any) -> int:
        keys = list(keys)
        for key in keys:
            self.objects.pop(key, None)
        return len(keys)


HEADER = "t,ax,label,site\n"
ROWS = [f"{i},{i * 0.5},{'walk' if i % 3 else 'run'},{'a' if i % 2 else 'b'}\n" for i in range(60)]


#: An inbox Dataset over HEADER/ROWS.
SPEC: dict[str, Any] = {
    "sources": [{"inbox": {}}],
    "schema": {
        "features": [{"name": "ax", "type": "float", "min": -100, "max": 100}],
        "label": "label",
        "sliceColumns": ["site"],
        "rowKey": ["t"],
    },
    "governance": {"classification": "internal", "retentionDays": 30},
    "validation": {"maxRejectedFraction": 0.1},
}


def _spec(**overrides: Any) -> DatasetSpec:
    return DatasetSpec.model_validate({**SPEC, **overrides})


def _drop(store: MemoryStore, name: str, lines: list[str]) -> None:
    store.put_bytes(layout.inbox_prefix(NS, NAME) + name, (HEADER + "".join(lines)).encode())


def _collect(store: MemoryStore, spec: DatasetSpec | None = None, **kw: Any) -> Any:
    return collect(store, NS, NAME, spec or _spec(), store.clock, **kw)


def _visible_versions(store: MemoryStore) -> list[str]:
    prefix = layout.dataset_prefix(NS, NAME) + "versions/"
    return sorted(
        k.split("/")[-2]
        for k in store.objects
        if k.startswith(prefix) and k.endswith("manifest.json")
    )


def test_version_id_is_the_hash_of_the_manifest_and_reads_back() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)
    result = _collect(store)
    assert result.outcome == Outcome.PUBLISHED
    vid = result.latest["id"]
    manifest = store.get_bytes(layout.manifest_key(NS, NAME, vid))
    assert hashlib.sha256(manifest).hexdigest() == vid
    entries = parse_manifest(manifest)
    assert [e.key for e in entries] == [
        "data/test.jsonl",
        "data/train.jsonl",
        "data/validation.jsonl",
        "schema.json",
    ]
    rows = [
        json.loads(line)
        for e in entries
        if e.key.startswith("data/")
        for line in store.get_blob(e.sha256).splitlines()
    ]
    assert len(rows) == 60 and result.latest["sampleCount"] == 60
    assert result.latest["classBalance"] == {"run": 20, "walk": 40}
    assert result.latest["governance"]["classification"] == "internal"


def test_same_content_gives_same_version_and_one_changed_row_a_new_one() -> None:
    first, second = MemoryStore(), MemoryStore()
    _drop(first, "a.csv", ROWS)
    # Same rows, other file names and order: same content, same version.
    _drop(second, "x.csv", ROWS[30:])
    _drop(second, "y.csv", ROWS[:30])
    v1 = _collect(first).latest["id"]
    assert _collect(second).latest["id"] == v1
    again = _collect(first, force=True)
    assert again.outcome == Outcome.UNCHANGED and again.latest["id"] == v1
    assert len(again.history) == 1
    changed = [*ROWS[:-1], "59,1.25,run,a\n"]
    _drop(first, "a.csv", changed)
    result = _collect(first)
    assert result.outcome == Outcome.PUBLISHED
    assert result.latest["id"] != v1
    assert [v["id"] for v in result.history] == [v1, result.latest["id"]]


def test_unchanged_sources_short_circuit_without_reading() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)
    _collect(store)
    assert _collect(store).outcome == Outcome.NO_NEW_DATA


def test_new_inbox_files_are_folded_into_a_new_version() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS[:40])
    first = _collect(store).latest
    _drop(store, "b.csv", ROWS[40:])
    second = _collect(store).latest
    assert (first["sampleCount"], second["sampleCount"]) == (40, 60)


def test_crash_before_manifest_leaves_no_visible_version_and_rerun_completes() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)

    def crash(_version: str) -> None:
        raise KeyboardInterrupt("operator killed")

    with pytest.raises(KeyboardInterrupt):
        _collect(store, before_manifest=crash)
    assert _visible_versions(store) == []
    assert not store.exists(layout.index_key(NS, NAME))
    staged = [k for k in store.objects if "/staging/" in k]
    assert len(staged) == 1
    result = _collect(store)
    assert result.outcome == Outcome.PUBLISHED
    assert _visible_versions(store) == [result.latest["id"]]
    assert staged[0].endswith(result.latest["id"] + ".json")
    assert not [k for k in store.objects if "/staging/" in k]


def test_too_many_rejected_keeps_the_previous_version_and_stores_rejects() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)
    good = _collect(store).latest["id"]
    _drop(store, "bad.csv", [f"{i},oops,walk,a\n" for i in range(100, 110)] + ["1,2\n"])
    result = _collect(store)
    assert result.outcome == Outcome.TOO_MANY_REJECTED
    assert result.latest["id"] == good
    assert result.by_reason == {"Malformed": 1, "TypeMismatch": 10}
    assert _visible_versions(store) == [good]
    key = result.rejected_uri.removeprefix("s3://edgeops/")
    rejects = [json.loads(line) for line in store.get_bytes(key).splitlines()]
    assert {r["reason"] for r in rejects} == {"Malformed", "TypeMismatch"}
    assert all(r["source"].endswith("bad.csv") for r in rejects)


def test_rejects_within_the_limit_publish_and_are_kept_next_to_the_version() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", [*ROWS, "999,500,walk,a\n"])
    result = _collect(store)
    assert result.outcome == Outcome.PUBLISHED
    assert result.by_reason == {"OutOfRange": 1}
    vid = result.latest["id"]
    assert store.exists(layout.version_rejects_key(NS, NAME, vid))


def test_profile_has_quantile_histograms_labels_slices_and_splits() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)
    vid = _collect(store).latest["id"]
    profile = store.get_json(layout.profile_key(NS, NAME, vid))
    ax = profile["features"]["ax"]
    assert ax["kind"] == "numeric" and sum(ax["counts"]) == 60
    # Format 2: 10 equal-mass bins inside the reference range, empty graded bins beyond it,
    # bin centers and a threshold calibration per feature.
    assert profile["format"] == 2
    inside = [e for e in ax["edges"] if ax["min"] < e <= ax["max"]]
    assert len(inside) == 9
    assert len(ax["centers"]) == len(ax["counts"])
    assert ax["counts"][0] == 0 and ax["counts"][-1] == 0
    assert ax["calibration"]["method"] == "chunked-reference-design-effect"
    assert profile["label"]["distribution"] == {"run": 20, "walk": 40}
    assert profile["slices"]["site"] == {"a": 30, "b": 30}
    assert sum(profile["splits"].values()) == 60 and profile["splits"]["train"] > 30


def test_split_depends_only_on_the_row_key() -> None:
    spec = _spec()
    row = {"t": "7", "ax": 3.5, "label": "walk", "site": "a"}
    changed = {**row, "ax": 4.0}
    assert assign(row, ["t"], spec.split) == assign(changed, ["t"], spec.split)
    counts = {"train": 0, "validation": 0, "test": 0}
    for i in range(2000):
        counts[assign({"t": str(i)}, ["t"], spec.split)] += 1
    assert 1500 < counts["train"] < 1700 and 150 < counts["test"] < 250


def test_manifest_order_does_not_change_the_version_id() -> None:
    a, b = ManifestEntry.of("a", b"1"), ManifestEntry.of("b", b"2")
    assert version_id([a, b]) == version_id([b, a])
    assert version_id([a]) != version_id([ManifestEntry.of("a", b"3")])


def test_retention_deletes_expired_versions_and_raw_but_keeps_deployed_and_latest() -> None:
    store = MemoryStore()
    ids = []
    for n in (20, 40, 60):
        store.clock = NOW + timedelta(days=n)
        _drop(store, f"f{n}.csv", ROWS[n - 20 : n])
        ids.append(collect(store, NS, NAME, _spec(), store.clock).latest["id"])
    deployed = {ids[1]}
    now = NOW + timedelta(days=100)
    report = enforce_retention(
        store, NS, NAME, _spec().governance, now, deployed, layout.inbox_prefix(NS, NAME)
    )
    assert report.deleted_versions == [ids[0]]
    assert report.kept_for_models == [ids[1]]
    assert _visible_versions(store) == sorted(ids[1:])
    assert report.deleted_raw == 3  # every inbox file is older than 30 days
    assert [v["id"] for v in store.get_json(layout.index_key(NS, NAME))["versions"]] == ids[1:]
    deleted = collect_garbage(store, now)
    assert deleted > 0
    for vid in ids[1:]:  # surviving versions still read back completely
        for entry in parse_manifest(store.get_bytes(layout.manifest_key(NS, NAME, vid))):
            assert store.get_blob(entry.sha256)


def test_garbage_collection_spares_young_unreferenced_blobs() -> None:
    store = MemoryStore()
    store.put_blob(b"in-flight")
    assert collect_garbage(store, NOW) == 0
    assert collect_garbage(store, NOW + timedelta(hours=2)) == 1


def test_garbage_collection_keeps_blobs_of_training_results_and_model_registries() -> None:
    store = MemoryStore()
    model = store.put_blob(b"onnx model bytes")
    bundle = store.put_blob(b"signed manifest for a target")
    orphan = store.put_blob(b"shard of a crashed ingest")
    store.put_json(
        "runs/ns/run-1/uid/results.json",
        {"artifacts": [{"uri": f"s3://edgeops/{model.key}", "sha256": model.sha256}]},
    )
    store.put_json("models/ns/m/versions/1/bundles.json", {"entries": [bundle.sha256]})
    assert collect_garbage(store, NOW + timedelta(hours=2)) == 1
    assert store.get_blob(model.sha256) == b"onnx model bytes"
    assert store.get_blob(bundle.sha256) == b"signed manifest for a target"
    assert not store.exists(orphan.key)


def test_garbage_collection_keeps_blobs_an_unfinished_ingest_will_reuse() -> None:
    store = MemoryStore()
    shard = store.put_blob(b"an old shard, identical to one being published again")
    # An ingest has written its staging marker but not yet its manifest.
    store.put_json(
        layout.staging_key(NS, NAME, "v" * 64), {"version": "v" * 64, "blobs": [shard.sha256]}
    )
    assert collect_garbage(store, NOW + timedelta(hours=2)) == 0
    assert store.exists(shard.key)


def _jsonl_spec(**overrides: Any) -> DatasetSpec:
    return _spec(format="jsonl", **overrides)


def _drop_jsonl(store: MemoryStore, name: str, lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    store.put_bytes(layout.inbox_prefix(NS, NAME) + name, data)


GOOD_JSONL = [
    json.dumps({"t": i, "ax": i * 0.5, "label": "walk" if i % 3 else "run", "site": "a"})
    for i in range(60)
]


def test_non_finite_values_are_rejected_with_a_reason_and_their_rows_stored() -> None:
    store = MemoryStore()
    bad = [
        '{"t": 100, "ax": Infinity, "label": "walk", "site": "a"}',
        '{"t": 101, "ax": -Infinity, "label": "walk", "site": "a"}',
        '{"t": 102, "ax": NaN, "label": "walk", "site": "a"}',
        '{"t": 103, "ax": "oops", "label": "walk", "site": "a", "note": NaN}',
        "[Infinity]",
    ]
    _drop_jsonl(store, "a.jsonl", [*GOOD_JSONL, *bad])
    result = _collect(store, _jsonl_spec())
    assert result.outcome == Outcome.PUBLISHED
    assert result.accepted == 60 and result.rejected == 5
    assert result.by_reason == {
        "Malformed": 1,
        "MissingValue": 1,
        "NotFinite": 2,
        "TypeMismatch": 1,
    }
    key = result.rejected_uri.removeprefix("s3://edgeops/")
    rejects = [json.loads(line) for line in store.get_bytes(key).splitlines()]
    rows = {r["line"]: r["row"] for r in rejects}
    assert rows[61]["ax"] == "Infinity" and rows[62]["ax"] == "-Infinity"
    assert rows[63]["ax"] == "NaN" and rows[64]["note"] == "NaN"
    assert rows[65] == {"_raw": ["Infinity"]}
    assert _visible_versions(store) == [result.latest["id"]]


def test_nan_in_a_binary_format_does_not_stop_the_collection() -> None:
    store = MemoryStore()
    npz = io.BytesIO()
    ax = np.array([i * 0.5 for i in range(40)] + [np.nan])
    np.savez(
        npz,
        t=np.arange(41),
        ax=ax,
        label=np.array(["walk"] * 41),
        site=np.array(["a"] * 41),
    )
    store.put_bytes(layout.inbox_prefix(NS, NAME) + "a.npz", npz.getvalue())
    result = _collect(store, _spec(format="npz"))
    assert result.outcome == Outcome.PUBLISHED
    assert (result.accepted, result.by_reason) == (40, {"MissingValue": 1})
    key = result.rejected_uri.removeprefix("s3://edgeops/")
    (reject,) = [json.loads(line) for line in store.get_bytes(key).splitlines()]
    assert reject["row"]["ax"] == "NaN"


def test_unchanged_sources_keep_reporting_too_many_rejected() -> None:
    store = MemoryStore()
    _drop(store, "bad.csv", [*ROWS[:20], *(f"{i},oops,walk,a\n" for i in range(100, 110))])
    first = _collect(store)
    again = _collect(store)
    assert first.outcome == again.outcome == Outcome.TOO_MANY_REJECTED
    assert (again.repeated, first.repeated) == (True, False)
    assert again.summary() == first.summary()
    assert again.latest is None and not again.new_version


def test_changed_governance_is_recorded_on_the_existing_version() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)
    first = _collect(store)
    vid = first.latest["id"]
    governance = {
        "classification": "personal",
        "legalBasis": "consent",
        "region": "eu-central-1",
        "retentionDays": 7,
    }
    result = _collect(store, _spec(governance=governance))
    assert result.outcome == Outcome.UNCHANGED
    assert result.latest["id"] == vid and _visible_versions(store) == [vid]
    info = store.get_json(layout.version_info_key(NS, NAME, vid))
    assert info["governance"] == governance
    assert info["created"] == first.latest["created"]
    (entry,) = store.get_json(layout.index_key(NS, NAME))["versions"]
    assert entry["id"] == vid and entry["governance"] == governance


class _CrashAfterManifest(MemoryStore):
    """Dies right after writing a manifest: before the staging marker and the index."""

    crash = True

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> None:
        super().put_bytes(key, data, content_type)
        if self.crash and key.endswith("/manifest.json"):
            raise KeyboardInterrupt("operator killed")


def test_crash_after_manifest_completes_and_removes_the_staging_marker() -> None:
    store = _CrashAfterManifest()
    _drop(store, "a.csv", ROWS)
    with pytest.raises(KeyboardInterrupt):
        _collect(store)
    vid = _visible_versions(store)[0]
    assert store.exists(layout.staging_key(NS, NAME, vid))
    assert not store.exists(layout.index_key(NS, NAME))
    store.crash = False
    result = _collect(store)
    assert result.outcome == Outcome.PUBLISHED and result.latest["id"] == vid
    assert not [k for k in store.objects if "/staging/" in k]
    assert [v["id"] for v in store.get_json(layout.index_key(NS, NAME))["versions"]] == [vid]
