"""The client's settings in ``$MURMUR_HOME/config.toml``: node set and petnames.

::

    nodes = ["http://127.0.0.1:8701", "http://127.0.0.1:8702"]

    [petnames]          # alias -> did, like an address book (never sent anywhere)
    bob = "did:key:z6Mk..."

The file is rewritten atomically on every change and may be edited by hand; unknown
keys are kept. Node URLs are normalised (scheme and host lower-cased, no trailing
slash) so the same node is never listed twice.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from client.errors import KeystoreError
from client.files import atomic_write, read_toml, translate_os_errors
from protocol.errors import BadRequestError, InvalidDidError
from protocol.identity import did_method

__all__ = ["NODE_URL_FORM", "ClientConfig", "normalize_node_url"]

_ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


#: A host name: letters, digits, ``-``, ``_`` and dots (IP literals are checked apart).
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?\Z")
#: What a node URL looks like, for error messages.
NODE_URL_FORM = "http(s)://HOST[:PORT][/PATH], or HOST:PORT for http"


def normalize_node_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; raises ``BadRequestError``.

    Without a scheme, only ``HOST:PORT`` is taken (as ``http://HOST:PORT``): a bare
    word such as ``notaurl`` is a mistake, not the node ``http://notaurl``.
    """
    text = url.strip()
    schemeless = "://" not in text
    if schemeless:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise BadRequestError(f"node URL {url!r} must use http or https ({NODE_URL_FORM})")
    if not parts.hostname:
        raise BadRequestError(f"node URL {url!r} has no host ({NODE_URL_FORM})")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BadRequestError(f"node URL {url!r} must not carry credentials, query or fragment")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        raise BadRequestError(f"node URL {url!r} has an invalid port (1-65535)")
    host = parts.hostname.lower()
    if not _valid_host(host):
        raise BadRequestError(f"node URL {url!r} has an invalid host {host!r} ({NODE_URL_FORM})")
    if schemeless and port is None:
        raise BadRequestError(f"{url!r} is not a node URL ({NODE_URL_FORM})")
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _valid_host(host: str) -> bool:
    """A DNS name (RFC 1123 characters, plus ``_`` as resolvers allow) or an IP literal."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_HOST_RE.match(host)) and ".." not in host


@dataclass(slots=True)
class ClientConfig:
    path: Path
    nodes: list[str] = field(default_factory=list)
    petnames: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path) -> ClientConfig:
        path = home / "config.toml"
        if not path.exists():
            return cls(path=path)
        doc = read_toml(path, "valid TOML")
        nodes = doc.pop("nodes", [])
        petnames = doc.pop("petnames", {})
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise KeystoreError(f"{path}: 'nodes' must be a list of URLs")
        if not isinstance(petnames, dict) or not all(isinstance(v, str) for v in petnames.values()):
            raise KeystoreError(f"{path}: [petnames] must map names to dids")
        return cls(path=path, nodes=list(nodes), petnames=dict(petnames), extra=doc)

    def save(self) -> None:
        doc: dict[str, Any] = {**self.extra, "nodes": self.nodes, "petnames": self.petnames}
        with translate_os_errors(f"write {self.path}"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, tomli_w.dumps(doc).encode("utf-8"), mode=0o600)

    # -- nodes --------------------------------------------------------------------

    def add_node(self, url: str) -> tuple[str, bool]:
        """Add ``url``; returns the normalised URL and whether it was new."""
        norm = normalize_node_url(url)
        if norm in self.nodes:
            return norm, False
        self.nodes.append(norm)
        return norm, True

    def remove_node(self, url: str) -> str:
        norm = normalize_node_url(url)
        if norm not in self.nodes:
            raise BadRequestError(f"{norm} is not in the node set (see: murmur nodes list)")
        self.nodes.remove(norm)
        return norm

    # -- petnames -----------------------------------------------------------------

    def set_petname(self, alias: str, did: str) -> None:
        if not _ALIAS_RE.match(alias) or alias.startswith("did:"):
            raise BadRequestError(f"alias {alias!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        did_method(did)
        self.petnames[alias] = did

    def resolve(self, who: str) -> str:
        """A did from a did or a petname; raises with a hint when neither."""
        if who.startswith("did:"):
            did_method(who)
            return who
        if who in self.petnames:
            return self.petnames[who]
        raise InvalidDidError(
            f"{who!r} is neither a did (did:key or did:murmur) nor a known alias "
            f"(murmur follow DID --alias {who})"
        )

    def alias_of(self, did: str) -> str | None:
        for alias, known in self.petnames.items():
            if known == did:
                return alias
        return None
