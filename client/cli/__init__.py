"""The ``murmur`` command line: one entry point dispatching to client and node commands."""

from __future__ import annotations

from client.cli.main import main

__all__ = ["main"]
