"""FleetRollout cost per device: desired state and step evaluation against a plain hash loop.

    PYTHONPATH=operator .venv/bin/python benchmarks/rollouts.py [--devices 10000 100000]
        [--rollouts 3] [--repeat 3] [--json]

What runs (pure functions, no cluster)
    A fleet of N synthetic devices (labels: model, site, hardware; a third report an update,
    some Committed, some Failed, some in flight) and ``--rollouts`` FleetRollouts of the
    model (one Progressing at 50 % with a selector and a first step choosing the devices of
    one site by a step selector, older ones Succeeded and RolledBack, so "newest selecting
    rollout governs" has work to do). Measured, best of ``--repeat``:

    * baseline: a plain loop computing each device's cohort bucket
      (``sha256(uid/name) % 10000``), the least any cohort-based decision costs;
    * desired: :func:`edgeops.policy.desired.desired_version` for every device, what the
      gateway computes per ``/desired`` request;
    * tally: :func:`edgeops.policy.rollout.tally`, one pass counting the step's devices;
    * decide: :func:`edgeops.policy.rollout.decide`, a whole controller pass (tally,
      failure threshold, step progress, status built).

    Printed: seconds per pass, microseconds per device, and the ratio to the baseline.
"""

from __future__ import annotations

import os
import sys

# Run as a script, Python puts benchmarks/ first on sys.path, where benchmarks/operator.py
# shadows the standard library's operator module (argparse -> re -> enum imports it).
# os.path, not pathlib: pathlib imports re, which would import the shadowing module.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]  # noqa: PTH100

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from edgeops.api.common import format_time  # noqa: E402
from edgeops.api.edgemodel import Target  # noqa: E402
from edgeops.api.fleetrollout import FleetRolloutSpec, FleetRolloutStatus, StepRecord  # noqa: E402
from edgeops.policy.desired import BUCKETS, RolloutView, desired_version  # noqa: E402
from edgeops.policy.rollout import FleetDevice, ModelInfo, decide, own_view, tally  # noqa: E402

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
UID = "7f0c7d4e-rollout-under-test"


def fleet(n: int) -> list[FleetDevice]:
    phases = [None, None, "Committed", "Failed", "Downloading", None]
    devices = []
    for i in range(n):
        phase = phases[i % len(phases)]
        devices.append(
            FleetDevice(
                name=f"device-{i:06}",
                labels={"edgeops.dev/model": "m", "site": f"s{i % 50}", "hw": f"h{i % 3}"},
                eligible=i % 97 != 0,
                target_type="linux",
                hardware=None,
                version=2 if phase == "Committed" else 1,
                update_target=2 if phase else None,
                update_phase=phase,
                update_time=format_time(NOW - timedelta(minutes=5)) if phase else None,
                last_seen=format_time(NOW - timedelta(seconds=30 + i % 400)),
                report_interval_seconds=60,
            )
        )
    return devices


def rollouts(count: int, spec: FleetRolloutSpec, status: FleetRolloutStatus) -> list[RolloutView]:
    views = [own_view("r", UID, "2026-05-01T00:00:00Z", spec, status)]
    for i in range(count - 1):
        views.append(
            RolloutView(
                name=f"old-{i}",
                uid=f"old-{i}",
                created=f"2026-0{1 + i % 4}-01T00:00:00Z",
                model="m",
                version=1,
                phase=("Succeeded", "RolledBack")[i % 2],
                percent=100,
                selector=None,
                stable_version=1,
            )
        )
    return views


def best(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(n: int, count: int, repeat: int) -> dict[str, Any]:
    spec = FleetRolloutSpec.model_validate(
        {
            "modelRef": {"name": "m"}, "version": 2,
            "steps": [{"percent": 0, "selector": {"matchLabels": {"site": "s0"}}},
                      {"percent": 10}, {"percent": 50}, {"percent": 100}],
            "selector": {"matchExpressions": [{"key": "hw", "operator": "In",
                                               "values": ["h0", "h1"]}]},
        }
    )  # fmt: skip
    started = format_time(NOW - timedelta(minutes=20))
    status = FleetRolloutStatus(
        phase="Progressing", current_step=2, current_percent=50, stable_version=1,
        target_version=2, step_started_at=started,
        steps=[StepRecord(step=0, percent=0, started_at=started),
               StepRecord(step=1, percent=10, started_at=started),
               StepRecord(step=2, percent=50, started_at=started)],
    )  # fmt: skip
    devices = fleet(n)
    views = rollouts(count, spec, status)
    model = ModelInfo(
        found=True, current_version=2, versions=frozenset({1, 2}),
        targets=(Target(name="pi", target_type="linux", format="onnx"),),
    )  # fmt: skip
    view = views[0]

    def baseline() -> int:
        admitted = 0
        for d in devices:
            digest = hashlib.sha256(f"{UID}/{d.name}".encode()).digest()
            admitted += int.from_bytes(digest, "big") % BUCKETS < 5000
        return admitted

    def desired() -> int:
        current: dict[str, int | None] = {"m": 1}
        moved = 0
        for d in devices:
            chosen = desired_version(d.name, d.labels, current, views)
            moved += chosen is not None and chosen.version == 2
        return moved

    def counting() -> int:
        found = tally(
            view, views, devices, status, timedelta(hours=1), model, NOW, 60.0, spec.steps
        )
        return found.counts.targeted

    def deciding() -> int:
        decision = decide(spec, status, view, views, devices, model, [], NOW, 60.0)
        return decision.status.counts.targeted if decision.status.counts else 0

    results: dict[str, Any] = {"devices": n, "rollouts": count}
    base = best(repeat, baseline)
    for label, fn in (("baseline", baseline), ("desired", desired), ("tally", counting),
                      ("decide", deciding)):  # fmt: skip
        seconds = base if label == "baseline" else best(repeat, fn)
        results[label] = {
            "seconds": seconds,
            "us_per_device": 1e6 * seconds / n,
            "ratio": seconds / base,
        }
    results["targeted"] = counting()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run(n, args.rollouts, args.repeat) for n in args.devices]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'devices':>8} {'pass':>9} {'s/pass':>9} {'us/device':>10} {'x baseline':>10}")
    for row in rows:
        for label in ("baseline", "desired", "tally", "decide"):
            r = row[label]
            print(
                f"{row['devices']:>8} {label:>9} {r['seconds']:>9.3f} "
                f"{r['us_per_device']:>10.2f} {r['ratio']:>10.2f}"
            )
        print(f"{'':>8} targeted at 50 %: {row['targeted']}")


if __name__ == "__main__":
    main()
