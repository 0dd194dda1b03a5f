"""``murmur id move NAME``: move a did:key identity to a new rotatable one (spec 0008 #move).

It makes the new did:murmur exactly as ``id new`` does (:func:`client.cli.key_cmds.
new_rotatable`: recovery keys shown first, S and N sealed apart), with a genesis naming
the did:key in ``from``; once a node stored that genesis, the did:key signs a v1
``move`` event ``{"to": new did}`` and publishes it. Readers who follow the did:key
then follow the new did too (:mod:`client.moves`). Run again after a failure, it reuses
the identity it made (a second target would make the move contested) and sends the
move again. The new identity becomes the default if the did:key was; petnames keep
naming the did:key, whose follows now carry over.
"""

from __future__ import annotations

import argparse
from typing import Any

from client.cli import key_cmds
from client.cli.output import Context, Result
from client.cli.passphrase import ask_passphrase
from client.cli.render import Names, event_doc
from client.cli.session import Session, run
from client.keystore import Keystore, StoredIdentity
from client.ownchain import OwnChain
from client.publish import PublishResult
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.identity import Identity
from protocol.limits import MAX_RECOVERY_KEYS

__all__ = ["cmd_move", "moved_to", "register"]


def moved_to(store: Keystore, did_key: str) -> StoredIdentity | None:
    """The local rotatable identity whose genesis names ``did_key`` in ``from``."""
    for stored in store.list():
        if not stored.rotatable:
            continue
        chain = OwnChain(store.home, stored.did)
        if not chain.exists():
            continue
        genesis = chain.key_events()[0]
        if (genesis.body or {}).get("from") == did_key:
            return stored
    return None


def _publish_move(session: Session, old: Identity, to: str) -> PublishResult:
    async def go() -> PublishResult:
        async with session.nodes_open() as nodes:
            pub = session.make_publisher(old, nodes, None)
            return await pub.publish(kinds.MOVE, {"to": to})

    return run(go)


def cmd_move(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    store = session.keystore
    old = store.get(args.name)
    if old.rotatable:
        raise BadRequestError(
            f"{old.name} is already a rotatable identity ({old.did}): rotate its keys with "
            "'murmur id rotate' instead"
        )
    _ = session.node_urls()  # the move must be published: fail before making anything
    new_name = args.new_name or f"{old.name}-murmur"
    default = store.default()
    was_default = default is not None and default.name == old.name
    # Unseal the did:key first: a wrong passphrase must not leave a half-made move.
    old_key = store.load(
        old.name,
        ask=lambda: ask_passphrase(f"Passphrase for {old.name}: ", file=ctx.passphrase_file),
    )
    existing = moved_to(store, old.did)
    created_doc: dict[str, Any] | None = None
    if existing is not None:  # a retry: never a second target (spec 0008 #move)
        target = existing
        results = key_cmds.send_saved(session, target)
        genesis = OwnChain(ctx.home, target.did).key_events()[0]
        text = f"Reusing {target.name} ({target.did}), made by an earlier 'id move'"
        stored = True  # nothing left unsent: a node took its genesis before
        if any(r.event.id == genesis.id for r in results):
            sent, stored = key_cmds.sent_text(results, genesis)
            text += "\n" + sent
    else:
        created = key_cmds.new_rotatable(
            session,
            new_name,
            recovery_keys=args.recovery_keys,
            recovery_out=args.recovery_out,
            encrypt=args.encrypt,
            from_did=old.did,
        )
        target = created.made.stored
        text, created_doc, stored = key_cmds.created_text(session, created)
    if was_default:
        store.set_default(target.name)
        text += "\n  This is now your default identity."
    doc: dict[str, Any] = {
        "from": old.did,
        "to": target.did,
        "name": target.name,
        "created": created_doc,
        "default": was_default,
        "move": None,
    }
    if not stored:
        text += (
            f"\n  The move is not signed yet: no node stored the genesis of {target.did}. "
            f"Run 'murmur id move {old.name}' again when a node answers."
        )
        return Result(doc, text, exit_code=1)
    result = _publish_move(session, old_key, target.did)
    move = event_doc(result.event, Names(session.config))
    move["nodes"] = [o.to_json() for o in result.outcomes]
    doc["move"] = move
    took = [o for o in result.outcomes if o.stored]
    text += (
        f"\n{old.did} signed a move to {target.did} (seq {result.event.seq}), stored on "
        f"{len(took)} of {len(result.outcomes)} node(s). Whoever follows it now follows "
        f"{target.name} too."
    )
    return Result(doc, text)


def register(ids_sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Any) -> None:
    move = ids_sub.add_parser(
        "move",
        parents=[common],
        help="move a did:key identity to a new rotatable one (followers follow along)",
        description="Create a rotatable did:murmur (as 'id new') whose genesis names the "
        "did:key NAME, then sign with NAME a 'move' to it and publish both. Readers "
        "following NAME follow the new identity too, once its genesis names NAME back. "
        "Move once: a second move to another identity (or a thief's) makes it contested "
        "and nobody follows it.",
    )
    move.add_argument("name", help="the did:key identity to move from")
    move.add_argument(
        "--new-name",
        metavar="NEW",
        help="local name of the new identity (default: NAME-murmur)",
    )
    move.add_argument(
        "--encrypt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="seal the new keys with a (new) passphrase (default); --no-encrypt stores "
        "them in plain hex",
    )
    move.add_argument(
        "--recovery-keys",
        type=int,
        choices=range(1, MAX_RECOVERY_KEYS + 1),
        default=1,
        metavar="N",
        help=f"how many recovery keys, 1-{MAX_RECOVERY_KEYS} (default 1)",
    )
    move.add_argument(
        "--recovery-out",
        metavar="DIR",
        help="write each recovery key as a file (mode 0600) in DIR; without it they are "
        "printed once on stderr",
    )
    move.set_defaults(handler=cmd_move)
