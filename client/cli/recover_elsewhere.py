"""``murmur id recover NAME`` on a home that holds nothing of the identity (spec 0007
#recover-elsewhere): only the recovery key (file or phrase) and the did.

The chain a recovery follows is rebuilt from every configured node
(:mod:`client.rebuild`), and the owner says which event was her last (``--after ID``
or a prefix, or typed at the prompt on a terminal): the client never attaches at a
node's head, which may be a thief's. Without ``--after`` and without a terminal (a
script, CI) it refuses (``recovery-point-required``) and lists the choices; the
recovery key must be in the recovery list of the key state at the chosen point
(``unauthorized-key`` otherwise; the key is never shown). The new identity ``NAME``
holds the new S and N sealed with a new passphrase (``--no-encrypt``: in plain hex),
and its outbox starts with the chain the recovery endorses; the recovery is then sent
and re-sent exactly like ``id recover`` on the old home.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.cli.key_cmds import key_event_result, write_recovery
from client.cli.output import Context, Result, warn
from client.cli.passphrase import STDIN, ask_new_passphrase, read_secret
from client.cli.session import Session, run
from client.errors import KeystoreError, RecoveryPointRequiredError
from client.keyops import fresh_recovery_at, parse_recovery_key, recovery_key_did
from client.keystore import Keystore
from client.keyview import is_murmur
from client.ownchain import OwnChain
from client.rebuild import (
    NodeChain,
    Point,
    adopt,
    check_key_at,
    choose,
    look_up,
    point_doc,
    points,
    preview,
    read_chain,
    sign_after,
    when,
)
from client.textsafety import safe_line
from protocol.errors import BadRequestError, UnauthorizedKeyError
from protocol.identity import Identity

__all__ = ["LATEST_SHOWN", "candidates_text", "cmd_recover_elsewhere"]

#: Newest candidate events listed (every valid key event is listed besides).
LATEST_SHOWN = 15


def _row(p: Point, key: Identity) -> str:
    e = p.event
    mark = "+" if p.entitles(key) else " "
    return (
        f"  {mark} seq {e.seq:<5} {when(e.ts)}  {e.kind:<8} {e.id_hex[:12]}  "
        f"{p.status.value:<9} {preview(e)}"
    )


def candidates_text(chain: NodeChain, key: Identity, usage: str) -> str:
    """The choices, for people: the key history, then the latest events."""
    cands = points(chain)
    keyed = sorted((p for p in cands if p.event.id == p.key_event.id), key=lambda p: p.event.seq)
    longer = " (longer than was read: older events by full id only)" if chain.truncated else ""
    lines = [
        f"Events of {chain.did}, verified, from {len(chain.answered)} node(s){longer}.",
        "Which one is the last event that is yours? The recovery follows it, and every "
        "event after it on any branch (a thief's) becomes revoked. Time is as signed "
        "(the author's claim); + = your recovery key can follow it.",
        "Key events:",
        *(_row(p, key) for p in keyed),
        f"Latest {min(LATEST_SHOWN, len(cands))} of {len(cands)} events, newest first:",
        *(_row(p, key) for p in cands[:LATEST_SHOWN]),
        f"Then: {usage} --after ID (the id or its first hex digits)",
    ]
    return "\n".join(lines)


def _usage(args: argparse.Namespace, did: str) -> str:
    key = "-" if args.recovery_key == STDIN else safe_line(args.recovery_key)
    return f"murmur id recover {args.name} --did {did} --recovery-key {key}"


def _ask(ctx: Context, chain: NodeChain, key: Identity, usage: str, *, stdin_used: bool) -> str:
    """The owner's choice: typed on a terminal, else ``recovery-point-required`` (also
    when the recovery key came from standard input: it is not a prompt any more)."""
    listing = candidates_text(chain, key, usage)
    choices = [point_doc(p, key) for p in points(chain)]
    if stdin_used or not sys.stdin.isatty():
        raise RecoveryPointRequiredError(
            "choose the event your recovery follows with --after: the client cannot tell "
            "your events from a thief's, and never attaches at a node's head.\n" + listing,
            choices=choices,
        )
    ctx.stderr.write(listing + "\nRecover after which event? (id or its first hex digits): ")
    ctx.stderr.flush()
    answer = sys.stdin.readline().strip()
    if not answer:
        raise RecoveryPointRequiredError("no event chosen: nothing was signed", choices=choices)
    return answer


def _did(args: argparse.Namespace, secret: str) -> str:
    did = args.did or recovery_key_did(secret)
    if did is None:
        raise BadRequestError(
            f"{args.name} is not an identity of this home, and a recovery phrase does not "
            "name its did: give it with --did DID"
        )
    if not is_murmur(did):
        raise BadRequestError(
            f"{safe_line(did)} is not a did:murmur: only those have recovery keys"
        )
    return did


def cmd_recover_elsewhere(args: argparse.Namespace, ctx: Context, session: Session) -> Result:
    """Recover ``args.name`` (not in this home) from the nodes, after ``--after``."""
    store = session.keystore
    name = Keystore.check_name(args.name)
    if args.recovery_key == STDIN and ctx.passphrase_file == STDIN:
        raise BadRequestError("--recovery-key - and --passphrase-file - cannot both read stdin")
    secret = read_secret(args.recovery_key, "recovery key")
    did = _did(args, secret)
    key = parse_recovery_key(secret, did)
    users = [s.name for s in store.list() if s.did == did]
    if users:
        raise KeystoreError(
            f"this home holds {did} already, as {users[0]}: murmur id recover {users[0]} "
            "--recovery-key FILE (it follows that identity's own outbox)"
        )
    if OwnChain(ctx.home, did).exists():
        raise KeystoreError(
            f"{OwnChain(ctx.home, did).path} exists but no identity of this home uses it: "
            "move it away to rebuild the chain from the nodes"
        )
    usage = _usage(args, did)

    async def read() -> tuple[NodeChain, Point]:
        async with session.reader() as reader:
            chain = await read_chain(reader, did)
            if not chain.holds_recovery_key(key):
                raise UnauthorizedKeyError(
                    f"this is not a recovery key of {did} at any of the "
                    f"{len(chain.valid)} valid key event(s) the nodes served (the key is not "
                    "shown); nothing was signed"
                )
            after = args.after
            if after is None:
                after = _ask(ctx, chain, key, usage, stdin_used=args.recovery_key == STDIN)
            wanted = after.strip().lower()
            if len(wanted) == 64 and not any(e.id_hex == wanted for e in chain.events.values()):
                try:
                    chain = await look_up(reader, chain, bytes.fromhex(wanted))
                except ValueError:
                    pass  # not hex: choose() says so
            return chain, choose(chain, after, key)

    chain, point = run(read)
    check_key_at(chain, point, key)  # before any secret is asked for or written
    encrypt = args.encrypt is not False  # sealed unless --no-encrypt
    passphrase = ask_new_passphrase(name, file=ctx.passphrase_file) if encrypt else None
    fresh = fresh_recovery_at(point.state, key) if args.replace_recovery else None
    # New recovery keys are shown (written, fsynced) before the recovery that commits
    # to them is saved (0007 #recovery-shown-first); removed again if it is not.
    files = write_recovery(ctx, did, fresh, args.recovery_out) if fresh else []
    try:
        signed = sign_after(chain, point, key, new_recovery=fresh, net=session.net())
        stored = adopt(store, name, chain, signed, passphrase=passphrase)
    except BaseException:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise
    if not encrypt:
        warn(ctx, f"the keys of {name} are stored unencrypted in {store.identities_dir}")
    if signed.disputed:
        warn(
            ctx,
            "another key event of the same rank ties with this recovery: the identity is "
            "disputed until one of them is outranked (spec 0008 §8.8)",
        )
    extra = {
        "name": name,
        "identity": stored.to_json(),
        "after": point.event.id_hex,
        "revokes": [e.id_hex for e in signed.revokes],
        "disputed": signed.disputed,
        "recovery_files": files,
    }
    result = key_event_result(session, stored, signed.event, "recovery", False, extra)
    head = (
        f"Recovered {name} ({did}) on this home, after seq {point.event.seq} "
        f"({point.event.kind} {point.event.id_hex[:12]}).\n"
        f"  New signing and next keys in {stored.path} and {store.next_path(name)}.\n"
        f"  Revokes {len(signed.revokes)} event(s) the nodes showed as yours"
        + (
            ": "
            + ", ".join(f"seq {e.seq} {e.kind} {e.id_hex[:12]}" for e in signed.revokes[:10])
            + (" …" if len(signed.revokes) > 10 else "")
            if signed.revokes
            else ""
        )
        + ".\n"
    )
    return Result(result.data, head + result.text, exit_code=result.exit_code)
