"""Node configuration: one frozen dataclass, loaded from TOML with CLI overrides.

A node is configured by :class:`NodeConfig`. :func:`load_config` reads an optional
TOML file (``[node]``, ``[limits]``, ``[federation]`` and ``[store]`` tables, and
``[[feeds]]`` entries: spec 0004 §configuration, #feeds-config), applies
overrides given as a flat mapping (the CLI flags), and rejects unknown keys and values
of the wrong type with a :class:`ConfigError` that names the key. There is no global
configuration: ``create_app(config)`` receives it, and tests build one directly.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from node.store.base import BLOB_AUTHOR_BYTES
from protocol.errors import FeedError
from protocol.events import DEFAULT_NETWORK
from protocol.feeds.load import check_feed_type
from protocol.kinds import is_feed_name
from protocol.limits import MAX_BLOB_BYTES, MAX_FEED_DESCRIPTION_BYTES, MAX_WIRE_BYTES

#: ``node.verify_in`` (spec 0004 #verify-workers).
VERIFY_MODES: Final = ("auto", "processes", "threads")

__all__ = [
    "DEFAULT_PORT",
    "ConfigError",
    "FederationConfig",
    "FeedConfig",
    "NodeConfig",
    "NodeLimits",
    "VERIFY_MODES",
    "default_data_dir",
    "load_config",
    "redact_url",
    "system_now_ms",
]

DEFAULT_PORT = 8701


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


def redact_url(url: str) -> str:
    """``url`` without its password (for logs and ``/v1/info``)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _check_store_url(url: str) -> None:
    """A PostgreSQL URL (spec 0004 §store): ``postgresql://USER@HOST:PORT/DB``."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not url.startswith(parts.scheme + "://"):
        raise ConfigError(
            f"store.url {shown!r} must be a postgresql://USER@HOST:PORT/DB URL "
            "(leave it unset for the SQLite store in the data directory)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"store.url {shown!r} has an invalid port") from None
    if parts.path.strip("/") == "":
        raise ConfigError(f"store.url {shown!r} names no database (postgresql://.../DB)")


def system_now_ms() -> int:
    """Milliseconds since the epoch from the system clock (the default node clock)."""
    return time.time_ns() // 1_000_000


def default_data_dir() -> Path:
    """``$MURMUR_HOME/node``, or ``~/.murmur/node`` when ``MURMUR_HOME`` is unset."""
    home = os.environ.get("MURMUR_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".murmur"
    return (base / "node").absolute()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLimits:
    """Hard limits of one node (spec 0004 §limits). All sizes in bytes, times in ms."""

    #: Largest request body; larger bodies get 413 before they are buffered.
    max_request_bytes: int = 8 * 1024 * 1024
    #: Most events in one ingest batch.
    max_batch: int = 1000
    #: Largest single wire event; never above the protocol's own limit.
    max_event_bytes: int = MAX_WIRE_BYTES
    #: Per-IP token bucket: sustained requests per second and burst size.
    rate_per_ip: int = 50
    rate_burst: int = 200
    #: Most distinct IPs tracked by the rate limiter (least recently seen are dropped).
    rate_max_ips: int = 10_000
    #: Whole-request deadline for everything but the stream.
    request_timeout_ms: int = 30_000
    #: Deadline for receiving a request body.
    body_timeout_ms: int = 15_000
    #: A connection is closed when it has not delivered a complete request head this
    #: long after it opened or after its last response (slow-drip headers, idle
    #: keep-alive connections).
    idle_timeout_ms: int = 15_000
    #: Largest page of any list endpoint; ``limit`` above it is clamped.
    max_page: int = 500
    #: Most authors in one feed request.
    max_feed_authors: int = 500
    #: Most concurrent stream subscribers; more get 503 (spec 0004 §stream-slots).
    max_subscribers: int = 256
    #: Most streams one client address may hold at once; more get 429. An address
    #: where this node reaches working peers may hold one more per such peer.
    max_streams_per_address: int = 8
    #: Of ``max_subscribers``, slots only streams from a working peer's address may
    #: take (at most half of ``max_subscribers``), so a crowd of readers, or one
    #: address holding many streams, never locks federation out.
    peer_stream_reserve: int = 64
    #: A stream is closed cleanly after at most this long (at least three quarters of
    #: it, at random); its subscriber resumes by cursor. No slot is held forever.
    stream_max_lifetime_ms: int = 600_000
    #: Seconds between stream heartbeats (comments) when nothing happens.
    heartbeat_ms: int = 15_000
    #: A stream write that takes longer than this disconnects the subscriber.
    stream_write_timeout_ms: int = 30_000
    #: Most events the head endpoint analyses for one author.
    max_chain_scan: int = 100_000
    #: Global admission gate over all clients: most requests with a body (ingest,
    #: sync, announcements) processed at once, and most body bytes they may hold;
    #: beyond either, 503 with Retry-After (spec 0004 §limits).
    max_inflight_ingest: int = 32
    max_inflight_bytes: int = 16 * 1024 * 1024
    #: Per-address token bucket of peer announcements (``POST /v1/peers``), apart from
    #: ``rate_per_ip``: sustained announcements per minute and burst size; more get
    #: 429 (spec 0005 §announce-limits).
    announce_per_minute: int = 12
    announce_burst: int = 8
    #: Image uploads (spec 0004 #blob-upload): most bytes one client address may
    #: upload in an hour (a token bucket; more get 429), and most bytes of uploads no
    #: stored post uses yet the node holds in all (more get 503).
    blob_upload_bytes_per_hour: int = 64 * 1024 * 1024
    blob_pending_bytes: int = 256 * 1024 * 1024
    #: How long an upload no stored post uses is kept (spec 0004 #blob-keep).
    blob_upload_grace_ms: int = 15 * 60 * 1000
    #: Most held image bytes the posts of one author keep; a post beyond it is
    #: stored, its new images' bytes are not.
    blob_author_bytes: int = BLOB_AUTHOR_BYTES
    #: Served feeds (spec 0004 #feed-cache): a page not made within this long is
    #: ``feed-timeout`` (504); pages kept in the node's cache (all feeds, least
    #: recently used dropped); pages of one feed computed at once (a request finding
    #: none free within 250 ms gets 503).
    feed_deadline_ms: int = 1000
    feed_cache_entries: int = 1000
    feed_concurrency: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"limits.{f.name} must be a positive integer")
        if self.max_event_bytes > MAX_WIRE_BYTES:
            raise ConfigError(f"limits.max_event_bytes cannot exceed {MAX_WIRE_BYTES}")
        if self.rate_burst < 1:
            raise ConfigError("limits.rate_burst must be at least 1")
        for name in ("blob_upload_bytes_per_hour", "blob_pending_bytes", "blob_author_bytes"):
            if getattr(self, name) < MAX_BLOB_BYTES:
                # Else one image of the largest size could never be taken.
                raise ConfigError(f"limits.{name} must be at least {MAX_BLOB_BYTES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationConfig:
    """How a node federates with its peers (spec 0005). Times in ms, sizes in bytes."""

    #: Learn peers from peers (``GET /v1/peers``) and accept announcements
    #: (``POST /v1/peers``). Off: only the configured peers are ever contacted.
    peer_exchange: bool = True
    #: Anti-entropy with each connected peer this often (plus after every (re)connect).
    sync_interval_ms: int = 60_000
    #: Ask each connected peer for its peers this often.
    gossip_interval_ms: int = 300_000
    #: Reconnect delays: exponential from min to max, each with +-50% jitter.
    backoff_min_ms: int = 1_000
    backoff_max_ms: int = 300_000
    #: Most peers known at once (static ones always fit; gossip fills the rest).
    max_peers: int = 32
    #: Largest negentropy message sent or answered (0 would mean unlimited; not allowed).
    sync_frame_bytes: int = 1_000_000
    #: Ids per fetch request, and events per offer batch, during anti-entropy.
    fetch_batch: int = 100
    offer_batch: int = 500
    #: Timeouts of outbound calls to peers.
    connect_timeout_ms: int = 5_000
    read_timeout_ms: int = 45_000
    total_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "peer_exchange":
                if not isinstance(value, bool):
                    raise ConfigError("federation.peer_exchange must be true or false")
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"federation.{f.name} must be a positive integer")
        if self.backoff_min_ms > self.backoff_max_ms:
            raise ConfigError("federation.backoff_min_ms cannot exceed backoff_max_ms")
        if not 4096 <= self.sync_frame_bytes <= 16 * 1024 * 1024:
            raise ConfigError("federation.sync_frame_bytes must be from 4096 to 16777216")
        if self.fetch_batch > 100:
            raise ConfigError("federation.fetch_batch cannot exceed 100 (GET /v1/events?ids=)")


#: Longest page cache lifetime a feed may ask for, in seconds.
MAX_FEED_CACHE_S: Final = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedConfig:
    """One ``[[feeds]]`` entry: a feed plugin this node serves at ``/v1/feeds/{name}``.

    ``type`` is a built-in name, ``PATH.py:Class`` (a relative path is resolved against
    the directory of the configuration file when loaded from one) or ``entry:NAME``;
    the feed is built as ``Class(**params)`` when the node starts (spec 0009
    #loading). ``description`` None: the feed's own. ``cache_s``: how long a page is
    served from the cache (0: never cached)."""

    name: str
    type: str
    description: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    cache_s: float = 30

    def __post_init__(self) -> None:
        where = f"feeds {self.name!r}"
        # A served feed's name is its path segment in /v1/feeds/{name}, and the
        # ``feed`` kind's ``name`` (spec 0003 #feed) that announces it.
        if not is_feed_name(self.name):
            raise ConfigError(
                f"feeds: name {self.name!r} must be 1-64 of a-z 0-9 _ . - starting with "
                "a letter or digit"
            )
        if not isinstance(self.type, str) or not self.type:
            raise ConfigError(f"{where}: type must be a feed type (a built-in, PATH.py:Class "
                              "or entry:NAME)")  # fmt: skip
        if self.description is not None and (
            not isinstance(self.description, str)
            or len(self.description.encode("utf-8", "surrogatepass"))
            > MAX_FEED_DESCRIPTION_BYTES
        ):
            raise ConfigError(
                f"{where}: description must be a string of at most "
                f"{MAX_FEED_DESCRIPTION_BYTES} bytes"
            )
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"{where}: params must be a table")
        cache = self.cache_s
        if (
            not isinstance(cache, int | float)
            or isinstance(cache, bool)
            or not 0 <= cache <= MAX_FEED_CACHE_S
        ):
            raise ConfigError(f"{where}: cache_s must be a number of seconds from 0 to "
                              f"{MAX_FEED_CACHE_S}")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a node needs to run. ``now_ms`` is the injected clock."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    peers: tuple[str, ...] = ()
    network: str = DEFAULT_NETWORK
    allow_private_peers: bool = False
    #: The URL other nodes reach this one at, announced to peers; None derives it from
    #: host and port unless the node listens on a wildcard address (then: not announced).
    public_url: str | None = None
    #: Decoding and signature-check workers; 0 means one per usable CPU.
    verify_workers: int = 0
    #: Where they run (spec 0004 #verify-workers): "processes", "threads", or "auto"
    #: (processes where the node may use more than one CPU, else threads).
    verify_in: str = "auto"
    #: SQLite ``synchronous`` mode: "full" (fsync every commit) or "normal".
    sqlite_synchronous: str = "full"
    log_level: str = "info"
    #: ``postgresql://USER@HOST:PORT/DB``: the node's events live in that PostgreSQL
    #: database instead of SQLite under ``data_dir`` (``[store] url``, ``--store``).
    store_url: str | None = None
    limits: NodeLimits = field(default_factory=NodeLimits)
    federation: FederationConfig = field(default_factory=FederationConfig)
    #: Feed plugins served at ``/v1/feeds/{name}`` (``[[feeds]]``, spec 0004 #feeds).
    feeds: tuple[FeedConfig, ...] = ()
    now_ms: Callable[[], int] = field(default=system_now_ms, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool):
            raise ConfigError("node.port must be an integer")
        if not 0 <= self.port <= 65535:
            raise ConfigError("node.port must be in [0, 65535]")
        if self.sqlite_synchronous not in ("full", "normal"):
            raise ConfigError('node.sqlite_synchronous must be "full" or "normal"')
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError("node.log_level must be debug, info, warning or error")
        if not isinstance(self.verify_workers, int) or self.verify_workers < 0:
            raise ConfigError("node.verify_workers must be a non-negative integer")
        if self.verify_in not in VERIFY_MODES:
            raise ConfigError('node.verify_in must be "auto", "processes" or "threads"')
        for peer in self.peers:
            if not peer.startswith(("http://", "https://")):
                raise ConfigError(f"peer {peer!r} must be an http:// or https:// URL")
        if self.store_url is not None:
            _check_store_url(self.store_url)
        if self.public_url is not None and not self.public_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError("node.public_url must be an http:// or https:// URL")
        names = [f.name for f in self.feeds]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"feeds: the name {name!r} is given twice (names are unique)")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def advertised_url(self) -> str | None:
        """The URL announced to peers: ``public_url``, else the listen URL when usable."""
        if self.public_url is not None:
            return self.public_url
        if self.host in ("0.0.0.0", "::", "") or self.port == 0:  # noqa: S104 - a comparison
            return None
        return self.url


# key -> (expected types, converter) for the [node] table
_NODE_KEYS: dict[str, tuple[tuple[type, ...], Callable[[Any], Any]]] = {
    "host": ((str,), str),
    "port": ((int,), int),
    "data_dir": ((str, Path), lambda v: Path(v).expanduser().absolute()),
    "peers": ((list, tuple), tuple),
    "network": ((str,), str),
    "allow_private_peers": ((bool,), bool),
    "public_url": ((str,), str),
    "verify_workers": ((int,), int),
    "verify_in": ((str,), str),
    "sqlite_synchronous": ((str,), str),
    "log_level": ((str,), str),
}
_LIMIT_KEYS = frozenset(f.name for f in fields(NodeLimits))
_FEDERATION_KEYS = frozenset(f.name for f in fields(FederationConfig))


def _check(table: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{table}.{key} has the wrong type (bool)")
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{table}.{key} must be {names}, not {type(value).__name__}")


def _node_values(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _NODE_KEYS:
            raise ConfigError(f"unknown key {where}.{key}")
        types, convert = _NODE_KEYS[key]
        _check(where, key, value, types)
        if key == "peers" and not all(isinstance(p, str) for p in value):
            raise ConfigError(f"{where}.peers must be a list of URLs")
        out[key] = convert(value)
    return out


def _limit_values(table: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _LIMIT_KEYS:
            raise ConfigError(f"unknown key limits.{key}")
        _check("limits", key, value, (int,))
        out[key] = value
    return out


def _federation_values(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _FEDERATION_KEYS:
            raise ConfigError(f"unknown key {where}.{key}")
        _check(where, key, value, (bool,) if key == "peer_exchange" else (int,))
        out[key] = value
    return out


def _store_values(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key != "url":
            raise ConfigError(f"unknown key {where}.{key}")
        _check(where, key, value, (str,))
        out["store_url"] = value
    return out


_FEED_KEYS: Final = frozenset({"name", "type", "description", "params", "cache_s"})


def _resolve_feed_type(type_: str, base: Path | None) -> str:
    """``type_`` with a relative ``PATH.py`` made absolute against ``base`` (the
    configuration file's directory), so that the node's working directory does not
    matter; built-ins and entry points are left as they are."""
    if base is None or type_.startswith("entry:") or ".py:" not in type_:
        return type_
    path_text, _, cls = type_.rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = base / path
    return f"{path}:{cls}"


def _feed_values(entries: Any, base: Path | None) -> tuple[FeedConfig, ...]:
    """The ``[[feeds]]`` entries, each checked: keys and types, the name, and that its
    type exists (:func:`protocol.feeds.load.check_feed_type`, which runs none of the
    feed's code: that is done when the node starts, by ``load_feed``)."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("feeds must be [[feeds]] tables (name, type, params, ...)")
    out: list[FeedConfig] = []
    for i, entry in enumerate(entries):
        label = f"feeds[{i}]" + (f" {entry['name']!r}" if "name" in entry else "")
        for key in entry:
            if key not in _FEED_KEYS:
                raise ConfigError(f"unknown key {key!r} in {label} (expected "
                                  f"{', '.join(sorted(_FEED_KEYS))})")  # fmt: skip
        for key in ("name", "type"):
            if not isinstance(entry.get(key), str):
                raise ConfigError(f"{label}: {key} must be a string")
        feed = FeedConfig(
            name=entry["name"],
            type=_resolve_feed_type(entry["type"], base),
            description=entry.get("description"),
            params=entry.get("params", {}),
            cache_s=entry.get("cache_s", 30),
        )
        try:
            check_feed_type(feed.type)
        except FeedError as exc:
            raise ConfigError(f"feeds {feed.name!r}: {exc.message}") from None
        out.append(feed)
    return tuple(out)


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    now_ms: Callable[[], int] | None = None,
) -> NodeConfig:
    """Read ``path`` (TOML, optional), apply ``overrides`` (CLI flags), validate.

    Overrides use the ``[node]`` and ``[federation]`` key names (``host``, ``port``,
    ``data_dir``, ``peers``, ``network``, ``sync_interval_ms``, ...; ``store_url`` for
    ``[store] url``); ``None`` values are
    ignored so argparse defaults never shadow the file.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    for key in raw:
        if key not in ("node", "limits", "federation", "store", "feeds"):
            raise ConfigError(
                f"unknown table or key {key!r} "
                "(expected [node], [limits], [federation], [store] and [[feeds]])"
            )
    node_table = raw.get("node", {})
    limits_table = raw.get("limits", {})
    federation_table = raw.get("federation", {})
    store_table = raw.get("store", {})
    tables = (node_table, limits_table, federation_table, store_table)
    if not all(isinstance(t, dict) for t in tables):
        raise ConfigError("[node], [limits], [federation] and [store] must be tables")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    store_given = {"url": given.pop("store_url")} if "store_url" in given else {}
    federation_given = {k: given.pop(k) for k in list(given) if k in _FEDERATION_KEYS}
    values = _node_values(node_table, "node")
    values.update(_node_values(given, "option"))
    values.update(_store_values(store_table, "store"))
    values.update(_store_values(store_given, "option"))
    limits = NodeLimits(**_limit_values(limits_table))
    fed_values = _federation_values(federation_table, "federation")
    fed_values.update(_federation_values(federation_given, "option"))
    base = None if path is None else Path(path).expanduser().absolute().parent
    feeds = _feed_values(raw.get("feeds", []), base)
    config = NodeConfig(
        **values, limits=limits, federation=FederationConfig(**fed_values), feeds=feeds
    )
    if now_ms is not None:
        config = replace(config, now_ms=now_ms)
    return config
