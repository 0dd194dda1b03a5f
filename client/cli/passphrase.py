"""Getting a passphrase from a person: ``$MURMUR_PASSPHRASE``, else a terminal prompt."""

from __future__ import annotations

import getpass
import os
import sys

from client.errors import PassphraseError

__all__ = ["ask_new_passphrase", "ask_passphrase"]

ENV = "MURMUR_PASSPHRASE"


def ask_passphrase(prompt: str = "Passphrase: ") -> str | None:
    """The passphrase from the environment or the terminal; None if neither can give one."""
    env = os.environ.get(ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(prompt)


def ask_new_passphrase() -> str:
    """A new passphrase, typed twice on a terminal (or taken from the environment)."""
    env = os.environ.get(ENV)
    if env is not None:
        if not env:
            raise PassphraseError(f"${ENV} is empty")
        return env
    if not sys.stdin.isatty():
        raise PassphraseError(f"--encrypt needs a terminal to type the passphrase, or ${ENV}")
    first = getpass.getpass("New passphrase: ")
    if not first:
        raise PassphraseError("an empty passphrase protects nothing")
    if getpass.getpass("Repeat passphrase: ") != first:
        raise PassphraseError("the two passphrases differ")
    return first
