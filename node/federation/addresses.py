"""Which addresses a node may connect to, checked on the resolved address at connect time.

Spec 0005 §outbound. :func:`forbidden_reason` says why an address is not public
unicast (loopback, private, link-local, CGNAT, multicast, reserved, and the IPv6 forms
that embed such an IPv4 address). :class:`GuardedNetworkBackend` is the httpcore
network backend of every peer client (:mod:`node.federation.outbound`): it resolves
the host itself, drops refused addresses, and connects the socket to exactly an
address that was checked, so DNS rebinding and redirects cannot get around the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeAlias

import anyio
import httpcore
import httpx

__all__ = [
    "MAX_ADDRESSES_TRIED",
    "ForbiddenConnect",
    "ForbiddenConnectError",
    "GuardedNetworkBackend",
    "IPAddress",
    "Resolver",
    "forbidden_reason",
    "select_addresses",
    "system_resolver",
]

log = logging.getLogger("murmur.node.outbound")

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> IP address strings``; raises OSError when the name does not resolve.
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]
#: Most resolved addresses tried for one connection (a hostile DNS answer can be long).
MAX_ADDRESSES_TRIED = 8


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


def select_addresses(
    addresses: Iterable[str], *, allow_private: bool
) -> tuple[list[IPAddress], list[tuple[str, str]]]:
    """Split resolved addresses into the allowed ones (order kept, no duplicates) and
    the refused ones as ``(address, reason)``; unparsable strings are ``invalid``."""
    allowed: list[IPAddress] = []
    refused: list[tuple[str, str]] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            refused.append((text, "invalid"))
            continue
        reason = None if allow_private else forbidden_reason(ip)
        if reason is not None:
            refused.append((text, reason))
        elif ip not in allowed:
            allowed.append(ip)
    return allowed, refused


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's addresses for ``host`` (``getaddrinfo``), deduplicated, order kept."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


class ForbiddenConnect(httpcore.ConnectError):
    """Raised by the backend when every address of a host is refused."""

    def __init__(self, host: str, refused: list[tuple[str, str]]) -> None:
        self.host = host
        self.refused = refused
        shown = ", ".join(f"{addr} ({reason})" for addr, reason in refused[:4])
        more = f" and {len(refused) - 4} more" if len(refused) > 4 else ""
        super().__init__(f"{host} resolves only to refused addresses: {shown}{more}")


class ForbiddenConnectError(httpx.ConnectError):
    """The httpx form of :class:`ForbiddenConnect`, raised by the peer transport."""


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore backend that connects only to allowed, resolved addresses.

    ``connect_tcp`` resolves the host (an IP literal is used as is), drops refused
    addresses unless ``allow_private``, and connects to the first allowed address that
    answers, by IP, through ``inner`` (anyio by default). Unix sockets are refused.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolver: Resolver = resolver or system_resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        allowed, refused = select_addresses(addresses, allow_private=self._allow_private)
        if not allowed:
            if refused:
                log.warning(
                    "peer address refused host=%s addresses=%s",
                    host,
                    ",".join(f"{a}:{r}" for a, r in refused),
                )
                raise ForbiddenConnect(host, refused)
            raise httpcore.ConnectError(f"{host} resolves to no address")
        if refused:
            log.info("peer addresses skipped host=%s count=%d", host, len(refused))
        last: Exception | None = None
        for ip in allowed[:MAX_ADDRESSES_TRIED]:
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                log.debug("peer connect failed host=%s address=%s error=%s", host, ip, exc)
                last = exc
        if last is None:  # unreachable: `allowed` is not empty
            raise httpcore.ConnectError(f"{host}: no address tried")
        raise last

    async def _resolve(self, host: str, port: int, limit_s: float | None) -> list[str]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [host]
        try:
            with anyio.fail_after(limit_s):
                return list(await self._resolver(host, port))
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except (OSError, ValueError) as exc:  # gaierror; UnicodeError from IDNA
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenConnect(path, [(path, "unix-socket")])

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
