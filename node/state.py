"""Typed application state keys shared by the app factory, handlers and the stream.

aiohttp ``web.AppKey`` instead of string keys: mypy knows what ``app[STORE]`` is, and
there is no module-level singleton anywhere in the node.
"""

from __future__ import annotations

from aiohttp import web

from node.blobs import BlobKeeper
from node.config import NodeConfig
from node.federation.manager import Federation
from node.feeds import FeedServer
from node.limits import AdmissionGate, RateLimiter
from node.metrics import Metrics
from node.store.base import Store
from node.stream import StreamHub
from node.verify import Verifier

__all__ = [
    "ANNOUNCE_LIMITER",
    "BLOBS",
    "CONFIG",
    "FEDERATION",
    "FEEDS",
    "GATE",
    "HUB",
    "LIMITER",
    "METRICS",
    "NODE_VERSION",
    "STORE",
    "VERIFIER",
]

#: The node software version reported by ``/v1/info``.
NODE_VERSION = "0.1.0"

CONFIG = web.AppKey("config", NodeConfig)
STORE = web.AppKey("store", Store)
VERIFIER = web.AppKey("verifier", Verifier)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", StreamHub)
LIMITER = web.AppKey("limiter", RateLimiter)
#: The per-address bucket of peer announcements (``POST /v1/peers``), apart from LIMITER.
ANNOUNCE_LIMITER = web.AppKey("announce_limiter", RateLimiter)
GATE = web.AppKey("gate", AdmissionGate)
FEDERATION = web.AppKey("federation", Federation)
BLOBS = web.AppKey("blobs", BlobKeeper)
#: The feeds this node serves (spec 0004 #feeds).
FEEDS = web.AppKey("feeds", FeedServer)
