"""Issue 16, items 1-6, through a real Dataset on the devcluster (MinIO, the operator):
a cell over the csv field limit, a declared windows-1252 source, a repeated column,
labels written 0.0/1.0 and 0/1, integers beyond 2**53 and the country code NA all reach
the version and its status with the exact counts, reasons and values."""

from __future__ import annotations

import json

import pytest
from minio import Minio

from edgeops.datasets import layout
from edgeops.datasets.manifest import parse_manifest
from tests.conftest import Cluster, wait_for
from tests.integration.test_datasets import _apply, _condition, _put, _status, s3

pytestmark = pytest.mark.integration
__all__ = ["s3"]  # the module-scoped MinIO client fixture

BIG = 2**60  # far beyond 2**53: a float would merge neighbouring values
SCHEMA = {
    "features": [
        {"name": "ts", "type": "int"},
        {"name": "x", "type": "float"},
        {"name": "country", "type": "string"},
    ],
    "label": "label",
    "rowKey": ["ts"],
}


def _site_a() -> bytes:
    """100 rows, UTF-8; row 11 holds a 140,000-character cell; labels 0.0/1.0."""
    rows = [
        f"{BIG + i},{i / 2},{'NA' if i % 2 else 'DE'},{float(i % 2)}\r\n" for i in range(1, 101)
    ]
    rows[10] = f"{BIG + 11},{'9' * 140_000},NA,1.0\r\n"
    return ("ts,x,country,label\r\n" + "".join(rows)).encode()


def test_faulty_files_are_counted_and_named_and_values_stay_exact(
    cluster: Cluster, s3: Minio
) -> None:
    ns = cluster.namespace("ds-faults")
    _put(s3, f"raw/{ns}/utf8/site-a.csv", _site_a())
    # The same column twice: refused whole, its 5 rows counted.
    twice = "ts,x,x ,label\n" + "".join(f"{i},1,2,0\n" for i in range(5))
    _put(s3, f"raw/{ns}/utf8/twice.csv", twice.encode())
    site_b = "ts,x,country,label\n" + "".join(
        f"{BIG + 1000 + i},{i},Åland,{i % 2}\n" for i in range(10)
    )
    _put(s3, f"raw/{ns}/cp1252/site-b.csv", site_b.encode("windows-1252"))
    _apply(
        cluster,
        ns,
        "faults",
        {
            "schema": SCHEMA,
            "sources": [
                {"s3": {"prefix": f"raw/{ns}/utf8/"}},
                {"s3": {"prefix": f"raw/{ns}/cp1252/"}, "encoding": "windows-1252"},
            ],
            "validation": {"maxRejectedFraction": 0.1},
        },
    )
    status = wait_for(
        lambda: (s := _status(cluster, ns, "faults")).get("latestVersion") and s,
        60,
        "a version of the faulty files",
        interval=0.3,
    )
    twice_uri = f"s3://edgeops/raw/{ns}/utf8/twice.csv"
    assert status["rejected"] == {
        "total": 6,  # the over-long row and the 5 rows of twice.csv
        "byReason": {"Malformed": 6},
        "unread": [
            {
                "source": twice_uri,
                "rows": 5,
                "reason": "Malformed",
                "detail": "csv file: column 'x' appears 2 times in the header (columns 2, 3); "
                "the file is refused",
            }
        ],
    }
    version = status["versions"][-1]
    assert (version["sampleCount"], version["rejectedCount"]) == (109, 6)
    assert version["classBalance"] == {"0": 55, "1": 54}  # 0.0/1.0 and 0/1: two classes
    ready = _condition(status, "Ready")["message"]
    assert "109 rows accepted, 6 rejected (Malformed: 6)" in ready
    assert f"not read: {twice_uri}: 5 rows" in ready
    # The version's rows: every integer exact, NA a country, the declared encoding decoded.
    store = cluster.store()
    manifest = store.get_bytes(layout.manifest_key(ns, "faults", status["latestVersion"]))
    rows = [
        json.loads(line)
        for entry in parse_manifest(manifest)
        if entry.key.startswith("data/")
        for line in store.get_blob(entry.sha256).splitlines()
    ]
    assert sorted(r["ts"] for r in rows) == [
        *(BIG + i for i in range(1, 101) if i != 11),
        *(BIG + 1000 + i for i in range(10)),
    ]
    countries = [r["country"] for r in rows]
    assert (countries.count("NA"), countries.count("DE"), countries.count("Åland")) == (49, 50, 10)
