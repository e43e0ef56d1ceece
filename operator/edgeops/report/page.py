"""The report's HTML page: one self-describing file (inline CSS) that links the PNGs next
to it. Rendered with Jinja2 with autoescaping on, because feature names, messages and
labels come from users and devices."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import jinja2

from edgeops.report.data import ReportData

#: Devices listed one per row; a larger fleet is summarised by version only.
MAX_DEVICE_ROWS: Final = 500

#: The page template (package data next to this module).
TEMPLATE: Final = "report.html.j2"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _trigger(run: dict[str, Any]) -> str:
    annotations = (run.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get("edgeops.dev/trigger-reasons") or "")


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


def render(data: ReportData, images: dict[str, Any]) -> str:
    """The page of ``data``. ``images``: file names of the PNGs next to the page, keys
    ``drift_over_time``, ``drift_last``, ``traffic`` (str or None) and ``rollouts``
    (rollout name → str or None)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("edgeops.report", "."),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
    )
    status = data.status
    spec = data.model.get("spec") or {}
    by_version = Counter(
        "-" if row.get("version") is None else f"v{row['version']}" for row in data.lineage
    )
    return environment.get_template(TEMPLATE).render(
        d=data,
        s=status,
        drift=status.get("drift"),
        on_drift=((spec.get("retrain") or {}).get("onDrift") or {}).get("enabled", False),
        versions=sorted(status.get("versions") or [], key=lambda v: -int(v.get("number", 0))),
        by_version=sorted(by_version.items()),
        images=images,
        num=_num,
        trigger=_trigger,
        generated=data.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        since=_duration(data.since_seconds),
        max_rows=MAX_DEVICE_ROWS,
    )
