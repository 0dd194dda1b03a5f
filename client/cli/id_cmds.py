"""``murmur id new|list|show``: identities in the local keystore.

``id new`` makes a rotatable did:murmur by default (:mod:`client.cli.key_cmds`, with
``id rotate``, ``id recover`` and ``id keys``; spec 0008 §8.11); ``id move`` moves a
did:key to a new one (:mod:`client.cli.move_cmds`, spec 0008 #move). ``--did-key`` (alias
``--no-rotatable``) makes a did:key instead, and so does a given seed: a seed is a
did:key's whole identity, read from a file or standard input (``--seed-file``);
``--seed HEX`` still works but warns, since argv is visible to other users and kept
in shell history (spec 0007 #keys-at-rest). Either kind is sealed with a passphrase
unless told ``--no-encrypt``.
"""

from __future__ import annotations

import argparse
import string
from typing import Any

from client.cli import key_cmds, move_cmds
from client.cli.output import Context, Result, warn
from client.cli.passphrase import STDIN, ask_new_passphrase, read_secret
from client.keystore import IdentityExistsError, Keystore, StoredIdentity, loose_permissions
from protocol.errors import BadRequestError
from protocol.limits import MAX_RECOVERY_KEYS

__all__ = ["register"]


SEED_IN_ARGV = (
    "--seed puts the secret key on the command line, where other users can see it in "
    "the process list and where your shell history keeps it; use --seed-file PATH, or "
    "--seed-file - to read it from standard input"
)


def _parse_seed(text: str, option: str) -> bytes:
    # Never echo the value, not even a malformed one: it is meant to be a secret, and
    # an error goes to logs and --json output. Say what is wrong with it instead.
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        seed = bytes.fromhex(cleaned)
    except ValueError:
        digits = [c for c in cleaned if not c.isspace()]
        if all(c in string.hexdigits for c in digits):
            wrong = f"got {len(digits)} hex digits"
        else:
            wrong = "got a character that is not a hex digit"
        raise BadRequestError(
            f"{option} must be 64 hex characters (32 bytes), {wrong} (the value is not shown)"
        ) from None
    if len(seed) != 32:
        raise BadRequestError(
            f"{option} must be 32 bytes (64 hex characters), got {len(seed)} bytes"
        )
    return seed


def _seed(args: argparse.Namespace, ctx: Context) -> bytes | None:
    if args.seed is not None:
        warn(ctx, SEED_IN_ARGV)
        return _parse_seed(args.seed, "--seed")
    if args.seed_file is not None:
        if args.seed_file == STDIN and ctx.passphrase_file == STDIN:
            raise BadRequestError(
                "--seed-file - and --passphrase-file - cannot both read standard input"
            )
        return _parse_seed(read_secret(args.seed_file, "seed"), "--seed-file")
    return None


def _describe(identity: StoredIdentity, default: bool) -> dict[str, Any]:
    return {**identity.to_json(), "default": default}


def _recovery_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= MAX_RECOVERY_KEYS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_RECOVERY_KEYS}")
    return value


def _wants_did_key(args: argparse.Namespace) -> bool:
    """A did:key when asked (``--did-key``) or when a seed is given (a seed restores a
    did:key: its public key is the did); a rotatable did:murmur otherwise (spec 0007
    #rotatable-keys)."""
    seeded = args.seed is not None or args.seed_file is not None
    if args.rotatable and seeded:
        raise BadRequestError(
            "a rotatable identity's keys are always fresh: --seed and --seed-file restore "
            "a did:key (drop --rotatable)"
        )
    return args.did_key or seeded


def cmd_new(args: argparse.Namespace, ctx: Context) -> Result:
    if not _wants_did_key(args):
        return key_cmds.cmd_new_rotatable(args, ctx)
    if args.recovery_out is not None or args.recovery_keys != 1:
        raise BadRequestError(
            "--recovery-keys and --recovery-out go with a rotatable identity; a did:key "
            "(--did-key, --seed, --seed-file) has no recovery keys"
        )
    store = Keystore(ctx.home)
    if store.exists(Keystore.check_name(args.name)):  # before asking for any secret
        raise IdentityExistsError(f"an identity named {args.name!r} already exists")
    seed = _seed(args, ctx)
    passphrase = ask_new_passphrase(args.name, file=ctx.passphrase_file) if args.encrypt else None
    created = store.create(args.name, seed=seed, passphrase=passphrase)
    default = store.default()
    is_default = default is not None and default.name == created.name
    text = (
        f"Created identity {created.name}\n"
        f"  did:  {created.did}\n"
        f"  key:  {created.path} (keep it secret: it is the only proof this did is you)"
    )
    if args.encrypt:
        text += "\n  The key is sealed with your passphrase; you will need it to sign."
    else:
        text += "\n  The key is NOT encrypted: file permissions are all that protect it."
        warn(
            ctx,
            f"the key of {created.name} is stored unencrypted in {created.path}: anyone "
            f"who can read that file (a backup, a synced folder, another account) can sign "
            f"as {created.did}",
        )
    if is_default:
        text += "\n  This is your default identity."
    return Result(_describe(created, is_default), text)


def cmd_list(args: argparse.Namespace, ctx: Context) -> Result:
    store = Keystore(ctx.home)
    identities = store.list()
    data = [_describe(i, n == 0) for n, i in enumerate(identities)]
    if not identities:
        return Result(data, f"No identities in {ctx.home}. Create one: murmur id new NAME")
    width = max(len(i.name) for i in identities)
    lines = [
        f"{'*' if n == 0 else ' '} {i.name:<{width}}  {i.did}" for n, i in enumerate(identities)
    ]
    return Result(data, "\n".join(lines) + "\n(* = default)")


def cmd_show(args: argparse.Namespace, ctx: Context) -> Result:
    store = Keystore(ctx.home)
    name = args.name or ctx.as_name
    if name is None:
        default = store.default()
        if default is None:
            raise BadRequestError(f"no identities in {ctx.home}; create one: murmur id new NAME")
        name = default.name
    identity = store.get(name)
    for problem in loose_permissions(identity.path):
        warn(ctx, f"the key of {identity.name}: {problem}")
    default = store.default()
    is_default = default is not None and default.name == identity.name
    text = (
        f"{identity.name}{' (default)' if is_default else ''}\n"
        f"  did:      {identity.did}\n"
        f"  created:  {identity.created}\n"
        f"  key file: {identity.path}"
        + (" (passphrase-protected)" if identity.sealed else " (NOT encrypted)")
    )
    return Result(_describe(identity, is_default), text)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    ids = sub.add_parser("id", help="create and inspect identities (your signing keys)")
    ids_sub = ids.add_subparsers(dest="id_command", metavar="COMMAND", required=True)

    new = ids_sub.add_parser(
        "new",
        parents=[common],
        help="create an identity (rotatable did:murmur by default)",
        description="Create an identity in the keystore. Its name is local; its did is "
        "how everyone else knows it. By default a rotatable did:murmur (spec 0008): a "
        "signing key, a next key kept in a separate file, and recovery keys shown once "
        "to keep offline, so a lost or stolen key can be replaced without changing the "
        "did. --did-key, --seed or --seed-file make a did:key instead: the did is the "
        "Ed25519 key itself, lost or stolen with it.",
    )
    new.add_argument("name", help="local name, e.g. alice (a-z, 0-9, '-', '_')")
    given = new.add_mutually_exclusive_group()
    given.add_argument(
        "--seed-file",
        metavar="PATH",
        help="restore a did:key: read its 32-byte private key as 64 hex chars from PATH, "
        "or from standard input with '-' (implies --did-key)",
    )
    given.add_argument(
        "--seed",
        metavar="HEX",
        help="a did:key's private key on the command line (implies --did-key; warns: "
        "other users can see it in the process list, and it stays in shell history; "
        "prefer --seed-file)",
    )
    new.add_argument(
        "--encrypt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="seal the key with a passphrase (default), read from 'murmur "
        "--passphrase-file PATH id new ...', else $MURMUR_PASSPHRASE, else typed twice "
        "on the terminal. --no-encrypt stores it in plain hex, protected only by the "
        "file's mode 0600 (throwaway and dev keys)",
    )
    kind = new.add_mutually_exclusive_group()
    kind.add_argument(
        "--rotatable",
        action="store_true",
        help="a did:murmur (spec 0008) whose keys can be rotated and recovered (the "
        "default; the flag only makes it explicit)",
    )
    kind.add_argument(
        "--did-key",
        "--no-rotatable",
        dest="did_key",
        action="store_true",
        help="a did:key instead: the did is the key, so a lost key loses the identity and "
        "a stolen one cannot be revoked (for labelers, and for keys that must stay one "
        "Ed25519 key)",
    )
    new.add_argument(
        "--recovery-keys",
        type=_recovery_count,
        default=1,
        metavar="N",
        help=f"rotatable only: how many recovery keys, 1-{MAX_RECOVERY_KEYS} (default 1), "
        "highest priority first",
    )
    new.add_argument(
        "--recovery-out",
        metavar="DIR",
        help="rotatable only: write each recovery key as a file (mode 0600) in DIR; "
        "without it they are printed once on stderr as hex phrases",
    )
    new.set_defaults(handler=cmd_new)

    lst = ids_sub.add_parser("list", parents=[common], help="list identities")
    lst.set_defaults(handler=cmd_list)

    show = ids_sub.add_parser("show", parents=[common], help="show one identity")
    show.add_argument("name", nargs="?", help="identity name (default: --as or the default)")
    show.set_defaults(handler=cmd_show)

    key_cmds.register(ids_sub, common)
    move_cmds.register(ids_sub, common)
