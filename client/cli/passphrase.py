"""Secrets from a person or a script, never from argv (spec 0007 #keys-at-rest).

A passphrase comes from ``--passphrase-file PATH`` (``-``: standard input), else
``$MURMUR_PASSPHRASE``, else a prompt on the terminal (twice for a new one); a seed
given to ``murmur id new`` comes from ``--seed-file PATH`` (``-``: standard input). Files
and the environment are the scriptable paths: neither shows in the process list.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from client.errors import PassphraseError
from client.files import translate_os_errors
from protocol.errors import BadRequestError

__all__ = ["ENV", "STDIN", "ask_new_passphrase", "ask_passphrase", "read_secret"]

ENV = "MURMUR_PASSPHRASE"
STDIN = "-"
#: A passphrase or hex seed is short; a larger file is a wrong path, not a secret.
MAX_SECRET_BYTES = 4096


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


def ask_passphrase(prompt: str = "Passphrase: ", *, file: str | None = None) -> str | None:
    """The passphrase from ``file``, the environment or the terminal; None if none can."""
    if file is not None:
        return read_secret(file, "passphrase")
    env = os.environ.get(ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(prompt)


def ask_new_passphrase(name: str, *, file: str | None = None) -> str:
    """A new passphrase for identity ``name``: from ``file`` or the environment, else
    typed twice on a terminal. Without any of them it fails, naming every way out."""
    if file is not None:
        return read_secret(file, "passphrase")
    env = os.environ.get(ENV)
    if env is not None:
        if not env:
            raise PassphraseError(f"${ENV} is empty: an empty passphrase protects nothing")
        return env
    if not sys.stdin.isatty():
        raise PassphraseError(
            f"no passphrase to seal the key of {name!r}: run on a terminal to type one, set "
            f"${ENV}, or pass --passphrase-file PATH; or store the key unencrypted with "
            "--no-encrypt (anyone who can read the file can then sign as you)"
        )
    first = getpass.getpass(f"New passphrase for {name}: ")
    if not first:
        raise PassphraseError("an empty passphrase protects nothing (--no-encrypt says so)")
    if getpass.getpass("Repeat passphrase: ") != first:
        raise PassphraseError("the two passphrases differ")
    return first
