"""The Murmur node: an aiohttp server that ingests, stores, serves and streams events.

Build one with :func:`create_app` from a :class:`NodeConfig` (see :func:`load_config`)
or run it with ``murmur node run`` (:func:`run_node`). Storage sits behind the
:class:`Store` interface, SQLite by default. The HTTP API is specified in
``specs/0004-node-api.md`` and ``specs/openapi.json``.
"""

from __future__ import annotations

from node.app import create_app
from node.cli import add_node_commands, run_node
from node.config import ConfigError, NodeConfig, NodeLimits, default_data_dir, load_config
from node.state import NODE_VERSION as __version__
from node.store import SqliteStore, Store, StoredEvent

__all__ = [
    # application
    "create_app",
    "run_node",
    "add_node_commands",
    # configuration
    "ConfigError",
    "NodeConfig",
    "NodeLimits",
    "default_data_dir",
    "load_config",
    # storage
    "SqliteStore",
    "Store",
    "StoredEvent",
    # version
    "__version__",
]
