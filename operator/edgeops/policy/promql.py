"""Analysis queries checked at admission: parsed with ``promql-parser`` (the Rust PromQL
parser of GreptimeDB, bound to Python), after their ``{{ name }}`` placeholders are
replaced with sample values of the right kind. A query Prometheus would refuse used to be
admitted and then Error at every measurement until the rollout paused (AnalysisError);
now the API server refuses it and names the field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import promql_parser

#: ``{{ name }}`` placeholders of analysis queries (:func:`edgeops.metrics.prometheus.render`
#: replaces them before a query runs).
PLACEHOLDER: Final = re.compile(r"\{\{\s*(namespace|model|version|stableVersion|cohort)\s*\}\}")
#: Values used only to parse: a name where a name goes, a number where a version goes.
_SAMPLES: Final = {
    "namespace": "default",
    "model": "model",
    "version": "1",
    "stableVersion": "1",
    "cohort": "canary",
}
_LEFTOVER: Final = re.compile(r"\{\{[^{}]*\}\}")


def promql_problem(query: str) -> str | None:
    """Why ``query`` (an analysis metric's PromQL, placeholders included) cannot return one
    number, or None when it parses. Messages are the parser's, e.g. ``unclosed left
    parenthesis``, ``unknown function with name 'rat'``; an unknown placeholder, a range
    vector (``x[5m]``) or a string literal are named as such."""
    leftover = _LEFTOVER.search(PLACEHOLDER.sub("", query))
    if leftover is not None:
        return (
            f"unknown placeholder {leftover.group(0)} (known: "
            + ", ".join("{{" + name + "}}" for name in _SAMPLES)
            + ")"
        )
    text = PLACEHOLDER.sub(lambda m: _SAMPLES[m.group(1)], query)
    try:
        expr = promql_parser.parse(text)
    except ValueError as error:
        return f"not valid PromQL: {error}"
    if isinstance(expr, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return (
            "a range vector is not one number: wrap it in a function such as rate() or "
            "avg_over_time()"
        )
    if isinstance(expr, promql_parser.StringLiteral):
        return "a string is not a number"
    return None


def query_errors(spec: Any, root: str = "spec") -> Iterator[str]:
    """``<root>.analysis.metrics[i].query: <why>`` for every analysis query of a
    FleetRollout spec or an EdgeModel's rollout template (raw, as the API server sends it)
    that :func:`promql_problem` refuses. The webhook refuses them; the controller reports
    them as InvalidSpec (a rollout stored while the webhook was down never measures a query
    Prometheus refuses)."""
    if not isinstance(spec, Mapping):
        return
    analysis = spec.get("analysis")
    metrics = analysis.get("metrics") if isinstance(analysis, Mapping) else None
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        query = metric.get("query") if isinstance(metric, Mapping) else None
        if isinstance(query, str):
            problem = promql_problem(query)
            if problem is not None:
                yield f"{root}.analysis.metrics[{index}].query: {problem}"
