"""Server-side request forgery through HTTP(S) sources (issue 17, item 4), and the bounds of
one download (item 6): with the default settings a loopback, private or metadata URL is
refused before any connection, with a message that tells nothing about the target; every
redirect is checked the same way; the connection goes to the address that was checked; a
trickling server is cut off at the overall deadline and a large body at the size limit.

Network: every server here listens on 127.0.0.1 (or 127.0.0.2); metadata and private
addresses appear only as DNS answers or URL literals that must be refused before a socket
is opened, and ``no_connections`` fails the test if one ever is.
"""

from __future__ import annotations

import http.server
import ipaddress
import re
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from edgeops.api import Reason
from edgeops.datasets.addresses import AddressPolicy, AddressRefusedError, check_host
from edgeops.datasets.ingest import collect
from edgeops.datasets.sources import (
    MAX_REDIRECTS,
    FetchLimits,
    SourceLimitError,
    SourceRefusedError,
    SourceUnavailableError,
    http_fetch,
)
from edgeops.settings import parse_host_allowlist
from tests.unit.test_datasets_ingest import HEADER, NAME, NS, ROWS, MemoryStore, _spec

CSV = (HEADER + "".join(ROWS)).encode()
GENERIC = "refused: the host is not one HTTP(S) sources may use"


@dataclass
class Connections:
    """Every TCP connection this process attempted, by (host, port)."""

    attempted: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    """Records (and lets through, to loopback only) every outgoing connection."""
    seen = Connections()
    real_connect = socket.socket.connect  # socket.create_connection calls it too

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.attempted.append((str(address[0]), int(address[1])))
            assert ipaddress.ip_address(address[0]).is_loopback, f"connection to {address}"
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def listener() -> Iterator[tuple[int, list[int]]]:
    """A bare loopback listener that counts the connections it accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], accepted
    stop.set()
    thread.join()
    sock.close()


@dataclass
class Site:
    base: str
    port: int
    #: path -> (status, headers, body)
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hosts: list[str | None] = field(default_factory=list)


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site("", 0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hosts.append(self.headers.get("Host"))
            status, headers, body = state.routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.port = httpd.server_address[1]
    state.base = f"http://127.0.0.1:{state.port}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _limits(
    allowed: str | None = None,
    private: bool = False,
    deadline: float = 10.0,
    max_bytes: int = 1 << 20,
) -> FetchLimits:
    allowlist = parse_host_allowlist(allowed) if allowed else None
    return FetchLimits(deadline, max_bytes, AddressPolicy(allowlist, private))


def _dns(answers: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


# ----- refused by default, before any connection ------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://reader:hunter2@127.0.0.1:{port}/imu.csv",  # loopback behind userinfo
        "http://data.example.com@127.0.0.1:{port}/imu.csv",  # looks like another host
        "http://[::1]:{port}/imu.csv",
        "http://[::ffff:127.0.0.1]:{port}/imu.csv",  # IPv4-mapped IPv6
        "http://2130706433:{port}/imu.csv",  # 127.0.0.1 as one decimal number
        "http://0x7f.1:{port}/imu.csv",  # and in hex shorthand
        "http://localhost:{port}/imu.csv",
        "http://127.0.0.2:{port}/imu.csv",
    ],
)
def test_loopback_is_refused_by_default_without_a_connection(
    url: str, listener: tuple[int, list[int]], connections: Connections
) -> None:
    port, accepted = listener
    with pytest.raises(SourceRefusedError) as caught:
        http_fetch(url.format(port=port))
    message = str(caught.value)
    assert GENERIC in message
    assert caught.value.reason == Reason.SOURCE_REFUSED
    # Nothing about the target: no connection was tried, so no error class, no status.
    for probe in ("Connect", "refused by", "HTTP ", "timed out", "hunter2", "resolves"):
        assert probe not in message
    time.sleep(0.3)
    assert accepted == [] and connections.attempted == []


@pytest.mark.parametrize(
    ("host", "answer"),
    [
        ("metadata.attacker.example", "169.254.169.254"),  # cloud metadata
        ("ecs.attacker.example", "169.254.170.2"),
        ("v6.attacker.example", "fd00:ec2::254"),
        ("internal.attacker.example", "10.0.0.7"),
        ("kube.attacker.example", "172.20.0.1"),
        ("home.attacker.example", "192.168.1.1"),
        ("cgnat.attacker.example", "100.64.0.1"),
        ("linklocal.attacker.example", "169.254.1.1"),
        ("nat64.attacker.example", "64:ff9b::a9fe:a9fe"),  # NAT64 of 169.254.169.254
        ("sixtofour.attacker.example", "2002:7f00:1::1"),  # 6to4 of 127.0.0.1
        ("zero.attacker.example", "0.0.0.0"),
        ("multicast.attacker.example", "224.0.0.1"),
        ("azure.attacker.example", "168.63.129.16"),
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused(
    host: str, answer: str, connections: Connections
) -> None:
    """Only the DNS answer is simulated; the check runs on it and nothing connects."""
    with pytest.raises(SourceRefusedError, match=re.escape(GENERIC)):
        http_fetch(f"http://{host}/latest/meta-data/", resolve=_dns({host: [answer]}))
    assert connections.attempted == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1:6379/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_address_literals_are_refused_without_a_connection(
    url: str, connections: Connections
) -> None:
    with pytest.raises(SourceRefusedError, match=re.escape(GENERIC)):
        http_fetch(url)
    assert connections.attempted == []


def test_one_bad_address_among_several_refuses_the_host(connections: Connections) -> None:
    resolve = _dns({"mixed.example": ["93.184.215.14", "127.0.0.1"]})
    with pytest.raises(SourceRefusedError):
        http_fetch("http://mixed.example/x.csv", resolve=resolve)
    assert connections.attempted == []


def test_a_name_that_does_not_resolve_gets_the_same_message(connections: Connections) -> None:
    """Whether an internal name exists is not told either."""
    with pytest.raises(SourceRefusedError, match=re.escape(GENERIC)):
        http_fetch("http://nope.invalid/x.csv", resolve=_dns({}))
    assert connections.attempted == []


def test_a_collection_of_a_metadata_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, connections: Connections
) -> None:
    """End to end through collect() with the default settings, the real resolver and only
    getaddrinfo's answer patched."""
    for name in ("EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS", "EDGEOPS_HTTP_SOURCE_ALLOW_PRIVATE_NETWORKS"):
        monkeypatch.delenv(name, raising=False)

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "creds.attacker.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    store = MemoryStore()
    spec = _spec(sources=[{"http": {"url": "http://u:pw@creds.attacker.example/x.csv?token=t"}}])
    with pytest.raises(SourceRefusedError) as caught:
        collect(store, NS, NAME, spec, store.clock)
    assert str(caught.value) == f"http://***@creds.attacker.example/x.csv?***: {GENERIC} " + (
        "(private, loopback, link-local and metadata addresses are refused unless "
        "EDGEOPS_HTTP_SOURCE_ALLOW_PRIVATE_NETWORKS is set; EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS "
        "lists the hosts allowed)"
    )
    assert connections.attempted == []


# ----- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://reader@127.0.0.2:{port}/x.csv",
        "http://[::1]:{port}/x.csv",
        "http://10.1.2.3/x.csv",
    ],
)
def test_every_redirect_is_checked(
    location: str, site: Site, listener: tuple[int, list[int]], connections: Connections
) -> None:
    port, accepted = listener
    site.routes["/start"] = (302, {"Location": location.format(port=port)}, b"")
    with pytest.raises(SourceRefusedError, match=re.escape(GENERIC)):
        http_fetch(f"{site.base}/start", limits=_limits(allowed="127.0.0.1"))
    # The first hop (admitted 127.0.0.1) only; the redirect's target never.
    assert connections.attempted == [("127.0.0.1", site.port)]
    assert accepted == []


def test_redirects_within_the_allowed_hosts_are_followed_up_to_a_limit(site: Site) -> None:
    site.routes["/a"] = (301, {"Location": "/b"}, b"")
    site.routes["/b"] = (307, {"Location": f"{site.base}/imu.csv"}, b"")
    site.routes["/imu.csv"] = (200, {}, CSV)
    assert http_fetch(f"{site.base}/a", limits=_limits(allowed="127.0.0.1")).body == CSV
    site.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(SourceUnavailableError, match=f"more than {MAX_REDIRECTS} redirects"):
        http_fetch(f"{site.base}/loop", limits=_limits(allowed="127.0.0.1"))
    site.routes["/file"] = (302, {"Location": "file:///etc/passwd"}, b"")
    with pytest.raises(SourceUnavailableError, match="non-HTTP"):
        http_fetch(f"{site.base}/file", limits=_limits(allowed="127.0.0.1"))


# ----- what is admitted, and how it is connected to ----------------------------------------


def test_the_connection_goes_to_the_checked_address_with_the_original_host(
    site: Site, connections: Connections
) -> None:
    """DNS rebinding: the name is resolved once per hop; a second answer (here the
    metadata address) is never asked for, and the Host header keeps the name."""
    site.routes["/imu.csv"] = (200, {}, CSV)
    calls: list[str] = []
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    url = f"http://data.test:{site.port}/imu.csv"
    body = http_fetch(url, limits=_limits(allowed="127.0.0.1"), resolve=rebinding).body
    assert body == CSV
    assert calls == ["data.test"]
    assert connections.attempted == [("127.0.0.1", site.port)]
    assert site.hosts == [f"data.test:{site.port}"]


def test_allowed_hosts_admit_names_suffixes_and_networks() -> None:
    public = "93.184.215.14"
    dns = _dns(
        {
            "data.example.com": [public],
            "eu.data.example.org": [public],
            "other.example.net": [public],
            "nas.corp": ["10.20.1.5"],
            "db.corp": ["10.30.1.5"],
        }
    )
    policy = AddressPolicy(parse_host_allowlist("data.example.com, *.example.org, 10.20.0.0/16"))
    for host in ("data.example.com", "eu.data.example.org", "nas.corp"):
        assert check_host(host, 80, policy, 1.0, dns) is not None
    for host in ("other.example.net", "example.org", "db.corp"):
        with pytest.raises(AddressRefusedError):
            check_host(host, 80, policy, 1.0, dns)
    # Without an allowlist: any public host, no internal one.
    assert str(check_host("other.example.net", 80, AddressPolicy(), 1.0, dns)) == public
    with pytest.raises(AddressRefusedError) as caught:
        check_host("nas.corp", 80, AddressPolicy(), 1.0, dns)
    assert caught.value.why == "nas.corp resolves to 10.20.1.5, a private address"


def test_the_private_network_opt_in_never_admits_metadata() -> None:
    opted_in = AddressPolicy(allow_private_networks=True)
    for admitted in ("10.0.0.7", "127.0.0.1", "::1", "100.64.0.1", "fd12::1", "169.254.1.1"):
        assert opted_in.problem(ipaddress.ip_address(admitted)) is None, admitted
    for refused in (
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
    ):
        assert opted_in.problem(ipaddress.ip_address(refused)) is not None, refused
    # Not even when an allowed network contains it.
    listed = AddressPolicy(parse_host_allowlist("169.254.0.0/16"))
    assert listed.problem(ipaddress.ip_address("169.254.169.254")) is not None
    assert listed.problem(ipaddress.ip_address("169.254.1.1")) is None


# ----- bounds of one download ----------------------------------------------------------------


def _trickle_server(first: bytes, every: float) -> tuple[str, threading.Event]:
    """A loopback server that sends ``first`` and then one byte every ``every`` seconds,
    for ever (each read by the client succeeds well within its read timeout)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(first)
                while not stop.wait(every):
                    conn.sendall(b"x")
            except OSError:
                pass
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/slow.csv", stop


@pytest.mark.parametrize(
    "first",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nt,ax\r\n",  # a slow body
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # slow headers
    ],
)
def test_a_trickling_server_is_cut_off_at_the_deadline(first: bytes) -> None:
    url, stop = _trickle_server(first, every=0.1)
    started = time.monotonic()
    try:
        with pytest.raises(SourceLimitError) as caught:
            http_fetch(url, limits=_limits(allowed="127.0.0.1", deadline=1.5, max_bytes=1 << 30))
    finally:
        stop.set()
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 3.0, elapsed  # not the 30 s read timeout, nor for ever
    assert "not downloaded within 1.5s (EDGEOPS_HTTP_SOURCE_DEADLINE_SECONDS)" in str(caught.value)
    assert caught.value.reason == Reason.SOURCE_LIMIT_EXCEEDED


def test_a_large_body_stops_at_the_size_limit(site: Site) -> None:
    site.routes["/big.csv"] = (200, {}, b"0" * (8 << 20))
    limits = _limits(allowed="127.0.0.1", max_bytes=1 << 20)
    # Content-Length says it: refused before the body is read.
    with pytest.raises(SourceLimitError, match=r"larger than 1048576 bytes \(EDGEOPS_SOURCE_MAX"):
        http_fetch(f"{site.base}/big.csv", limits=limits)


def test_a_large_body_without_a_length_stops_at_the_size_limit() -> None:
    """8 MiB sent without Content-Length: reading stops after 1 MiB, and the peak memory
    of the download stays near the limit, not the body's size."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                for _ in range(128):
                    conn.sendall(b"0" * 65536)
            except OSError:
                pass
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/big.csv"
    tracemalloc.start()
    try:
        with pytest.raises(SourceLimitError, match="larger than 1048576 bytes"):
            http_fetch(url, limits=_limits(allowed="127.0.0.1", max_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB for a 1 MiB limit"
