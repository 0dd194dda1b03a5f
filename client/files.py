"""Small file helpers for the client's home: atomic private writes, readable errors."""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.errors import KeystoreError

__all__ = ["atomic_write", "read_toml", "translate_os_errors"]


@contextmanager
def translate_os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except PermissionError as exc:
        raise KeystoreError(f"cannot {what}: permission denied ({exc.filename})") from exc
    except OSError as exc:
        raise KeystoreError(f"cannot {what}: {exc.strerror} ({exc.filename})") from exc


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; never leaves a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path``; ``KeystoreError`` naming ``what`` it should be."""
    with translate_os_errors(f"read {path}"):
        raw = path.read_bytes()
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{path} is not {what}: {exc}") from exc
