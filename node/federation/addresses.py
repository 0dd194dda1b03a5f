"""Which addresses a node may connect to, checked on the resolved address at connect time.

Spec 0005 §outbound. :func:`~protocol.addresses.forbidden_reason` (pure, shared with
the client) says why an address is not public unicast (loopback, private, link-local,
CGNAT, multicast, reserved, and the IPv6 forms that embed such an IPv4 address).
:class:`GuardedNetworkBackend` is the httpcore
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

from protocol.addresses import IPAddress, forbidden_reason

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

#: ``(host, port) -> IP address strings``; raises OSError when the name does not resolve.
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]
#: Most resolved addresses tried for one connection (a hostile DNS answer can be long).
MAX_ADDRESSES_TRIED = 8


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
