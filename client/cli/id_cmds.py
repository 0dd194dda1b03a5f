"""``murmur id new|list|show``: identities in the local keystore."""

from __future__ import annotations

import argparse
from typing import Any

from client.cli.output import Context, Result
from client.cli.passphrase import ask_new_passphrase
from client.keystore import Keystore, StoredIdentity
from protocol.errors import BadRequestError

__all__ = ["register"]


def _parse_seed(text: str) -> bytes:
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        seed = bytes.fromhex(cleaned)
    except ValueError:
        raise BadRequestError(
            f"--seed must be 64 hex characters (32 bytes), got {text!r}"
        ) from None
    if len(seed) != 32:
        raise BadRequestError(f"--seed must be 32 bytes (64 hex characters), got {len(seed)} bytes")
    return seed


def _describe(identity: StoredIdentity, default: bool) -> dict[str, Any]:
    return {**identity.to_json(), "default": default}


def cmd_new(args: argparse.Namespace, ctx: Context) -> Result:
    seed = _parse_seed(args.seed) if args.seed is not None else None
    store = Keystore(ctx.home)
    Keystore.check_name(args.name)
    passphrase = ask_new_passphrase() if args.encrypt else None
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
    default = store.default()
    is_default = default is not None and default.name == identity.name
    text = (
        f"{identity.name}{' (default)' if is_default else ''}\n"
        f"  did:      {identity.did}\n"
        f"  created:  {identity.created}\n"
        f"  key file: {identity.path}" + (" (passphrase-protected)" if identity.sealed else "")
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
        help="create an identity",
        description="Create an Ed25519 identity in the keystore. Its name is local; "
        "its did:key is how everyone else knows it.",
    )
    new.add_argument("name", help="local name, e.g. alice (a-z, 0-9, '-', '_')")
    new.add_argument(
        "--seed",
        metavar="HEX",
        help="32-byte private key as 64 hex chars (for tests and recovery; default: random)",
    )
    new.add_argument(
        "--encrypt",
        action="store_true",
        help="seal the key with a passphrase (asked on the terminal, or $MURMUR_PASSPHRASE)",
    )
    new.set_defaults(handler=cmd_new)

    lst = ids_sub.add_parser("list", parents=[common], help="list identities")
    lst.set_defaults(handler=cmd_list)

    show = ids_sub.add_parser("show", parents=[common], help="show one identity")
    show.add_argument("name", nargs="?", help="identity name (default: --as or the default)")
    show.set_defaults(handler=cmd_show)
