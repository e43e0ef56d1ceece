"""Rollout analysis against a real local HTTP server standing in for Prometheus: placeholders,
the canary sample count from the gateway's inference counter, and the mapping of answers to
verdicts (empty or NaN: Inconclusive; HTTP 500, refused connection, timeout, garbage, many
series: Error; never a pass or a failure)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from edgeops.api.fleetrollout import AnalysisMetric
from edgeops.metrics.prometheus import (
    Prometheus,
    QueryContext,
    measure,
    render,
    samples_query,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CONTEXT = QueryContext(namespace="plant", model="motion", version=3, stable_version=2)
QUERY = (
    'sum(rate(edgeops_device_feedback_total{namespace="{{namespace}}",model="{{ model }}",'
    'version="{{version}}",cohort="{{cohort}}",outcome="correct"}[5m]))'
)
Answer = Callable[[str], tuple[int, Any]]


def vector(*values: str) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [1.0, v]} for v in values],
        },
    }


class Server:
    """A local HTTP server; ``answer(query)`` gives (status, JSON body or raw bytes)."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.answer: Answer = lambda q: (200, vector("1"))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                assert url.path == "/api/v1/query"
                query = parse_qs(url.query)["query"][0]
                outer.queries.append(query)
                status, body = outer.answer(query)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def metric(**fields: Any) -> AnalysisMetric:
    return AnalysisMetric.model_validate(
        {"name": "acc", "query": QUERY, "threshold": 0.9, "op": ">=", "minSamples": 100, **fields}
    )


def answers(samples: Any, canary: Any, stable: Any = None) -> Answer:
    def answer(query: str) -> tuple[int, Any]:
        if query.startswith("sum(increase(edgeops_device_inferences_total"):
            return samples
        return stable if 'cohort="stable"' in query else canary

    return answer


def test_render_and_samples_query() -> None:
    rendered = render(QUERY, CONTEXT, "canary")
    assert 'namespace="plant",model="motion",version="3",cohort="canary"' in rendered
    assert 'version="2",cohort="stable"' in render(QUERY, CONTEXT, "stable", 2)
    assert render("x{v='{{stableVersion}}'}", CONTEXT, "canary") == "x{v='2'}"
    assert samples_query(CONTEXT, "canary", 3, "1m") == (
        'sum(increase(edgeops_device_inferences_total{namespace="plant",model="motion",'
        'version="3",cohort="canary"}[1m]))'
    )


def test_pass_and_fail_with_the_numbers(server: Server) -> None:
    prom = Prometheus(server.url, 5)
    server.answer = answers((200, vector("1500")), (200, vector("0.93")))
    m = measure(prom, metric(), CONTEXT, "1m", NOW)
    assert (m.verdict, m.value, m.samples) == ("Pass", 0.93, 1500)
    assert "0.93 >= 0.9 with 1500 canary inferences" in m.message
    assert m.query == render(QUERY, CONTEXT, "canary")
    assert server.queries[0].startswith("sum(increase(edgeops_device_inferences_total")
    server.answer = answers((200, vector("1500")), (200, vector("0.80")))
    assert measure(prom, metric(), CONTEXT, "1m", NOW).verdict == "Fail"


def test_vs_stable_runs_the_query_for_the_stable_cohort(server: Server) -> None:
    prom = Prometheus(server.url, 5)
    server.answer = answers((200, vector("500")), (200, vector("0.90")), (200, vector("0.95")))
    m = measure(prom, metric(baseline="VsStable", threshold=-0.02), CONTEXT, "1m", NOW)
    assert m.verdict == "Fail" and m.value == pytest.approx(-0.05)
    assert any('version="2",cohort="stable"' in q for q in server.queries)


@pytest.mark.parametrize(
    ("samples", "canary", "text"),
    [
        ((200, vector()), (200, vector("0.99")), "0 canary inferences"),
        ((200, vector("42")), (200, vector("0.99")), "42 canary inferences"),
        ((200, vector("500")), (200, vector()), "no value"),
        ((200, vector("500")), (200, vector("NaN")), "no value"),
        ((200, vector("NaN")), (200, vector("0.99")), "0 canary inferences"),
    ],
)
def test_no_data_is_inconclusive(server: Server, samples: Any, canary: Any, text: str) -> None:
    server.answer = answers(samples, canary)
    m = measure(Prometheus(server.url, 5), metric(), CONTEXT, "1m", NOW)
    assert m.verdict == "Inconclusive" and text in m.message, m.message
    assert m.value is None or m.value == 0.99


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (
            (500, {"status": "error", "errorType": "internal", "error": "boom"}),
            "HTTP 500: internal: boom",
        ),
        ((500, b"<html>oops</html>"), "HTTP 500 without its JSON body"),
        ((400, {"status": "error", "errorType": "bad_data", "error": "parse error"}), "bad_data"),
        ((200, b"not json"), "without its JSON body"),
        ((200, vector("1", "2")), "returned 2 series"),
        ((200, {"status": "success", "data": {"resultType": "matrix", "result": []}}), "matrix"),
        (
            (200, {"status": "success", "data": {"resultType": "vector", "result": [{}]}}),
            "unreadable",
        ),
    ],
)
def test_prometheus_failures_are_errors(server: Server, answer: Any, text: str) -> None:
    server.answer = lambda q: answer
    m = measure(Prometheus(server.url, 5), metric(), CONTEXT, "1m", NOW)
    assert m.verdict == "Error" and text in m.message, m.message
    assert m.value is None and m.samples == 0


def test_unreachable_unconfigured_and_slow_prometheus_are_errors(server: Server) -> None:
    dead = Server()
    url = dead.url
    dead.httpd.shutdown()
    dead.httpd.server_close()
    m = measure(Prometheus(url, 2), metric(), CONTEXT, "1m", NOW)
    assert m.verdict == "Error" and "unreachable" in m.message
    m = measure(Prometheus(None, 2), metric(), CONTEXT, "1m", NOW)
    assert m.verdict == "Error" and "EDGEOPS_PROMETHEUS_URL" in m.message

    def slow(query: str) -> tuple[int, Any]:
        time.sleep(1.5)
        return 200, vector("1")

    server.answer = slow
    m = measure(Prometheus(server.url, 0.3), metric(), CONTEXT, "1m", NOW)
    assert m.verdict == "Error" and "Timeout" in m.message


def test_scalar_results(server: Server) -> None:
    server.answer = lambda q: (
        200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}},
    )  # fmt: skip
    assert Prometheus(server.url, 5).value("vector(0.5)") == 0.5
