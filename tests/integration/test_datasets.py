"""Datasets on the devcluster with the real S3 server: versions from every source type,
continuous collection, rejection, a crash mid-ingest and an S3 outage."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from edgeops.devcluster import processes
from edgeops.store import ArtifactStore, IntegrityError
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

HEADER = "t,ax,ay,label,site\n"
ROWS = [
    f"{i},{(i * 37) % 50 / 10:.1f},{(i * 11) % 30 / 10:.1f},{'walk' if i % 3 else 'run'},"
    f"{'a' if i % 2 else 'b'}\n"
    for i in range(40)
]
SCHEMA = {
    "features": [
        {"name": "ax", "type": "float", "min": -20, "max": 20},
        {"name": "ay", "type": "float", "min": -20, "max": 20},
    ],
    "label": "label",
    "sliceColumns": ["site"],
    "rowKey": ["t"],
}
GOVERNANCE = {"classification": "internal", "retentionDays": 30, "region": "eu-central-1"}


def _csv(rows: list[str]) -> bytes:
    return (HEADER + "".join(rows)).encode()


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> Minio:
    env = cluster.env
    return Minio(
        env["EDGEOPS_S3_ENDPOINT"].removeprefix("http://"),
        access_key=env["EDGEOPS_S3_ACCESS_KEY"],
        secret_key=env["EDGEOPS_S3_SECRET_KEY"],
        secure=False,
    )


@pytest.fixture(scope="module")
def store(cluster: Cluster) -> ArtifactStore:
    return cluster.store()


@pytest.fixture(scope="module")
def http_files() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()


def _put(s3: Minio, key: str, data: bytes) -> None:
    s3.put_object("edgeops", key, io.BytesIO(data), len(data))


def _apply(cluster: Cluster, ns: str, name: str, spec: dict[str, Any], **meta: Any) -> None:
    body = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": {"governance": GOVERNANCE, **spec},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def _status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "dataset", name, "-n", ns, "-o", "json", check=False)
    return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _version(cluster: Cluster, ns: str, name: str, other_than: str | None = None) -> str:
    def ready() -> str | None:
        latest = _status(cluster, ns, name).get("latestVersion")
        return latest if latest and latest != other_than else None

    return str(wait_for(ready, 60, f"a new version of {ns}/{name}", interval=0.3))


def _manifests(s3: Minio, ns: str, name: str) -> list[str]:
    prefix = f"datasets/{ns}/{name}/versions/"
    objects = s3.list_objects("edgeops", prefix=prefix, recursive=True)
    return sorted(
        str(o.object_name).split("/")[-2]
        for o in objects
        if str(o.object_name).endswith("/manifest.json")
    )


def test_store_blobs_are_content_addressed_verified_and_presignable(
    store: ArtifactStore, s3: Minio, tmp_path: Path
) -> None:
    ref = store.put_blob(b"hello edge")
    assert store.put_blob(b"hello edge") == ref  # idempotent
    assert store.get_blob(ref.sha256) == b"hello edge"
    url = store.presigned_get(ref.key)
    assert httpx.get(url, timeout=10).content == b"hello edge"
    put_url = store.presigned_put("uploads/from-device.bin")
    assert httpx.put(put_url, content=b"from a device", timeout=10).status_code == 200
    assert store.get_bytes("uploads/from-device.bin") == b"from a device"
    # A large file goes up in parts and comes back verified.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024) * 20)
    big_ref = store.put_blob_file(big)
    copy = tmp_path / "copy.bin"
    store.download_blob(big_ref.sha256, copy)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == big_ref.sha256
    # Tampering with a blob is detected on read.
    _put(s3, ref.key, b"hello EDGE")
    with pytest.raises(IntegrityError):
        store.get_blob(ref.sha256)
    with pytest.raises(IntegrityError):
        store.download_blob(ref.sha256, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()


def test_every_source_type_gives_a_stable_content_version(
    cluster: Cluster, s3: Minio, http_files: tuple[str, dict[str, bytes]]
) -> None:
    ns = cluster.namespace("ds-src")
    base_url, files = http_files
    data = _csv(ROWS)
    _put(s3, f"raw/{ns}/imu/part-0.csv", data)
    _put(s3, f"inbox/{ns}/from-inbox/upload-0.csv", data)
    files[f"/{ns}/imu.csv"] = data
    common = {"schema": SCHEMA}
    s3_source = {"s3": {"prefix": f"raw/{ns}/imu/"}}
    _apply(
        cluster, ns, "from-s3", {**common, "sources": [s3_source], "collection": {"schedule": "2s"}}
    )
    _apply(cluster, ns, "from-s3-again", {**common, "sources": [s3_source]})
    _apply(
        cluster,
        ns,
        "from-http",
        {**common, "sources": [{"http": {"url": f"{base_url}/{ns}/imu.csv"}}]},
    )
    _apply(cluster, ns, "from-inbox", {**common, "sources": [{"inbox": {}}]})
    _apply(cluster, ns, "from-builtin", {"sources": [{"builtin": {"name": "basic-motions"}}]})
    versions = {
        n: _version(cluster, ns, n)
        for n in ("from-s3", "from-s3-again", "from-http", "from-inbox", "from-builtin")
    }
    # Same rows, same version id, whichever source and whichever Dataset ingested them.
    assert len({versions[n] for n in ("from-s3", "from-s3-again", "from-http", "from-inbox")}) == 1
    builtin = _status(cluster, ns, "from-builtin")
    assert builtin["versions"][-1]["sampleCount"] == 80
    assert builtin["versions"][-1]["classBalance"] == {
        "Badminton": 20,
        "Running": 20,
        "Standing": 20,
        "Walking": 20,
    }
    status = _status(cluster, ns, "from-s3")
    assert _condition(status, "Ready")["status"] == "True"
    assert _condition(status, "Validated")["status"] == "True"
    assert _condition(status, "StorageAvailable")["status"] == "True"
    assert "40 rows accepted, 0 rejected" in _condition(status, "Ready")["message"]
    # The profile sits next to the manifest.
    version = status["versions"][-1]
    profile_key = version["profileUri"].removeprefix("s3://edgeops/")
    profile = json.loads(s3.get_object("edgeops", profile_key).read())
    assert sum(profile["features"]["ax"]["counts"]) == 40
    # One changed row: a new version on the next scheduled collection.
    changed = [*ROWS[:-1], "39,1.5,1.5,run,a\n"]
    _put(s3, f"raw/{ns}/imu/part-0.csv", _csv(changed))
    new = _version(cluster, ns, "from-s3", other_than=versions["from-s3"])
    assert new != versions["from-s3"]
    assert [v["id"] for v in _status(cluster, ns, "from-s3")["versions"]] == [
        versions["from-s3"],
        new,
    ]
    events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert "VersionPublished" in events
    assert "Timer 'collect_dataset' succeeded" not in events  # no Event per tick


def test_inbox_collection_and_malformed_files(cluster: Cluster, s3: Minio) -> None:
    ns = cluster.namespace("ds-inbox")
    _put(s3, f"inbox/{ns}/fleet/batch-0.csv", _csv(ROWS[:20]))
    _apply(
        cluster,
        ns,
        "fleet",
        {"schema": SCHEMA, "sources": [{"inbox": {}}], "collection": {"schedule": "3s"}},
    )
    first = _version(cluster, ns, "fleet")
    started = _status(cluster, ns, "fleet")["collection"]["number"]
    _put(s3, f"inbox/{ns}/fleet/batch-1.csv", _csv(ROWS[20:]))
    second = _version(cluster, ns, "fleet", other_than=first)
    # Picked up by the next scheduled collection (or the one after, when one was already
    # reading the inbox as the object landed), not left for later: counted in collections,
    # not seconds, so a loaded machine's slow pod starts do not matter.
    assert _status(cluster, ns, "fleet")["collection"]["number"] - started <= 2
    assert _status(cluster, ns, "fleet")["versions"][-1]["sampleCount"] == 40
    # A malformed upload: rejected rows are counted by reason, the good version stays.
    bad = HEADER + "".join(f"{100 + i},not-a-number,1,walk,a\n" for i in range(6)) + "1,2\n"
    _put(s3, f"inbox/{ns}/fleet/batch-2.csv", bad.encode())

    def rejected() -> dict[str, Any] | None:
        status = _status(cluster, ns, "fleet")
        return status if (status.get("rejected") or {}).get("total") else None

    status = wait_for(rejected, 30, "rejected rows in status", interval=0.3)
    assert status["rejected"]["byReason"] == {"Malformed": 1, "TypeMismatch": 6}
    assert status["latestVersion"] == second
    ready, validated = _condition(status, "Ready"), _condition(status, "Validated")
    assert (ready["status"], validated["status"]) == ("True", "False")
    assert validated["reason"] == "TooManyRejected"
    assert "7 of 47 rows rejected" in validated["message"]
    assert "not-a-number" not in json.dumps(status)  # values never reach status
    assert _manifests(s3, ns, "fleet") == sorted([first, second])


def _operator_pid(cluster: Cluster) -> tuple[int, str]:
    component = json.loads(cluster.dev.state_file.read_text())["components"]["operator"]
    return int(component["pid"]), str(component["argv0"])


def test_operator_killed_mid_ingest_leaves_no_partial_version(cluster: Cluster, s3: Minio) -> None:
    ns = cluster.namespace("ds-crash")
    _put(s3, f"inbox/{ns}/crashy/batch-0.csv", _csv(ROWS))
    _apply(
        cluster,
        ns,
        "crashy",
        {"schema": SCHEMA, "sources": [{"inbox": {}}]},
        # The collection Job outlives the operator: it publishes this long after staging,
        # whatever the annotation says by then (long enough for the checks below).
        annotations={"edgeops.dev/ingest-delay-seconds": "20"},
    )
    staging = f"datasets/{ns}/crashy/staging/"

    def staged() -> list[str]:
        return [str(o.object_name) for o in s3.list_objects("edgeops", staging, recursive=True)]

    marker = wait_for(staged, 60, "the ingestion to stage its data", interval=0.3)[0]
    pid, argv0 = _operator_pid(cluster)
    os.killpg(pid, signal.SIGKILL)  # a crash, not a graceful shutdown
    wait_for(lambda: not processes.alive(pid, argv0), 10, "the operator to die", interval=0.3)
    assert _manifests(s3, ns, "crashy") == []
    assert not _status(cluster, ns, "crashy").get("latestVersion")
    cluster.kubectl(
        "annotate",
        "dataset",
        "crashy",
        "-n",
        ns,
        "--overwrite",
        "edgeops.dev/ingest-delay-seconds=0",
    )
    cluster.dev.up(with_operator=True, report=lambda _m: None)
    version = _version(cluster, ns, "crashy")
    assert marker.endswith(f"/{version}.json")  # the same content, the same version
    assert _manifests(s3, ns, "crashy") == [version]
    assert staged() == []


def test_a_collection_job_killed_mid_way_publishes_nothing_and_the_next_gives_the_same_version(
    cluster: Cluster, s3: Minio
) -> None:
    """Ingestion is a Job: its pod deleted between the data and the manifest writes (no
    pod retry: backoffLimit 0) leaves no version; the operator's next Job publishes the
    version the killed one had staged."""
    ns = cluster.namespace("ds-jobkill")
    _put(s3, f"inbox/{ns}/killed/batch-0.csv", _csv(ROWS))
    _apply(
        cluster,
        ns,
        "killed",
        {"schema": SCHEMA, "sources": [{"inbox": {}}], "collection": {"backoffLimit": 0}},
        annotations={"edgeops.dev/ingest-delay-seconds": "60"},
    )
    staging = f"datasets/{ns}/killed/staging/"

    def staged() -> list[str]:
        return [str(o.object_name) for o in s3.list_objects("edgeops", staging, recursive=True)]

    marker = wait_for(staged, 60, "the collection Job to stage its data", interval=0.3)[0]
    first = _status(cluster, ns, "killed").get("collection") or {}
    assert first.get("job") == "killed-collect-1", first
    # The delay is read when a Job is created: the next one publishes at once.
    cluster.kubectl(
        "annotate",
        "dataset",
        "killed",
        "-n",
        ns,
        "--overwrite",
        "edgeops.dev/ingest-delay-seconds=0",
    )
    cluster.kubectl("delete", "pod", "-n", ns, "-l", "job-name=killed-collect-1", "--wait=false")

    def failed() -> dict[str, Any] | None:
        found = _status(cluster, ns, "killed").get("collection") or {}
        return (
            found
            if found.get("job") == "killed-collect-1" and found.get("phase") == "Failed"
            else None
        )

    verdict = wait_for(failed, 60, "the killed collection to be reported", interval=0.3)
    assert verdict["reason"] == "CollectionJobFailed", verdict
    assert "nothing it did not finish was published" in verdict["message"]
    assert _manifests(s3, ns, "killed") == []
    assert not _status(cluster, ns, "killed").get("latestVersion")
    version = _version(cluster, ns, "killed")
    assert marker.endswith(f"/{version}.json")  # the same content, the same version
    assert _manifests(s3, ns, "killed") == [version]
    assert staged() == []
    last = _status(cluster, ns, "killed")["collection"]
    assert (last["job"], last["phase"]) == ("killed-collect-2", "Succeeded"), last
    events = {e["reason"] for e in cluster.events(ns, "killed")}
    assert {"CollectionStarted", "CollectionJobFailed", "VersionPublished"} <= events, events


def test_s3_outage_sets_storage_unavailable_and_recovers(cluster: Cluster, s3: Minio) -> None:
    ns = cluster.namespace("ds-outage")
    _put(s3, f"inbox/{ns}/steady/batch-0.csv", _csv(ROWS[:20]))
    _apply(
        cluster,
        ns,
        "steady",
        {"schema": SCHEMA, "sources": [{"inbox": {}}], "collection": {"schedule": "2s"}},
    )
    first = _version(cluster, ns, "steady")
    component = json.loads(cluster.dev.state_file.read_text())["components"]["s3"]
    assert processes.stop(int(component["pid"]), str(component["argv0"]))
    try:
        down = wait_for(
            lambda: (
                _condition(_status(cluster, ns, "steady"), "StorageAvailable").get("status")
                == "False"
            ),
            60,
            "StorageAvailable=False",
            interval=0.3,
        )
        assert down
        status = _status(cluster, ns, "steady")
        assert status["latestVersion"] == first  # nothing forgotten while S3 is away
        assert _condition(status, "StorageAvailable")["reason"] == "StorageUnavailable"
    finally:
        cluster.dev.up(with_operator=True, report=lambda _m: None)
    wait_for(
        lambda: (
            _condition(_status(cluster, ns, "steady"), "StorageAvailable").get("status") == "True"
        ),
        60,
        "StorageAvailable=True",
        interval=0.3,
    )
    assert _manifests(s3, ns, "steady") == [first]
    _put(s3, f"inbox/{ns}/steady/batch-1.csv", _csv(ROWS[20:]))
    _version(cluster, ns, "steady", other_than=first)
    status = _status(cluster, ns, "steady")
    assert status["versions"][-1]["sampleCount"] == 40
    assert status["versions"][0]["id"] == first
