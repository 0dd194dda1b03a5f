"""What a command returns and how it is shown: one JSON document, or text for people.

Both are safe for a terminal (spec 0007 #terminal-safety): JSON is written with
``ensure_ascii`` (every non-ASCII or control character is a ``\\uXXXX`` escape, the
values stay exact), and text goes through :func:`client.textsafety.safe_text` as a
last pass, behind the per-field escaping of :mod:`client.cli.render`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from client.textsafety import safe_text

__all__ = ["Context", "Handler", "Result", "emit", "emit_error", "warn"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Global options, parsed once, handed to every command."""

    home: Path
    as_name: str | None
    nodes: tuple[str, ...]
    json: bool
    #: ``--passphrase-file``: a path, or ``-`` for standard input (spec 0007 #keys-at-rest).
    passphrase_file: str | None = None
    #: ``--quorum N``: nodes that must store an event before a post returns (spec 0007
    #: #post-quorum); None: ``quorum`` in config.toml, else 1.
    quorum: int | None = None
    # Resolved when the context is made, not at import, so redirections are honoured.
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)


@dataclass(frozen=True, slots=True)
class Result:
    """A command's outcome: ``data`` for ``--json``, ``text`` for people."""

    data: Any
    text: str
    exit_code: int = 0


Handler = Callable[[argparse.Namespace, Context], Result]


def emit(ctx: Context, result: Result) -> None:
    if ctx.json:
        ctx.stdout.write(json.dumps(result.data, indent=2, ensure_ascii=True) + "\n")
    elif result.text:
        ctx.stdout.write(safe_text(result.text.rstrip("\n")) + "\n")


def emit_error(ctx: Context, code: str, message: str) -> None:
    """Errors go to stderr for people; with ``--json`` the one document is the error."""
    if ctx.json:
        doc = {"error": code, "message": message}
        ctx.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
    ctx.stderr.write(f"murmur: error: {safe_text(message)}\n")


def warn(ctx: Context, message: str) -> None:
    """A warning on stderr (never on stdout, so ``--json`` stays one document)."""
    ctx.stderr.write(f"murmur: warning: {safe_text(message)}\n")
