"""Secrets from a person or a script, never from argv (spec 0007 #keys-at-rest).

A passphrase comes from ``--passphrase-file PATH`` (``-``: standard input), else
``$MURMUR_PASSPHRASE``, else a prompt on the terminal (twice for a new one); a seed
given to ``murmur id new`` comes from ``--seed-file PATH`` (``-``: standard input). Files
and the environment are the scriptable paths: neither shows in the process list.
Reading files and the environment is :mod:`client.secretfiles` (the web client's too);
prompting on a terminal is this module's.
"""

from __future__ import annotations

import getpass
import os
import sys

from client.errors import PassphraseError
from client.secretfiles import ENV, STDIN, read_secret

__all__ = ["ENV", "STDIN", "ask_new_passphrase", "ask_passphrase", "read_secret"]


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
