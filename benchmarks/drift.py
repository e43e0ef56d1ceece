"""Drift rules on recorded data with a known change: false alarms and detection delay.

Not a test. Slides fixed-size windows through a recorded stream that has a period with no
change and then a documented change, and reports for each rule

* ``FA``: share of windows wholly inside the no-change period that alarm (false alarms),
* ``det``: share of windows wholly after the change that alarm (detection rate),
* ``delay``: from the change point to the end of the first alarming window that ends after
  it (days or seconds of recording; ``-`` if none alarms).

Rules, all measured in this run on the same windows:

* ``old``: the shipped rule, PSI > 0.2 or JS > 0.1 on any feature, fixed thresholds over
  format-1 bins (unique reference deciles).
* ``new/<method>``: :func:`edgeops.drift.assess_features` on a format-2 profile (point
  masses, graded beyond-range bins, design-effect calibration), alpha 0.05 Bonferroni over
  the features, default min effect. ``new/psi`` is the default.
* ``evidently``: Evidently's ``DataDriftPreset()`` with its documented defaults (per column
  KS / chi-square at p < 0.05 when the reference has <= 1000 rows, else normed
  Wasserstein / Jensen-Shannon > 0.1; dataset drift when >= 50 % of columns drift), run
  only if the ``evidently`` package is importable (``pip install -e '.[bench]'``).
* ``evidently/any``: the same per-column verdicts, alarm when any column drifts.
* ``scipy``: per feature two-sample KS (numeric) or chi-square (categorical) on raw values,
  Bonferroni alpha 0.05 / m: the textbook rule without calibration.

Data ships inside installed packages (the ``samples`` extra), read offline:

* ``seattle``: vega_datasets ``seattle-weather`` (daily weather at Seattle, 2012-2015;
  precipitation is 0 on about 57 % of days; the four numeric columns, not the ``weather``
  label, whose coding changed between years). Reference: the winters Jan-Feb 2012 and
  Dec 2012 - Feb 2013 (149 days). Stream: Dec 2013 - Aug 2014, windows of 30 days, stride 1.
  No change: windows inside Dec 2013 - Feb 2014; change point: 2014-03-20 (equinox, the
  seasonal change); detection counted on windows inside Jun-Aug 2014.
* ``motions/<a>-><b>``: aeon ``BasicMotions`` (smartwatch accelerometer and gyroscope,
  6 channels at 10 Hz, 10 s per case). Reference: the train split's 10 cases of activity
  a (1000 rows). Stream: the test split's 10 cases of a, then its 10 cases of b; windows of
  200 rows (20 s), stride 20 rows. Change point: the first row of b.

Run: ``PYTHONPATH=operator python benchmarks/drift.py`` (about a minute without
Evidently; Evidently's reports take about 1-2 s per window, some 15 minutes in all, so
``--no-evidently`` skips them).
"""

from __future__ import annotations

import os
import sys

# benchmarks/operator.py would shadow the standard library's ``operator`` module for a
# script run from this folder: drop the folder from the import path before anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from edgeops.drift import (  # noqa: E402
    assess_features,
    categorical_entry,
    jensen_shannon,
    live_from_wire,
    numeric_entry,
    psi,
)
from edgeops.drift.histograms import bin_counts  # noqa: E402

Rule = Callable[[pd.DataFrame], bool]


@dataclass
class Scenario:
    name: str
    reference: pd.DataFrame
    stream: pd.DataFrame
    window: int
    stride: int
    no_change: tuple[int, int]  # stream rows [start, end) with no change
    change_at: int  # stream row of the change point
    changed: tuple[int, int]  # stream rows counted for the detection rate
    unit: str  # what one row is, for the delay ("d", "s")
    row_length: float  # rows -> unit


def seattle() -> Scenario:
    from vega_datasets import local_data  # type: ignore[import-untyped]

    data = local_data("seattle-weather")
    data["date"] = pd.to_datetime(data["date"])
    data = data.sort_values("date").set_index("date")
    # Not the ``weather`` label: its coding changed between years (2012: 191 "rain" days,
    # 2014: 3), a real change that every rule rightly flags in the "no change" winter.
    columns = ["precipitation", "temp_max", "temp_min", "wind"]
    reference = pd.concat(
        [data.loc["2012-01-01":"2012-02-29"], data.loc["2012-12-01":"2013-02-28"]]
    )[columns]
    stream = data.loc["2013-12-01":"2014-08-31"][columns]
    dates = stream.index

    def row(day: str) -> int:
        return int(dates.searchsorted(pd.Timestamp(day)))

    return Scenario(
        "seattle",
        reference.reset_index(drop=True),
        stream.reset_index(drop=True),
        window=30,
        stride=1,
        no_change=(0, row("2014-03-01")),
        change_at=row("2014-03-20"),
        changed=(row("2014-06-01"), len(stream)),
        unit="d",
        row_length=1.0,
    )


def motions(before: str, after: str) -> Scenario:
    from aeon.datasets import load_basic_motions  # type: ignore[import-untyped]

    channels = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]

    def rows(split: str, activity: str) -> pd.DataFrame:
        x, y = load_basic_motions(split=split)
        cases = x[np.asarray(y) == activity]  # (cases, 6, 100), in the split's order
        return pd.DataFrame(np.concatenate(list(cases), axis=1).T, columns=channels)

    reference = rows("train", before)
    same, changed = rows("test", before), rows("test", after)
    stream = pd.concat([same, changed], ignore_index=True)
    return Scenario(
        f"motions/{before}->{after}",
        reference,
        stream,
        window=200,
        stride=20,
        no_change=(0, len(same)),
        change_at=len(same),
        changed=(len(same), len(stream)),
        unit="s",
        row_length=0.1,
    )


# --- rules ------------------------------------------------------------------------------


def old_rule(reference: pd.DataFrame) -> Rule:
    """PSI > 0.2 or JS > 0.1 on any feature over format-1 bins (unique deciles)."""
    numeric = [c for c in reference if pd.api.types.is_numeric_dtype(reference[c])]
    edges = {
        c: list(np.unique(np.quantile(reference[c], np.linspace(0, 1, 11)[1:-1]))) for c in numeric
    }

    def counts(frame: pd.DataFrame, column: str) -> tuple[list[float], list[float]]:
        if column in edges:
            e = edges[column]
            ref_bins, cur_bins = bin_counts(reference[column], e), bin_counts(frame[column], e)
            return [float(c) for c in ref_bins], [float(c) for c in cur_bins]
        keys = sorted(set(reference[column]) | set(frame[column]))
        ref = reference[column].value_counts()
        cur = frame[column].value_counts()
        return [float(ref.get(k, 0)) for k in keys], [float(cur.get(k, 0)) for k in keys]

    def rule(frame: pd.DataFrame) -> bool:
        for column in reference:
            ref, cur = counts(frame, column)
            if psi(ref, cur) > 0.2 or jensen_shannon(ref, cur) > 0.1:
                return True
        return False

    return rule


def new_rule(reference: pd.DataFrame, method: str) -> Rule:
    """The calibrated rule on a format-2 profile built from the reference in row order."""
    profile: dict[str, dict[str, Any]] = {}
    for column in reference:
        values = reference[column].tolist()
        numeric = pd.api.types.is_numeric_dtype(reference[column])
        profile[column] = numeric_entry(values) if numeric else categorical_entry(values)

    def live(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for column, entry in profile.items():
            if entry["kind"] == "numeric":
                out[column] = live_from_wire(bin_counts(frame[column], entry["edges"]), None, 0)
            else:
                known = set(entry["counts"])
                cats: dict[str, float] = {}
                for value, count in frame[column].value_counts().items():
                    key = str(value) if str(value) in known else "other"
                    cats[key] = cats.get(key, 0.0) + float(count)
                out[column] = live_from_wire(None, cats, 0)
        return out

    def rule(frame: pd.DataFrame) -> bool:
        verdict = assess_features(
            profile,
            live(frame),
            method=method,  # type: ignore[arg-type]
            alpha=0.05,
            min_samples=20,
            resamples=4000,
        )
        return verdict.verdict == "Drift"

    return rule


def scipy_rule(reference: pd.DataFrame) -> Rule:
    """KS (numeric) / chi-square (categorical) per feature on raw values, Bonferroni."""
    level = 0.05 / reference.shape[1]

    def rule(frame: pd.DataFrame) -> bool:
        for column in reference:
            if pd.api.types.is_numeric_dtype(reference[column]):
                p = stats.ks_2samp(reference[column], frame[column]).pvalue
            else:
                keys = sorted(set(reference[column]) | set(frame[column]))
                table = np.array(
                    [
                        [int((reference[column] == k).sum()) for k in keys],
                        [int((frame[column] == k).sum()) for k in keys],
                    ]
                )
                table = table[:, table.sum(axis=0) > 0]
                p = stats.chi2_contingency(table).pvalue if table.shape[1] > 1 else 1.0
            if p <= level:
                return True
        return False

    return rule


def evidently_rules(reference: pd.DataFrame) -> tuple[Rule, Rule] | None:
    """(dataset drift at the default drift share 0.5, any column drifted), or None."""
    try:
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        return None
    cache: dict[int, tuple[float, float]] = {}

    def run(frame: pd.DataFrame) -> tuple[float, float]:
        key = id(frame)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                snapshot = Report([DataDriftPreset()]).run(
                    current_data=frame.reset_index(drop=True), reference_data=reference
                )
            for metric in snapshot.dict()["metrics"]:
                if metric["config"]["type"].endswith("DriftedColumnsCount"):
                    value = metric["value"]
                    cache[key] = (float(value["share"]), float(value["count"]))
        return cache[key]

    return (lambda f: run(f)[0] >= 0.5), (lambda f: run(f)[1] > 0)


# --- evaluation --------------------------------------------------------------------------


def evaluate(s: Scenario, rules: dict[str, Rule]) -> dict[str, tuple[float, float, str, float]]:
    starts = range(0, len(s.stream) - s.window + 1, s.stride)
    windows = [(i, s.stream.iloc[i : i + s.window]) for i in starts]
    out: dict[str, tuple[float, float, str, float]] = {}
    for name, rule in rules.items():
        t0 = time.perf_counter()
        alarms = [(i, rule(w)) for i, w in windows]
        seconds = time.perf_counter() - t0
        quiet = [a for i, a in alarms if s.no_change[0] <= i and i + s.window <= s.no_change[1]]
        after = [a for i, a in alarms if s.changed[0] <= i and i + s.window <= s.changed[1]]
        first = next((i + s.window for i, a in alarms if a and i + s.window > s.change_at), None)
        delay = "-" if first is None else f"{(first - s.change_at) * s.row_length:g}{s.unit}"
        out[name] = (float(np.mean(quiet)), float(np.mean(after)), delay, seconds)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-evidently", action="store_true", help="skip Evidently")
    parser.add_argument(
        "--methods", default="psi,js,ks,wasserstein", help="new-rule methods to run"
    )
    args = parser.parse_args(argv)
    scenarios = [
        seattle(),
        motions("walking", "running"),
        motions("badminton", "walking"),
        motions("standing", "badminton"),
    ]
    evidently_note = ""
    results: dict[str, dict[str, tuple[float, float, str, float]]] = {}
    for s in scenarios:
        rules: dict[str, Rule] = {"old (PSI>0.2|JS>0.1)": old_rule(s.reference)}
        for method in args.methods.split(","):
            rules[f"new/{method}"] = new_rule(s.reference, method)
        ev = None if args.no_evidently else evidently_rules(s.reference)
        if ev is None:
            evidently_note = "evidently: not run (not installed or --no-evidently)"
        else:
            rules["evidently (share>=0.5)"], rules["evidently/any"] = ev
        rules["scipy KS/chi2 Bonferroni"] = scipy_rule(s.reference)
        results[s.name] = evaluate(s, rules)

    names = list(dict.fromkeys(n for r in results.values() for n in r))
    head = f"{'rule':<26}" + "".join(f"| {s.name:<30}" for s in scenarios)
    sub = f"{'':<26}" + "".join(f"| {'FA':>6} {'det':>6} {'delay':>8} {'s':>6} " for _ in scenarios)
    print(head)
    print(sub)
    print("-" * len(sub))
    for name in names:
        line = f"{name:<26}"
        for s in scenarios:
            fa, det, delay, secs = results[s.name].get(name, (np.nan, np.nan, "n/a", np.nan))
            line += f"| {fa:>6.2f} {det:>6.2f} {delay:>8} {secs:>6.1f} "
        print(line)
    print()
    for s in scenarios:
        quiet = len(range(s.no_change[0], s.no_change[1] - s.window + 1, s.stride))
        print(
            f"{s.name}: reference {len(s.reference)} rows, window {s.window} rows, "
            f"~{quiet} no-change windows"
        )
    if evidently_note:
        print(evidently_note)


if __name__ == "__main__":
    main()
