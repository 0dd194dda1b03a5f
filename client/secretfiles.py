"""Secrets read from a file or the environment, for every face of the client (spec
0007 #keys-at-rest): never from argv, never echoed.

:func:`read_secret` reads a passphrase, seed or recovery key from a path (``-``:
standard input) with a size cap; :func:`passphrase_from` is the non-interactive
passphrase source the CLI and ``murmur web`` share: ``--passphrase-file PATH``, else
``$MURMUR_PASSPHRASE``, else none (the CLI then prompts on a terminal; the web client
asks in the form of the action that needs it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

from client.files import translate_os_errors
from protocol.errors import BadRequestError

__all__ = ["ENV", "MAX_SECRET_BYTES", "STDIN", "passphrase_from", "read_secret"]

ENV: Final = "MURMUR_PASSPHRASE"
STDIN: Final = "-"
#: A passphrase or hex seed is short; a larger file is a wrong path, not a secret.
MAX_SECRET_BYTES: Final = 4096


def read_secret(source: str, what: str) -> str:
    """The text of ``source`` (a path, or ``-`` for standard input), minus one final
    line break. Raises ``BadRequestError`` for an empty or oversized secret."""
    if source == STDIN:
        raw = sys.stdin.read(MAX_SECRET_BYTES + 1)
    else:
        with translate_os_errors(f"read the {what} file"):
            with Path(source).expanduser().open("r", encoding="utf-8") as fh:
                raw = fh.read(MAX_SECRET_BYTES + 1)
    if len(raw) > MAX_SECRET_BYTES:
        raise BadRequestError(f"the {what} in {source!r} is longer than {MAX_SECRET_BYTES} bytes")
    text = raw.removesuffix("\n").removesuffix("\r")
    if not text:
        where = "standard input" if source == STDIN else repr(source)
        raise BadRequestError(f"the {what} from {where} is empty")
    return text


def passphrase_from(file: str | None) -> str | None:
    """The passphrase of ``file`` if given, else ``$MURMUR_PASSPHRASE``, else None."""
    if file is not None:
        return read_secret(file, "passphrase")
    return os.environ.get(ENV)
