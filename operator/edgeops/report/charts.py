"""The report's PNG plots, drawn with matplotlib's object API on the Agg canvas (no pyplot
global state, no display), each returned as PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from edgeops.report.data import Curve, FeatureHistory, Points

#: Features plotted over time, worst first (a model can have hundreds; the table has all).
MAX_FEATURE_PLOTS: Final = 12
_DPI: Final = 96


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _dates(seconds: Iterable[float]) -> list[float]:
    # Matplotlib date numbers (days since its epoch); the axis formats them as times.
    return [float(date2num(datetime.fromtimestamp(t, UTC))) for t in seconds]  # type: ignore[no-untyped-call]


def _times(points: Points) -> list[float]:
    return _dates(t for t, _ in points)


def _time_axis(axes: Axes) -> None:
    # matplotlib.dates has no type hints for these two.
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _worst(histories: Sequence[FeatureHistory]) -> list[FeatureHistory]:
    def ratio(history: FeatureHistory) -> float:
        if not history.statistic:
            return -math.inf
        last = history.statistic[-1][1]
        limit = history.threshold[-1][1] if history.threshold else math.nan
        return last / limit if limit and math.isfinite(limit) else last

    return sorted(histories, key=ratio, reverse=True)


def drift_over_time(histories: Sequence[FeatureHistory]) -> bytes | None:
    """One small plot per feature (the :data:`MAX_FEATURE_PLOTS` whose last statistic is
    largest relative to its threshold): the statistic per model version as a line, its
    threshold dashed, the time above the threshold shaded. None without any point."""
    by_feature: dict[str, list[FeatureHistory]] = {}
    for history in histories:
        if history.statistic:
            by_feature.setdefault(history.feature, []).append(history)
    if not by_feature:
        return None
    order: list[str] = []
    for history in _worst([h for hs in by_feature.values() for h in hs]):
        if history.feature not in order:
            order.append(history.feature)
    features = order[:MAX_FEATURE_PLOTS]
    columns = min(3, len(features))
    rows = math.ceil(len(features) / columns)
    figure = Figure(figsize=(4.2 * columns, 2.6 * rows), layout="constrained")
    for index, feature in enumerate(features):
        axes = figure.add_subplot(rows, columns, index + 1)
        for history in sorted(by_feature[feature], key=lambda h: h.version):
            line = axes.plot(
                _times(history.statistic),
                [v for _, v in history.statistic],
                label=f"v{history.version} {history.method}",
                linewidth=1.4,
            )[0]
            if history.threshold:
                axes.plot(
                    _times(history.threshold),
                    [v for _, v in history.threshold],
                    linestyle="--",
                    color=line.get_color(),
                    linewidth=1.0,
                    label=f"v{history.version} threshold",
                )
                limits = dict(history.threshold)
                above = [limits.get(t) is not None and v > limits[t] for t, v in history.statistic]
                axes.fill_between(
                    _times(history.statistic),
                    0,
                    [v for _, v in history.statistic],
                    where=above,
                    color="tab:red",
                    alpha=0.15,
                    step="mid",
                )
        axes.set_title(feature, fontsize=9)
        axes.tick_params(labelsize=7)
        axes.set_ylim(bottom=0)
        _time_axis(axes)
        if index == 0:
            axes.legend(fontsize=6, loc="upper left")
    figure.suptitle("Drift per feature (statistic vs threshold; red: above)", fontsize=10)
    return _png(figure)


def drift_last(features: Iterable[Mapping[str, Any]]) -> bytes | None:
    """Bars of the last measurement (``status.drift.features``): each feature's statistic
    divided by its threshold, so 1.0 is the line a feature crosses to drift; features
    without a statistic or threshold are left out. None when no feature has both."""
    rows = [
        (str(f.get("feature")), float(f["statistic"]) / float(f["threshold"]), f.get("verdict"))
        for f in features
        if f.get("statistic") is not None and f.get("threshold")
    ]
    if not rows:
        return None
    rows.sort(key=lambda r: r[1])
    rows = rows[-30:]
    figure = Figure(figsize=(6.5, 0.9 + 0.28 * len(rows)), layout="constrained")
    axes = figure.add_subplot()
    colours = ["tab:red" if verdict == "Drift" else "tab:blue" for _, _, verdict in rows]
    axes.barh([r[0] for r in rows], [r[1] for r in rows], color=colours)
    axes.axvline(1.0, color="black", linestyle="--", linewidth=1)
    axes.set_xlabel("statistic / threshold (last measurement)")
    axes.tick_params(labelsize=7)
    return _png(figure)


def traffic(curves: Sequence[Curve]) -> bytes | None:
    """Inferences per second by model version over time, stacked: the fleet moving from
    one version to the next. None without any point."""
    curves = [c for c in curves if c.points]
    if not curves:
        return None
    times = sorted({t for c in curves for t, _ in c.points})
    stacks = [[dict(c.points).get(t, 0.0) for t in times] for c in curves]
    figure = Figure(figsize=(8, 3), layout="constrained")
    axes = figure.add_subplot()
    axes.stackplot(
        _dates(times),
        stacks,
        labels=[c.label for c in curves],
        alpha=0.8,
    )
    axes.set_ylabel("inferences / s")
    axes.legend(fontsize=7, loc="upper left")
    axes.set_title("Fleet traffic by model version", fontsize=10)
    _time_axis(axes)
    return _png(figure)


def _parse(stamp: Any) -> datetime | None:
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def rollout_progress(rollout: Mapping[str, Any], now: datetime) -> bytes | None:
    """A FleetRollout's steps over time (``status.steps``): the step's percent as a band
    from its start to its completion (or ``now``), and the share of the fleet running the
    target version when the step was last evaluated (updated / targeted * percent), with
    the counts written on each band. None before the first step started."""
    steps = [s for s in (rollout.get("status") or {}).get("steps") or [] if s.get("startedAt")]
    if not steps:
        return None
    figure = Figure(figsize=(8, 3), layout="constrained")
    axes = figure.add_subplot()
    for step in steps:
        began = _parse(step["startedAt"])
        if began is None:
            continue
        start, end = _dates(
            [began.timestamp(), (_parse(step.get("completedAt")) or now).timestamp()]
        )
        percent = float(step.get("percent") or 0)
        counts = step.get("counts") or {}
        targeted, updated = int(counts.get("targeted") or 0), int(counts.get("updated") or 0)
        reached = percent * updated / targeted if targeted else 0.0
        axes.plot([start, end], [percent, percent], color="tab:gray", linewidth=6, alpha=0.35)
        axes.plot([start, end], [reached, reached], color="tab:green", linewidth=2)
        failed = sum(int(counts.get(k) or 0) for k in ("failed", "rolledBack", "timedOut"))
        axes.annotate(
            f"step {int(step.get('step', 0)) + 1}: {updated}/{targeted} updated"
            + (f", {failed} failed" if failed else ""),
            (start, percent),
            xytext=(2, 4),
            textcoords="offset points",
            fontsize=7,
        )
    meta, spec = rollout.get("metadata") or {}, rollout.get("spec") or {}
    phase = (rollout.get("status") or {}).get("phase") or "Pending"
    axes.set_title(f"{meta.get('name')}: v{spec.get('version')} ({phase})", fontsize=10)
    axes.set_ylabel("percent of the fleet")
    axes.set_ylim(0, 105)
    _time_axis(axes)
    return _png(figure)
