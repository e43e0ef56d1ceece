"""Dataset collection at scale: rows from S3 to a first version, in a collection Job.

    PYTHONPATH=operator .venv/bin/python -P benchmarks/datasets.py \
        [--rows 500000,2000000] [--formats csv,parquet]

Starts its own devcluster (``--home``, default /tmp/bench-datasets) with the operator and the
local node, and for each format (CSV, Parquet) and row count: writes a file of N rows (a
row key, 8 float features, a label) to an S3 prefix, applies a Dataset reading it, and
measures until ``status.latestVersion`` is set. Then it puts one new 1-row object next to it
(``onNewObjects``) and measures the time to the next version (collection is not incremental
yet: that one reads the whole history again). The collector streams (bounded memory, see
:mod:`edgeops.datasets.stream`), so its peak RSS should not grow with the file.

Baseline, measured in the same run on the same bytes: ``pyarrow`` reading the file (CSV
reader or Parquet) plus SHA-256 of its bytes. Printed per case: rows/s of the collection and
its ratio to the baseline, the peak RSS of the collector process (VmHWM of the Job's pod
process on the local node), and the operator's RSS before, at most during, and after
(ingestion runs in the Job, so the operator's memory should not move with the data).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from edgeops.devcluster.cluster import DevCluster

REPO = Path(__file__).resolve().parents[1]
# The devcluster handle and wait helper of the integration tests.
sys.path.insert(0, str(REPO))

from tests.conftest import Cluster, wait_for  # noqa: E402

FEATURES = [f"f{i}" for i in range(8)]
MIB = 1 << 20
#: The operator's (and so the collection Job's) source limits for this run: the defaults
#: (64 MiB, 200,000 rows per object) are below the sizes measured here.
LIMITS = {
    "EDGEOPS_SOURCE_MAX_OBJECT_MIB": "1024",
    "EDGEOPS_SOURCE_MAX_DECOMPRESSED_MIB": "4096",
    "EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT": "10000000",
}


def table_of(rows: int, seed: int = 0) -> pa.Table:
    """``rows`` rows: ``t`` (row key), 8 float features in [-10, 10), a 4-class label."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {"t": np.arange(rows, dtype=np.int64)}
    for name in FEATURES:
        columns[name] = np.round(rng.uniform(-10, 10, rows), 4)
    columns["label"] = np.array(["walk", "run", "sit", "stand"])[rng.integers(0, 4, rows)]
    return pa.table(columns)


def encode(table: pa.Table, fmt: str) -> bytes:
    sink = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, sink)
    else:
        pq.write_table(table, sink)
    return sink.getvalue()


def baseline_seconds(data: bytes, fmt: str) -> float:
    """pyarrow read + SHA-256 of the same bytes: the floor of any collection."""
    started = time.perf_counter()
    if fmt == "csv":
        pacsv.read_csv(io.BytesIO(data))
    else:
        pq.read_table(io.BytesIO(data))
    hashlib.sha256(data).hexdigest()
    return time.perf_counter() - started


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _collectors(dataset: str) -> list[int]:
    """PIDs of collector processes for ``dataset`` (its name is in the config argument)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"edgeops.datasets" in argv and any(f'"name":"{dataset}"'.encode() in a for a in argv):
            found.append(int(proc.name))
    return found


class Sampler(threading.Thread):
    """Samples the operator's RSS and the collectors' peak RSS every 0.1 s."""

    def __init__(self, operator_pid: int, dataset: str) -> None:
        super().__init__(daemon=True)
        self.operator_pid, self.dataset = operator_pid, dataset
        self.operator_max_kb = 0
        self.collector_peak_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = _status_kb(self.operator_pid, "VmRSS") or 0
            self.operator_max_kb = max(self.operator_max_kb, rss)
            for pid in _collectors(self.dataset):
                peak = _status_kb(pid, "VmHWM") or 0
                self.collector_peak_kb = max(self.collector_peak_kb, peak)
            time.sleep(0.1)


@dataclass
class Case:
    fmt: str
    rows: int
    mib: float
    baseline_s: float
    first_s: float
    next_s: float
    collector_peak_mib: float
    operator_before_mib: float
    operator_max_mib: float
    operator_after_mib: float

    def line(self) -> str:
        base_rate = self.rows / self.baseline_s
        rate = self.rows / self.first_s
        return (
            f"| {self.fmt} | {self.rows:,} | {self.mib:.1f} | {self.baseline_s:.2f} "
            f"| {self.first_s:.1f} | {rate:,.0f} | {rate / base_rate:.3f}x "
            f"| {self.next_s:.1f} | {self.collector_peak_mib:.0f} "
            f"| {self.operator_before_mib:.0f} / {self.operator_max_mib:.0f} / "
            f"{self.operator_after_mib:.0f} |"
        )


HEAD = (
    "| format | rows | MiB | pyarrow read + sha256 s | first version s | rows/s | vs baseline "
    "| +1 object -> next version s | collector peak RSS MiB "
    "| operator RSS MiB before / max / after |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _operator_pid(dev: DevCluster) -> int:
    return int(json.loads(dev.state_file.read_text())["components"]["operator"]["pid"])


def _latest(cluster: Cluster, ns: str, name: str) -> str | None:
    found = cluster.get("dataset", name, "-n", ns)
    return (found.get("status") or {}).get("latestVersion")


def run_case(cluster: Cluster, fmt: str, rows: int) -> Case:
    store = cluster.store()
    data = encode(table_of(rows), fmt)
    baseline = min(baseline_seconds(data, fmt) for _ in range(2))
    ns = cluster.namespace("bench-ds")
    name = f"{fmt}-{rows}"
    prefix = f"bench/{uuid.uuid4().hex[:8]}/"
    store.put_bytes(f"{prefix}part-0.{fmt}", data)
    dataset = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "governance": {"classification": "internal"},
            "format": fmt,
            "schema": {
                "features": [{"name": f, "type": "float"} for f in FEATURES],
                "label": "label",
                "rowKey": ["t"],
            },
            "sources": [{"s3": {"prefix": prefix}}],
            "collection": {"onNewObjects": True},
        },
    }
    pid = _operator_pid(cluster.dev)
    before = (_status_kb(pid, "VmRSS") or 0) / 1024
    sampler = Sampler(pid, name)
    sampler.start()
    started = time.perf_counter()
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dataset))
    first = wait_for(lambda: _latest(cluster, ns, name), 3600, f"{name}: a first version", 0.2)
    first_s = time.perf_counter() - started
    store.put_bytes(f"{prefix}part-1.{fmt}", encode(table_of(1, seed=1).set_column(
        0, "t", pa.array([rows], pa.int64())), fmt))  # fmt: skip
    started = time.perf_counter()
    wait_for(
        lambda: (_latest(cluster, ns, name) or first) != first,
        3600,
        f"{name}: the next version",
        0.2,
    )
    next_s = time.perf_counter() - started
    time.sleep(1.0)
    sampler.stop.set()
    sampler.join()
    after = (_status_kb(pid, "VmRSS") or 0) / 1024
    cluster.kubectl("delete", "dataset", name, "-n", ns, "--wait=false")
    return Case(
        fmt,
        rows,
        len(data) / MIB,
        baseline,
        first_s,
        next_s,
        sampler.collector_peak_kb / 1024,
        before,
        sampler.operator_max_kb / 1024,
        after,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default="500000,2000000", help="comma-separated row counts (sizes to run)"
    )
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--home", type=Path, default=Path("/tmp/bench-datasets"))
    parser.add_argument("--name", default="bench")
    parser.add_argument("--keep", action="store_true", help="leave the devcluster running")
    args = parser.parse_args()
    os.environ.update(LIMITS)  # the operator inherits them, and passes them to its Jobs
    dev = DevCluster(name=args.name, home=args.home)
    dev.up(with_operator=True)
    cluster = Cluster(dev)
    cases: list[Case] = []
    try:
        for rows in (int(r) for r in args.rows.split(",")):
            for fmt in args.formats.split(","):
                cases.append(run_case(cluster, fmt, rows))
                print(HEAD)
                print("\n".join(c.line() for c in cases), flush=True)
    finally:
        if not args.keep:
            dev.down()
    print()
    print(HEAD)
    print("\n".join(c.line() for c in cases))


if __name__ == "__main__":
    main()
