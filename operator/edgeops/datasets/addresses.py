"""Which hosts an HTTP(S) source may reach: the guard against server-side request forgery.

A Dataset's URL is written by a tenant, and the operator fetches it from inside the
cluster. Without a guard, ``http://169.254.169.254/`` reads the node's cloud credentials,
``http://user@127.0.0.1:8080/`` the operator's own endpoints, and ``http://10.0.0.7:6379/``
any internal service (and the error told which ports are open). So, before any connection:

1. the URL's host is resolved here (``socket.getaddrinfo``, bounded by the fetch's
   deadline), and *every* address it resolves to is checked (:meth:`AddressPolicy.problem`);
   an IP literal in any spelling (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``) is
   resolved to the address it denotes and checked the same way;
2. the connection then goes to the checked address, never to a second resolution (DNS
   rebinding cannot swap in another address), with the original host in the Host header
   and as the TLS server name (see :mod:`edgeops.datasets.sources`);
3. redirects are followed by the caller, one hop at a time, each through this check.

Refused by default: private (RFC 1918, IPv6 unique-local), loopback, link-local, shared
(100.64.0.0/10), multicast, unspecified, reserved and documentation addresses, IPv6
addresses that embed one of those (IPv4-mapped, 6to4, Teredo, NAT64), and the cloud
metadata addresses (:data:`METADATA_ADDRESSES`). ``EDGEOPS_HTTP_SOURCE_ALLOW_PRIVATE_NETWORKS``
admits private, loopback, link-local and shared addresses; an IP or CIDR entry of
``EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS`` admits its network. Metadata, multicast, unspecified
and reserved addresses are never admitted.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from edgeops.settings import HostAllowlist, OperatorSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Instance metadata and host-agent endpoints of cloud providers (AWS, GCP, Azure,
#: OpenStack, Oracle: 169.254.169.254; AWS ECS and EKS Pod Identity agents; AWS IPv6;
#: Alibaba; Oracle's 192.0.0.192; Azure's WireServer, a public-looking address).
METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

#: Resolves (host, port) to addresses; tests replace it to simulate DNS answers.
Resolver = Callable[[str, int], list[str]]


class AddressRefusedError(Exception):
    """The host may not be fetched from. ``str()`` is generic on purpose: it never says
    whether the host resolved, to what, or whether anything listens there; ``why`` has
    the detail for the operator's own log."""

    def __init__(self, why: str) -> None:
        super().__init__("the host is not one HTTP(S) sources may use")
        self.why = why


@dataclass(frozen=True)
class AddressPolicy:
    """The checks of :func:`check_host`, from ``EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS`` and
    ``EDGEOPS_HTTP_SOURCE_ALLOW_PRIVATE_NETWORKS``."""

    allowlist: HostAllowlist | None = None
    allow_private_networks: bool = False

    @classmethod
    def from_settings(cls, config: OperatorSettings) -> AddressPolicy:
        return cls(config.http_source_allowlist, config.http_source_allow_private_networks)

    def problem(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None if it may."""
        embedded = _embedded_ipv4(address)
        for candidate in (address, embedded) if embedded is not None else (address,):
            found = self._problem(candidate)
            if found is not None:
                return found if candidate is address else f"{found} (embedded in {address})"
        return None

    def _problem(self, address: IPAddress) -> str | None:
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if address.is_unspecified:
            return "an unspecified address"
        if address.is_multicast:
            return "a multicast address"
        if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
            return "the broadcast address"
        if self.allowlist is not None and self.allowlist.admits_address(address):
            return None  # an explicitly listed network, private or not
        internal = _internal_kind(address)
        if internal is not None:
            return None if self.allow_private_networks else internal
        if address.is_reserved or not address.is_global:
            return "a reserved or non-global address"
        return None


def _internal_kind(address: IPAddress) -> str | None:
    """What kind of cluster- or host-internal address ``address`` is, if any."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.version == 4 and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private and not address.is_reserved:
        return "a private address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and may be translated to."""
    if address.version != 6:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(address))
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection on ``port``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


#: getaddrinfo has no timeout of its own: it runs here so a caller can stop waiting.
_resolvers = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


def check_host(
    host: str,
    port: int,
    policy: AddressPolicy,
    timeout: float,
    resolve: Resolver = system_resolver,
) -> IPAddress:
    """The address to connect to for ``host``: resolved once, every address checked.

    ``host`` is the URL's host as the HTTP client parsed it (lower case; an IPv6 literal
    without brackets). Allowed hosts (when configured) are matched on the name, or on
    every resolved address for IP and CIDR entries.

    Raises:
        AddressRefusedError: the name is not allowed, does not resolve within ``timeout``
            seconds, or an address it resolves to is refused (``why`` says which).
    """
    name = host.lower().rstrip(".").strip("[]")
    if not name:
        raise AddressRefusedError("no host")
    future = _resolvers.submit(resolve, name, port)
    try:
        resolved = future.result(timeout=max(timeout, 0.0))
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise AddressRefusedError(f"{name} did not resolve within {timeout:.1f}s") from None
    except (OSError, UnicodeError, ValueError) as error:
        raise AddressRefusedError(f"{name} did not resolve: {type(error).__name__}") from None
    addresses: list[IPAddress] = []
    for text in resolved:
        try:
            addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            raise AddressRefusedError(f"{name} resolved to {text!r}") from None
    if not addresses:
        raise AddressRefusedError(f"{name} resolved to no address")
    allowlist = policy.allowlist
    if (
        allowlist is not None
        and not allowlist.admits_name(name)
        and not all(allowlist.admits_address(a) for a in addresses)
    ):
        raise AddressRefusedError(f"{name} is not in the allowed hosts")
    for address in addresses:
        problem = policy.problem(address)
        if problem is not None:
            raise AddressRefusedError(f"{name} resolves to {address}, {problem}")
    return addresses[0]
