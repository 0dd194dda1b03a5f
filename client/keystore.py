"""The client's keystore under ``$MURMUR_HOME`` (default ``~/.murmur``).

Layout (spec 0007 #keys-at-rest)::

    $MURMUR_HOME/
        identities/               mode 0700 (tightened to it when created into)
            NAME.toml             mode 0600: name, did, created, [key]
            NAME.next.toml        mode 0600, rotatable identities only: [key] = N
            NAME.pending.toml     mode 0600, while a rotation or recovery is applied

A rotatable identity (``did:murmur``, spec 0008) keeps its signing seed S in
``NAME.toml`` (``rotatable = true``, ``signing`` = S's public key in hex) and its
pre-rotated next seed N in ``NAME.next.toml``, sealed apart (associated data
``did + "#next"``, so neither sealed seed can stand in for the other). Its recovery
keys are never stored here (spec 0007 #rotatable-keys).

``[key]`` holds the 32-byte seed either sealed with a passphrase,
``format = "scrypt-aes256gcm"``: scrypt (n=2**15, r=8, p=1, 16-byte salt) derives a
256-bit key that seals the seed with AES-GCM (12-byte nonce; the did is the associated
data, so a sealed key cannot be swapped into another identity file) — the CLI's default
— or, only when the caller says so (``passphrase=None``), as ``format = "raw-hex"``,
protected by nothing but the file modes. :func:`loose_permissions` names a key file or
directory that others may read, so callers can warn (keys are not refused: some file
systems cannot express modes).

Identity names are local handles (``[a-z0-9][a-z0-9_-]{0,31}``), never protocol
identifiers: the did is. Files are written atomically (temp file, fsync, rename) with
their final mode set before any secret is written, so a crash never leaves a torn or
world-readable key. The first identity created is the default one, unless
``identities/default`` names another (``murmur id move`` hands the default on).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from client.errors import (
    IdentityExistsError,
    IdentityNotFoundError,
    KeystoreError,
    PassphraseError,
)
from client.files import atomic_write, create_new, read_toml, translate_os_errors
from protocol.identity import Identity

__all__ = [
    "IdentityExistsError",
    "IdentityNotFoundError",
    "KeystoreError",
    "Keystore",
    "NEXT_AAD",
    "PassphraseError",
    "StoredIdentity",
    "default_home",
    "key_table",
    "loose_permissions",
]

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}\Z")


_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
SEALED_FORMAT = "scrypt-aes256gcm"


def _derive(passphrase: str, salt: bytes) -> bytes:
    kdf = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def seal_seed(seed: bytes, did: str, passphrase: str) -> dict[str, Any]:
    """The ``[key]`` table of a passphrase-protected identity."""
    salt, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(_derive(passphrase, salt)).encrypt(nonce, seed, did.encode("utf-8"))
    return {
        "type": "ed25519",
        "format": SEALED_FORMAT,
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "sealed": sealed.hex(),
    }


def open_seed(key: dict[str, Any], did: str, passphrase: str | None) -> bytes:
    """The seed from a ``[key]`` table; raises ``PassphraseError`` or ``KeystoreError``."""
    fmt = key.get("format")
    if fmt == "raw-hex":
        return bytes.fromhex(str(key.get("seed", "")))
    if fmt != SEALED_FORMAT:
        raise KeystoreError(f"unknown key format {fmt!r}")
    if passphrase is None:
        raise PassphraseError(
            "this identity is protected by a passphrase: set MURMUR_PASSPHRASE, pass "
            "--passphrase-file PATH, or run on a terminal to be asked for it"
        )
    salt, nonce = bytes.fromhex(str(key["salt"])), bytes.fromhex(str(key["nonce"]))
    try:
        return AESGCM(_derive(passphrase, salt)).decrypt(
            nonce, bytes.fromhex(str(key["sealed"])), did.encode("utf-8")
        )
    except InvalidTag:
        raise PassphraseError("wrong passphrase") from None


#: Associated data suffix of a sealed next key: it cannot pass for a signing key.
NEXT_AAD = "#next"


def key_table(seed: bytes, aad: str, passphrase: str | None) -> dict[str, Any]:
    """A ``[key]`` table: ``seed`` sealed under ``aad`` with ``passphrase``, or raw
    hex when ``passphrase`` is None."""
    if passphrase is not None:
        return seal_seed(seed, aad, passphrase)
    return {"type": "ed25519", "format": "raw-hex", "seed": seed.hex()}


def _create_identity_file(name: str, path: Path, doc: dict[str, Any]) -> None:
    """Write an identity's key file exclusively: of two creations of one name (two
    ``murmur id new`` at once) one wins and the other is told; a key is never
    overwritten (spec 0007 #key-create-exclusive)."""
    with translate_os_errors(f"write {path}"):
        try:
            create_new(path, tomli_w.dumps(doc).encode("utf-8"))
        except FileExistsError:
            raise IdentityExistsError(
                f"an identity named {name!r} already exists ({path})"
            ) from None


def _next_doc(did: str, next_key: Identity, passphrase: str | None) -> bytes:
    doc = {"did": did, "key": key_table(next_key.seed, did + NEXT_AAD, passphrase)}
    return tomli_w.dumps(doc).encode("utf-8")


def loose_permissions(path: Path) -> list[str]:
    """What lets others than the owner at the key file ``path`` or its directory.

    One sentence per problem (empty when the file is 0600 or stricter in a 0700 or
    stricter directory). Always empty where modes mean nothing (not POSIX).
    """
    if os.name != "posix":
        return []
    out = []
    for target, limit in ((path.parent, 0o700), (path, 0o600)):
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except OSError:
            continue
        if mode & ~limit & 0o777:
            out.append(
                f"{target} is mode {mode:04o}, open to other users: run chmod {limit:o} {target}"
            )
    return out


def default_home() -> Path:
    """``$MURMUR_HOME`` if set, else ``~/.murmur``."""
    env = os.environ.get("MURMUR_HOME")
    return Path(env).expanduser() if env else Path.home() / ".murmur"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredIdentity:
    """An identity as the keystore holds it."""

    name: str
    did: str
    created: str
    path: Path
    #: True when the key is sealed with a passphrase.
    sealed: bool = False
    #: True for a did:murmur (spec 0008): S here, N in ``NAME.next.toml``.
    rotatable: bool = False
    #: A rotatable identity's current signing public key (hex).
    signing: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "did": self.did,
            "created": self.created,
            "path": str(self.path),
            "encrypted": self.sealed,
            "rotatable": self.rotatable,
        }


class Keystore:
    """Identities on disk. Cheap to construct; nothing is touched until used."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or default_home()).expanduser()

    @property
    def identities_dir(self) -> Path:
        return self.home / "identities"

    def _ensure_dirs(self) -> None:
        with translate_os_errors(f"create the Murmur home {self.home}"):
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.identities_dir.mkdir(mode=0o700, exist_ok=True)
            if os.name == "posix" and stat.S_IMODE(self.identities_dir.stat().st_mode) & 0o077:
                self.identities_dir.chmod(0o700)  # keys go here: never readable by others
            if not os.access(self.identities_dir, os.W_OK):
                raise PermissionError(13, "Permission denied", str(self.identities_dir))

    @staticmethod
    def check_name(name: str) -> str:
        if not _NAME_RE.match(name):
            raise KeystoreError(
                f"invalid identity name {name!r}: use 1-32 of a-z, 0-9, '-' and '_', "
                "starting with a letter or digit"
            )
        return name

    def _path(self, name: str) -> Path:
        return self.identities_dir / f"{self.check_name(name)}.toml"

    def create(
        self,
        name: str,
        *,
        seed: bytes | None = None,
        passphrase: str | None,
        now: dt.datetime | None = None,
    ) -> StoredIdentity:
        """Create identity ``name`` (from ``seed`` if given, else fresh randomness).

        The seed is sealed with ``passphrase`` (see the module docstring); the caller must
        say ``passphrase=None`` to store it unencrypted.
        """
        path = self._path(name)
        self._ensure_dirs()
        if path.exists():
            raise IdentityExistsError(f"an identity named {name!r} already exists ({path})")
        identity = Identity.from_seed(seed) if seed is not None else Identity.generate()
        created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()
        doc = {
            "name": name,
            "did": identity.did,
            "created": created,
            "key": key_table(identity.seed, identity.did, passphrase),
        }
        _create_identity_file(name, path, doc)
        return StoredIdentity(
            name=name, did=identity.did, created=created, path=path, sealed=passphrase is not None
        )

    def next_path(self, name: str) -> Path:
        """Where a rotatable identity's next seed N is sealed (never with S)."""
        return self.identities_dir / f"{self.check_name(name)}.next.toml"

    def pending_path(self, name: str) -> Path:
        """A signed rotation or recovery with its new keys, while it is applied."""
        return self.identities_dir / f"{self.check_name(name)}.pending.toml"

    def create_rotatable(
        self,
        name: str,
        *,
        did: str,
        signing: Identity,
        next_key: Identity,
        passphrase: str | None,
        now: dt.datetime | None = None,
    ) -> StoredIdentity:
        """Store a new did:murmur: S in ``NAME.toml``, N in ``NAME.next.toml``.

        Both files are created exclusively (``identity-exists`` if the name is taken);
        if N cannot be stored, S's file is removed again.
        """
        path = self._path(name)
        self._ensure_dirs()
        created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()
        doc = {
            "name": name,
            "did": did,
            "created": created,
            "rotatable": True,
            "signing": signing.public.raw.hex(),
            "key": key_table(signing.seed, did, passphrase),
        }
        _create_identity_file(name, path, doc)
        try:
            with translate_os_errors(f"write {self.next_path(name)}"):
                create_new(self.next_path(name), _next_doc(did, next_key, passphrase))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StoredIdentity(
            name=name,
            did=did,
            created=created,
            path=path,
            sealed=passphrase is not None,
            rotatable=True,
            signing=signing.public.raw.hex(),
        )

    def replace_keys(
        self, name: str, *, signing: bytes, key: dict[str, Any], next_key: dict[str, Any]
    ) -> None:
        """After a rotation or recovery: the new S (public ``signing``, sealed ``key``),
        then the new N (``next_key``, which destroys the old N), each file replaced
        atomically. The tables are :func:`key_table` ones, sealed once when the key
        event was signed (see :mod:`client.keyops`)."""
        stored, _ = self._read_named(name)
        if not stored.rotatable:
            raise KeystoreError(f"{name} is not a rotatable identity")
        doc = read_toml(stored.path, "a valid identity file")
        doc["signing"] = signing.hex()
        doc["key"] = key
        with translate_os_errors(f"write {stored.path}"):
            atomic_write(stored.path, tomli_w.dumps(doc).encode("utf-8"))
        with translate_os_errors(f"write {self.next_path(name)}"):
            atomic_write(
                self.next_path(name),
                tomli_w.dumps({"did": stored.did, "key": next_key}).encode("utf-8"),
            )

    def load_next(
        self,
        name: str,
        *,
        passphrase: str | None = None,
        ask: Callable[[], str | None] | None = None,
    ) -> Identity:
        """The next key N of rotatable identity ``name`` (only ``id rotate`` needs it)."""
        stored, _ = self._read_named(name)
        path = self.next_path(name)
        if not stored.rotatable or not path.exists():
            raise KeystoreError(f"{name} has no next key ({path}): it is not rotatable")
        doc = read_toml(path, "a valid next-key file")
        key = doc.get("key")
        if doc.get("did") != stored.did or not isinstance(key, dict):
            raise KeystoreError(f"{path} is not the next key of {stored.did}")
        if key.get("format") == SEALED_FORMAT and passphrase is None and ask is not None:
            passphrase = ask()
        try:
            return Identity.from_seed(open_seed(key, stored.did + NEXT_AAD, passphrase))
        except (ValueError, KeyError) as exc:
            raise KeystoreError(f"{path} holds a malformed key: {exc}") from exc

    @staticmethod
    def _read(name: str, path: Path) -> tuple[StoredIdentity, dict[str, Any]]:
        """One read of an identity file: what may be shown, and the ``[key]`` table."""
        doc = read_toml(path, "a valid identity file")
        key = doc.get("key")
        if not isinstance(doc.get("did"), str) or not isinstance(key, dict):
            raise KeystoreError(f"{path} is not a valid identity file: missing did or key")
        stored = StoredIdentity(
            name=name,
            did=doc["did"],
            created=str(doc.get("created", "")),
            path=path,
            sealed=key.get("format") == SEALED_FORMAT,
            rotatable=doc.get("rotatable") is True,
            signing=str(doc["signing"]) if isinstance(doc.get("signing"), str) else None,
        )
        return stored, key

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a valid identity name with a file in this keystore."""
        return _NAME_RE.match(name) is not None and self._path(name).exists()

    def _read_named(self, name: str) -> tuple[StoredIdentity, dict[str, Any]]:
        path = self._path(name)
        if not path.exists():
            known = ", ".join(i.name for i in self.list()) or "none"
            raise IdentityNotFoundError(
                f"no identity named {name!r} in {self.home} (known: {known}); "
                f"create one with: murmur id new {name}"
            )
        return self._read(name, path)

    def get(self, name: str) -> StoredIdentity:
        return self._read_named(name)[0]

    def load(
        self,
        name: str,
        *,
        passphrase: str | None = None,
        ask: Callable[[], str | None] | None = None,
    ) -> Identity:
        """The private identity ``name``; checks the stored did matches the key.

        For a sealed key, ``passphrase`` is used, else ``ask()`` is called (only then).
        """
        stored, key = self._read_named(name)
        if stored.sealed and passphrase is None and ask is not None:
            passphrase = ask()
        try:
            identity = Identity.from_seed(open_seed(key, stored.did, passphrase))
        except (ValueError, KeyError) as exc:
            raise KeystoreError(f"{stored.path} holds a malformed key: {exc}") from exc
        if stored.rotatable:
            if identity.public.raw.hex() != stored.signing:
                raise KeystoreError(f"{stored.path}: the key is not the identity's signing key")
        elif identity.did != stored.did:
            raise KeystoreError(f"{stored.path}: the key does not match the did {stored.did}")
        return identity

    def list(self) -> list[StoredIdentity]:
        """All identities, oldest first (the first is the default)."""
        if not self.identities_dir.is_dir():
            return []
        out = []
        with translate_os_errors(f"list {self.identities_dir}"):
            paths = sorted(self.identities_dir.glob("*.toml"))
        for path in paths:
            if _NAME_RE.match(path.stem):
                out.append(self._read(path.stem, path)[0])
        out.sort(key=lambda s: (s.created, s.name))
        chosen = self._chosen_default()
        out.sort(key=lambda s: s.name != chosen)  # stable: the chosen one first
        return out

    def default(self) -> StoredIdentity | None:
        """The identity used when none is named: the one :meth:`set_default` chose if it
        still exists, else the only or the first created."""
        identities = self.list()
        return identities[0] if identities else None

    @property
    def default_path(self) -> Path:
        return self.identities_dir / "default"

    def _chosen_default(self) -> str | None:
        with translate_os_errors(f"read {self.default_path}"):
            try:
                name = self.default_path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return None
        return name if _NAME_RE.match(name) else None

    def set_default(self, name: str) -> None:
        """Make ``name`` (an existing identity) the default one."""
        self.get(name)
        with translate_os_errors(f"write {self.default_path}"):
            atomic_write(self.default_path, (name + "\n").encode("utf-8"))
