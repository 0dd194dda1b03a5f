"""Small file helpers for the client's home: atomic private writes, readable errors."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.errors import KeystoreError

__all__ = ["atomic_write", "create_new", "read_json", "read_toml", "translate_os_errors"]


@contextmanager
def translate_os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except PermissionError as exc:
        raise KeystoreError(f"cannot {what}: permission denied ({exc.filename})") from exc
    except OSError as exc:
        raise KeystoreError(f"cannot {what}: {exc.strerror} ({exc.filename})") from exc


def _write_temp(path: Path, data: bytes, mode: int) -> str:
    """A temporary file next to ``path`` holding ``data``, ``mode`` set before a byte
    is written, flushed to disk; its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``; never leaves a partial file."""
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


#: ``link`` failures meaning "this file system has no hard links", not "path exists".
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}


def create_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data`` with ``mode``, only if it does not exist:
    ``FileExistsError`` otherwise, whoever created it a moment before (two processes
    creating one name: exactly one wins, nothing is overwritten).

    Atomic like :func:`atomic_write`: the complete file is hard-linked into place
    (``link`` never replaces an existing name). On a file system without hard links
    the file is created with ``O_EXCL`` and then written: still exclusive and private
    before the first byte, but a reader could see it partly written meanwhile.
    """
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_LINKS:
            raise
        _create_excl(path, data, mode)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Flush a directory's entries: a new key file must survive a power loss once the
    CLI said it was created (not every file system lets a directory be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_excl(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits; never adds any
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON document at ``path``; ``KeystoreError`` if it cannot be read or parsed."""
    with translate_os_errors(f"read {path}"):
        raw = path.read_bytes()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{path} is not valid JSON: {exc}") from exc


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path``; ``KeystoreError`` naming ``what`` it should be."""
    with translate_os_errors(f"read {path}"):
        raw = path.read_bytes()
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{path} is not {what}: {exc}") from exc
