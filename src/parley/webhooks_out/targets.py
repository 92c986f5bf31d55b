"""The SSRF guard: which webhook targets Parley may connect to.

A customer-supplied URL must not turn Parley into a probe of its own network, so only
http(s) URLs whose host resolves to publicly routable addresses are accepted: loopback,
private (RFC 1918, ULA), link-local, multicast, unspecified, reserved and carrier-grade
NAT (100.64/10) addresses are refused, as are IPv6 forms that embed one of those
(IPv4-mapped ``::ffff:10.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``). An
operator whose receivers live on the private network sets
``PARLEY_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true``.

The check runs when an endpoint is created or its URL changed (every resolved address
must pass) and again on every delivery, inside the HTTP client's resolver, so the
address connected to is the one checked (DNS rebinding between check and connect gets
nowhere); see ``sender.GuardedResolver``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALLOW_HINT = "set PARLEY_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true to allow it"


class TargetRefused(Exception):
    """A webhook URL Parley will not connect to (the message says why)."""


def refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public target (None: it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            return f"embeds {embedded}, which {inner}" if inner else None
    checks = (
        (address.is_unspecified, "is the unspecified address"),
        (address.is_loopback, "is a loopback address"),
        (address.is_link_local, "is a link-local address"),
        (address.is_multicast, "is a multicast address"),
        (address.version == 4 and address in _CGNAT, "is a carrier-grade NAT address"),
        (address.is_private, "is a private address"),
        (address.is_reserved, "is a reserved address"),
        (not address.is_global, "is not a publicly routable address"),
    )
    return next((why for hit, why in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; TargetRefused names what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("must be an http or https URL")
    host = parts.hostname
    if not host:
        raise TargetRefused("has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def check_address(host: str, address: IPAddress) -> None:
    why = refusal(address)
    if why is not None:
        shown = host if str(address) == host else f"{host} ({address})"
        raise TargetRefused(f"{shown} {why}; {ALLOW_HINT}")


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose scheme is wrong or whose host is (or resolves to) a non-public
    address. Every resolved address must pass: one private answer is enough to refuse."""
    _, host, port = split(url)
    if allow_private:
        return
    literal = literal_address(host)
    if literal is not None:
        check_address(host, literal)
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror, "label too long", ...
        raise TargetRefused(f"host {host} does not resolve ({exc})") from None
    for info in infos:
        address = literal_address(str(info[4][0]))
        if address is not None:
            check_address(host, address)
