"""HTTP(S) sources against a real local server: conditional requests (an unchanged file
is not downloaded again), servers without validators, and URLs redacted in messages."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from edgeops.datasets import layout
from edgeops.datasets.ingest import Outcome, collect, unchanged
from edgeops.datasets.sources import SourceUnavailableError, http_fetch, redact_url
from tests.unit.test_datasets_ingest import HEADER, NAME, NS, ROWS, MemoryStore, _spec

LAST_MODIFIED = "Wed, 07 Jan 2026 10:00:00 GMT"


@dataclass
class Server:
    base: str
    body: bytes = b""
    etag: bool = True
    last_modified: bool = True
    status: int = 200
    #: (path with query, status sent, If-None-Match, If-Modified-Since) per request.
    requests: list[tuple[str, int, str | None, str | None]] = field(default_factory=list)

    @property
    def current_etag(self) -> str:
        return '"' + hashlib.md5(self.body).hexdigest() + '"'

    def statuses(self) -> list[int]:
        return [r[1] for r in self.requests]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    # The server is on loopback, which HTTP(S) sources refuse by default (see
    # test_datasets_http_ssrf.py): admit 127.0.0.1 alone.
    monkeypatch.setenv("EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS", "127.0.0.1")
    state = Server("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = self.headers.get("If-None-Match")
            since = self.headers.get("If-Modified-Since")
            unchanged = (state.etag and match == state.current_etag) or (
                not (state.etag and match) and state.last_modified and since == LAST_MODIFIED
            )
            code = state.status if state.status != 200 else (304 if unchanged else 200)
            state.requests.append((self.path, code, match, since))
            self.send_response(code)
            if state.etag:
                self.send_header("ETag", state.current_etag)
            if state.last_modified:
                self.send_header("Last-Modified", LAST_MODIFIED)
            body = state.body if code == 200 else b""
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _csv(rows: list[str]) -> bytes:
    return (HEADER + "".join(rows)).encode()


def _http_spec(url: str, **overrides: Any) -> Any:
    return _spec(sources=[{"http": {"url": url}}], **overrides)


def test_an_unchanged_file_is_not_downloaded_again(server: Server) -> None:
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body = _csv(ROWS)
    first = collect(store, NS, NAME, _http_spec(url), store.clock)
    assert first.outcome == Outcome.PUBLISHED
    assert server.requests[0][1:] == (200, None, None)  # nothing known yet: unconditional
    for _ in range(3):
        again = collect(store, NS, NAME, _http_spec(url), store.clock)
        assert again.outcome == Outcome.NO_NEW_DATA and again.latest == first.latest
    assert server.statuses() == [200, 304, 304, 304]
    assert server.requests[1][2:] == (server.current_etag, LAST_MODIFIED)
    # The index remembers the validators by a hash of the URL, never the URL.
    index = store.get_json(layout.index_key(NS, NAME))
    (remembered,) = index["lastCollection"]["http"].values()
    assert remembered == {
        "sha256": hashlib.sha256(server.body).hexdigest(),
        "etag": server.current_etag,
        "lastModified": LAST_MODIFIED,
    }
    assert url not in str(index)
    # A changed file: the server answers 200 and a new version is published.
    server.body = _csv(ROWS[:30])
    changed = collect(store, NS, NAME, _http_spec(url), store.clock)
    assert changed.outcome == Outcome.PUBLISHED and changed.latest != first.latest
    assert changed.latest is not None and changed.latest["sampleCount"] == 30
    assert server.statuses()[-1] == 200
    assert collect(store, NS, NAME, _http_spec(url), store.clock).outcome == Outcome.NO_NEW_DATA
    assert server.statuses()[-1] == 304


def test_last_modified_alone_makes_the_request_conditional(server: Server) -> None:
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body, server.etag = _csv(ROWS), False
    collect(store, NS, NAME, _http_spec(url), store.clock)
    assert collect(store, NS, NAME, _http_spec(url), store.clock).outcome == Outcome.NO_NEW_DATA
    assert server.statuses() == [200, 304]
    assert server.requests[1][2:] == (None, LAST_MODIFIED)


def test_without_validators_the_file_is_downloaded_each_time(server: Server) -> None:
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body, server.etag, server.last_modified = _csv(ROWS), False, False
    first = collect(store, NS, NAME, _http_spec(url), store.clock)
    again = collect(store, NS, NAME, _http_spec(url), store.clock)
    assert (first.outcome, again.outcome) == (Outcome.PUBLISHED, Outcome.NO_NEW_DATA)
    assert server.requests == [("/imu.csv", 200, None, None)] * 2
    index = store.get_json(layout.index_key(NS, NAME))
    assert index["lastCollection"]["http"] == {}


def test_a_304_with_another_change_downloads_the_file_for_its_rows(server: Server) -> None:
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body = _csv(ROWS)
    first = collect(store, NS, NAME, _http_spec(url), store.clock)
    # A spec change needs the rows again: the 304 alone cannot provide them.
    stricter = _http_spec(url, validation={"maxRejectedFraction": 0.05})
    again = collect(store, NS, NAME, stricter, store.clock)
    assert server.statuses() == [200, 304, 200]
    assert again.outcome == Outcome.UNCHANGED and again.latest == first.latest
    assert again.accepted == 60
    assert collect(store, NS, NAME, stricter, store.clock).outcome == Outcome.NO_NEW_DATA
    assert server.statuses()[-1] == 304


def test_validators_are_learnt_for_an_index_that_has_none(server: Server) -> None:
    """An index written before validators were remembered: the first unchanged collection
    records them, so the next request is conditional."""
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body = _csv(ROWS)
    collect(store, NS, NAME, _http_spec(url), store.clock)
    key = layout.index_key(NS, NAME)
    index = store.get_json(key)
    del index["lastCollection"]["http"]
    store.put_json(key, index)
    assert collect(store, NS, NAME, _http_spec(url), store.clock).outcome == Outcome.NO_NEW_DATA
    assert collect(store, NS, NAME, _http_spec(url), store.clock).outcome == Outcome.NO_NEW_DATA
    assert server.statuses() == [200, 200, 304]


def test_a_pinned_hash_is_checked_on_a_304_too(server: Server) -> None:
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body = _csv(ROWS)
    collect(store, NS, NAME, _http_spec(url), store.clock)
    pinned = _spec(sources=[{"http": {"url": url, "sha256": "0" * 64}}])
    with pytest.raises(SourceUnavailableError, match="SHA-256 mismatch"):
        collect(store, NS, NAME, pinned, store.clock)
    assert server.statuses() == [200, 304]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:hunter2@data.example/imu.csv", "https://***@data.example/imu.csv"),
        (
            "https://bucket.s3.example/imu.csv?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
            "https://bucket.s3.example/imu.csv?***",
        ),
        (
            "http://data.example:8080/a/b.csv?token=s3cr3t#frag",
            "http://data.example:8080/a/b.csv?***",
        ),
        ("http://data.example/plain.csv", "http://data.example/plain.csv"),
        ("http://[::1]:80/x.csv", "http://[::1]:80/x.csv"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_source_errors_and_names_never_show_credentials(server: Server) -> None:
    host = server.base.removeprefix("http://")
    url = f"http://reader:hunter2@{host}/imu.csv?token=s3cr3t"
    server.status = 404
    with pytest.raises(SourceUnavailableError) as caught:
        http_fetch(url)
    assert str(caught.value) == f"http://***@{host}/imu.csv?***: HTTP 404"
    # A malformed file: its rows are rejected under the redacted name.
    server.status, server.body = 200, b"t,ax,label,site\n1,not-a-number,walk,a\n"
    store = MemoryStore()
    result = collect(store, NS, NAME, _http_spec(url), store.clock)
    assert result.rejected == 1
    stored = b"".join(data for data, _ in store.objects.values())
    assert b"hunter2" not in stored and b"s3cr3t" not in stored
    assert f"http://***@{host}/imu.csv?***".encode() in stored


def test_the_operator_finds_an_unchanged_file_with_a_304_and_never_takes_a_body(
    server: Server,
) -> None:
    """What the operator asks before starting a collection Job (``unchanged``): a
    conditional request only; a changed file (200) is left for the Job to download."""
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body = _csv(ROWS)
    assert unchanged(store, NS, NAME, _http_spec(url)) is None  # nothing collected yet
    assert server.requests == []
    first = collect(store, NS, NAME, _http_spec(url), store.clock)
    same = unchanged(store, NS, NAME, _http_spec(url))
    assert same is not None and same.repeated and same.outcome == Outcome.NO_NEW_DATA
    assert same.latest == first.latest
    assert server.requests[-1][1:] == (304, server.current_etag, LAST_MODIFIED)
    server.body = _csv(ROWS[:30])
    assert unchanged(store, NS, NAME, _http_spec(url)) is None
    assert server.statuses()[-1] == 200  # answered, but its body was not read
    server.status = 500
    assert unchanged(store, NS, NAME, _http_spec(url)) is None  # the Job reports it


def test_without_validators_the_operator_leaves_the_check_to_the_job(server: Server) -> None:
    store, url = MemoryStore(), f"{server.base}/imu.csv"
    server.body, server.etag, server.last_modified = _csv(ROWS), False, False
    collect(store, NS, NAME, _http_spec(url), store.clock)
    assert unchanged(store, NS, NAME, _http_spec(url)) is None
    assert len(server.requests) == 1  # no request: only a download could tell
