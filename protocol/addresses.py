"""Which IP addresses are public unicast (spec 0005 §outbound): pure, no I/O.

:func:`forbidden_reason` says why an address is not public unicast (loopback,
private, link-local, CGNAT, multicast, reserved, and the IPv6 forms that embed such an
IPv4 address). A node checks every address it connects to a peer at with it
(``node.federation.addresses``, at connect time); a client checks the serving nodes a
stranger's ``feed`` event names (spec 0007 #feed-private).
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

__all__ = ["IPAddress", "forbidden_reason"]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_RULES = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        # First match wins: the single addresses come before the blocks holding them.
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # documentation
        ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast (deprecated)
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("198.51.100.0/24", "reserved"),  # documentation
        ("203.0.113.0/24", "reserved"),  # documentation
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_RULES = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("100::/64", "reserved"),  # discard-only
        ("64:ff9b:1::/48", "private"),  # local-use NAT64
        ("2001:db8::/32", "reserved"),  # documentation
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private"),  # site-local (deprecated)
        ("ff00::/8", "multicast"),
    )
)
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def forbidden_reason(ip: IPAddress) -> str | None:
    """None if ``ip`` is a public unicast address; else a short reason word.

    The words: ``loopback``, ``private``, ``link-local``, ``cgnat``, ``multicast``,
    ``unspecified``, ``this-network``, ``broadcast``, ``reserved`` (documentation,
    benchmarking, anything outside IPv6 global unicast). IPv6 forms that carry an IPv4
    address (mapped, compatible, NAT64, 6to4, Teredo) are judged by that address, so
    ``::ffff:127.0.0.1`` is ``loopback``.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for net4, reason4 in _V4_RULES:
            if ip in net4:
                return reason4
        return None if ip.is_global else "reserved"
    if ip == ipaddress.IPv6Address("::"):
        return "unspecified"
    if ip == ipaddress.IPv6Address("::1"):
        return "loopback"
    embedded = _embedded_v4(ip)
    if embedded:
        for v4 in embedded:
            reason = forbidden_reason(v4)
            if reason is not None:
                return reason
        return None
    for net6, reason6 in _V6_RULES:
        if ip in net6:
            return reason6
    if ip not in _GLOBAL_UNICAST or not ip.is_global:
        return "reserved"
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (empty for a plain IPv6 one)."""
    if ip in _V4_MAPPED or ip in _V4_COMPATIBLE or ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [client, server]
    return []
