"""``murmur id new`` (rotatable by default), ``id rotate|recover|keys`` (spec 0008).

A rotatable identity (``did:murmur``) keeps its signing key S in the identity file, its
pre-rotated next key N in a separate sealed file, and its recovery keys nowhere: they
are shown once, as files (``--recovery-out DIR``) or phrases on stderr, to be kept
offline (spec 0007 #rotatable-keys). ``id rotate`` signs a rotation with N (after a
lost or stolen S); ``id recover`` signs a recovery with a recovery key (after a stolen
S *and* N); on a home that does not hold the identity (a new machine), ``id recover``
rebuilds its chain from the nodes after the event the owner names
(:mod:`client.cli.recover_elsewhere`, spec 0007 #recover-elsewhere). Each saves the
signed event before sending it, and a retry re-sends the same bytes. ``id keys DID``
shows an author's key history, verified and resolved from every configured node.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import identities
from client.cli.output import Context, Result, warn
from client.cli.passphrase import STDIN, ask_new_passphrase, ask_passphrase, read_secret
from client.cli.render import Names, event_doc, short_id
from client.cli.session import Session, run
from client.errors import NoNodesError
from client.identities import rotatable, rotate_identity, saved_key_event
from client.keyops import (
    NewRotatable,
    RecoveryKey,
    fresh_recovery,
    parse_recovery_key,
    recovery_phrase,
    sign_recovery,
    write_recovery_files,
)
from client.keystore import Keystore, StoredIdentity
from client.keyview import KeyHistory, is_murmur
from client.publish import PublishResult
from client.textsafety import safe_line
from protocol import kinds
from protocol.errors import BadRequestError, NotFoundError
from protocol.events import Event
from protocol.keystate import Status

__all__ = [
    "Created",
    "cmd_keys",
    "cmd_new_rotatable",
    "cmd_recover",
    "cmd_rotate",
    "created_text",
    "key_event_result",
    "new_rotatable",
    "register",
    "send_saved",
    "sent_text",
    "write_recovery",
]

OFFLINE_WARNING = (
    "keep each recovery key OFFLINE (a USB stick in a drawer, a printout), never on the "
    "device you post from: it is shown only now, it is the last way to take your "
    "identity back if your keys are stolen, and anyone who holds it can take it too"
)


def send_saved(session: Session, stored: StoredIdentity) -> list[PublishResult]:
    """Send ``stored``'s saved, unsent key events to every node (same bytes); none when
    no node is configured (they go with the next post). ``stored`` is the identity the
    command names, which need not be ``--as`` or the default one."""
    try:
        _ = session.node_urls()
    except NoNodesError:
        return []
    return run(lambda: _send_async(session, stored))


async def _send_async(session: Session, stored: StoredIdentity) -> list[PublishResult]:
    async with session.outbox_publisher(stored.did) as pub:
        return await pub.flush()


def _restore(session: Session, stored: StoredIdentity) -> dict[str, int]:
    """After a rotation or recovery some node stored: give back the bodies nodes lost
    to a delete it revoked (spec 0008 #revoked-delete); re-sent copies per node."""

    async def go() -> dict[str, int]:
        async with session.outbox_publisher(stored.did) as pub:
            return await pub.restore_bodies()

    return run(go)


def _sent_doc(results: list[PublishResult]) -> list[dict[str, Any]]:
    return [
        {"id": r.event.id_hex, "kind": r.event.kind, "nodes": [o.to_json() for o in r.outcomes]}
        for r in results
    ]


def sent_text(results: list[PublishResult], event: Event) -> tuple[str, bool]:
    mine = [r for r in results if r.event.id == event.id]
    if not mine:
        return (
            "  Not published yet (no node configured): it is sent with your next post.",
            False,
        )
    r = mine[0]
    stored = [o for o in r.outcomes if o.stored]
    lines = [f"  Stored on {len(stored)} of {len(r.outcomes)} node(s)."]
    for o in r.outcomes:
        if not o.stored:
            lines.append("  ! " + ": ".join(safe_line(str(x)) for x in (o.url, o.code, o.message)))
    if not stored:
        lines.append(
            "  It is saved: 'murmur id rotate' (or your next post) re-sends the same bytes."
        )
    return "\n".join(lines), bool(stored)


def write_recovery(
    ctx: Context, did: str, keys: tuple[RecoveryKey, ...], out: str | None
) -> list[str]:
    """Show each recovery key once: a 0600 file in ``out``, else a phrase on stderr."""
    if out is None:
        for rk in keys:
            ctx.stderr.write(
                f"RECOVERY KEY {rk.position + 1} of {rk.count} (priority {rk.position}) for "
                f"{did}:\n    {recovery_phrase(rk.key.seed)}\n"
            )
        warn(ctx, OFFLINE_WARNING + "; write the phrase(s) above down now")
        return []
    directory = Path(out).expanduser()
    paths = write_recovery_files(did, keys, directory)
    warn(ctx, OFFLINE_WARNING + f"; move the file(s) in {directory} offline now")
    return [str(p) for p in paths]


@dataclass(frozen=True, slots=True, kw_only=True)
class Created:
    """A rotatable identity ``id new`` (or ``id move``) made, and what was sent."""

    made: NewRotatable
    files: list[str]
    results: list[PublishResult]


def new_rotatable(
    session: Session,
    name: str,
    *,
    recovery_keys: int,
    recovery_out: str | None,
    encrypt: bool,
    from_did: str | None = None,
) -> Created:
    """Make, store and send a rotatable identity ``name`` (its genesis naming
    ``from_did`` when it moves from a did:key): S and N sealed apart, the recovery keys
    shown first (spec 0007 #rotatable-keys, #recovery-shown-first)."""
    ctx = session.ctx
    store = session.keystore
    made, files = identities.new_rotatable(
        store,
        name,
        passphrase=lambda: ask_new_passphrase(name, file=ctx.passphrase_file) if encrypt else None,
        show=lambda prepared: [
            Path(f) for f in write_recovery(ctx, prepared.did, prepared.recovery, recovery_out)
        ],
        recovery_keys=recovery_keys,
        net=session.net(),
        from_did=from_did,
    )
    if not encrypt:
        warn(ctx, f"the keys of {name} are stored unencrypted in {store.identities_dir}")
    return Created(
        made=made, files=[str(f) for f in files], results=send_saved(session, made.stored)
    )


def created_text(session: Session, created: Created) -> tuple[str, dict[str, Any], bool]:
    """The text and JSON of a new rotatable identity, and whether a node stored its
    genesis."""
    store, made, files = session.keystore, created.made, created.files
    name, did = made.stored.name, made.stored.did
    sent, stored = sent_text(created.results, made.genesis)
    text = (
        f"Created rotatable identity {name}\n"
        f"  did:      {did}\n"
        f"  signing:  {made.stored.path}\n"
        f"  next key: {store.next_path(name)} (kept apart; signs your next rotation)\n"
        f"  recovery: {len(made.recovery)} key(s), not stored here"
        + (f": {', '.join(files)}" if files else " (shown above on stderr)")
        + f"\n  genesis:  {made.genesis.id_hex}\n{sent}"
    )
    doc = {
        **made.stored.to_json(),
        "genesis": made.genesis.id_hex,
        "next_key_file": str(store.next_path(name)),
        "recovery_files": files,
        "published": _sent_doc(created.results),
    }
    return text, doc, stored


def cmd_new_rotatable(args: argparse.Namespace, ctx: Context) -> Result:
    if args.seed is not None or args.seed_file is not None:
        raise BadRequestError("a rotatable identity's keys are always fresh: no --seed")
    session = Session.open(ctx)
    created = new_rotatable(
        session,
        args.name,
        recovery_keys=args.recovery_keys,
        recovery_out=args.recovery_out,
        encrypt=args.encrypt,
    )
    text, doc, _ = created_text(session, created)
    default = session.keystore.default()
    is_default = default is not None and default.name == args.name
    if is_default:
        text += "\n  This is your default identity."
    return Result({**doc, "default": is_default}, text)


def _rotatable(session: Session, name: str | None) -> StoredIdentity:
    return rotatable(session.keystore, name or session.stored_identity().name)


def _passphrase(ctx: Context, stored: StoredIdentity) -> str | None:
    if not stored.sealed:
        return None
    return ask_passphrase(f"Passphrase for {stored.name}: ", file=ctx.passphrase_file)


def key_event_result(
    session: Session,
    stored: StoredIdentity,
    event: Event,
    what: str,
    resent: bool,
    extra: dict[str, Any],
) -> Result:
    results = send_saved(session, stored)
    sent, ok = sent_text(results, event)
    restored = _restore(session, stored) if ok else {}
    names = session.names()
    doc = {
        **event_doc(event, names),
        "resent": resent,
        "published": _sent_doc(results),
        "restored": restored,
        **extra,
    }
    verb = "Re-sent the saved" if resent else "Signed a"
    text = f"{verb} {what} {short_id(event.id)} (seq {event.seq}) of {event.author}\n{sent}"
    for url, n in sorted(restored.items()):
        if n:
            text += f"\n  Gave {safe_line(url)} back {n} of your event(s) it held without a body."
    return Result(doc, text, exit_code=0 if ok or not results else 1)


def cmd_rotate(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    stored = _rotatable(session, args.name)
    # A saved rotation no node stored is re-sent, never signed twice (spec 0008 §8.7).
    change = rotate_identity(
        session.keystore,
        stored.name,
        passphrase=lambda: _passphrase(ctx, stored),
        net=session.net(),
    )
    return key_event_result(session, change.stored, change.event, "rotation", change.resent, {})


def _elsewhere(args: argparse.Namespace, session: Session) -> bool:
    """Whether ``id recover`` rebuilds the chain from the nodes (spec 0007
    #recover-elsewhere): NAME is not an identity of this home. ``--did``, ``--after``
    and ``--[no-]encrypt`` belong to that case only: a home's own identity recovers
    after its own outbox, sealed as it was."""
    if not session.keystore.exists(Keystore.check_name(args.name)):
        return True
    options = (("--did", args.did), ("--after", args.after), ("--encrypt", args.encrypt))
    given = [flag for flag, value in options if value is not None]
    if given:
        raise BadRequestError(
            f"{args.name} is an identity of this home: its recovery follows its own outbox "
            f"({', '.join(given)} go with a recovery on a home that does not hold it: use "
            "another NAME there)"
        )
    return False


def cmd_recover(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    if _elsewhere(args, session):
        # Imported here: that module builds on this one's helpers.
        from client.cli.recover_elsewhere import cmd_recover_elsewhere

        return cmd_recover_elsewhere(args, ctx, session)
    stored = _rotatable(session, args.name)
    saved = saved_key_event(session.keystore, stored, kinds.RECOVER)
    if saved is not None:
        return key_event_result(session, stored, saved, "recovery", True, {})
    if args.recovery_key == STDIN and ctx.passphrase_file == STDIN:
        raise BadRequestError("--recovery-key - and --passphrase-file - cannot both read stdin")
    key = parse_recovery_key(read_secret(args.recovery_key, "recovery key"), stored.did)
    # A recovery needs no old key, so no old passphrase (it may be what was lost): the
    # new S and N are sealed with a new one (prompt, $MURMUR_PASSPHRASE or file).
    passphrase = (
        ask_new_passphrase(stored.name, file=ctx.passphrase_file) if stored.sealed else None
    )
    fresh = (
        fresh_recovery(session.keystore, stored.name, recovery_key=key)
        if args.replace_recovery
        else None
    )
    # New recovery keys are shown (written, fsynced) before the recovery that commits
    # to them is signed and saved: if they cannot be, nothing is signed.
    files = write_recovery(ctx, stored.did, fresh, args.recovery_out) if fresh else []
    try:
        event, _ = sign_recovery(
            session.keystore,
            stored.name,
            recovery_key=key,
            passphrase=passphrase,
            net=session.net(),
            new_recovery=fresh,
        )
    except BaseException:
        if not session.keystore.pending_path(stored.name).exists():
            for f in files:  # nothing was saved that commits to them
                Path(f).unlink(missing_ok=True)
        raise
    extra = {"recovery_files": files}
    return key_event_result(session, stored, event, "recovery", False, extra)


def _history_doc(history: KeyHistory) -> dict[str, Any]:
    res = history.resolution
    out = []
    for e in sorted(history.key_events.values(), key=lambda e: (e.seq, e.id)):
        body = e.body or {}
        st = history.status.get(e.id, Status.PENDING)
        out.append(
            {
                "id": e.id_hex,
                "seq": e.seq,
                "kind": e.kind,
                "ts": e.ts,
                "prev": None if e.prev is None else e.prev.hex(),
                "kev": None if e.kev is None else e.kev.hex(),
                "key": None if e.key is None else e.key.hex(),
                "signing": body["signing"].hex() if "signing" in body else None,
                "next": body["next"].hex() if "next" in body else None,
                "recovery": [r.hex() for r in body["recovery"]] if "recovery" in body else None,
                "status": st.value,
                "canonical_path": e.id in res.path,
                "revoked_by": (None if e.id not in res.revoked_by else res.revoked_by[e.id].hex()),
                "reason": history.errors.get(e.id),
            }
        )
    return {
        "did": history.did,
        "key_events": out,
        "path": [k.hex() for k in res.path],
        "disputed": res.disputed,
        "contenders": [c.hex() for c in res.contenders],
    }


def _history_text(doc: dict[str, Any], names: Names) -> str:
    lines = [f"Key history of {names.display(doc['did'])} ({doc['did']})"]
    for k in doc["key_events"]:
        mark = "*" if k["canonical_path"] else " "
        why = ""
        if k["revoked_by"]:
            why = f", revoked by {k['revoked_by'][:12]}"
        elif k["reason"]:
            why = f" ({safe_line(k['reason'])})"
        new = f"signing {k['signing'][:12]}" if k["signing"] else ""
        lines.append(
            f"{mark} seq {k['seq']:<4} {k['kind']:<8} {k['id'][:12]}  {k['status']}{why}  "
            f"signed by {(k['key'] or '')[:12]}, {new}"
            + (f", {len(k['recovery'])} recovery key(s)" if k["recovery"] else "")
        )
    if doc["disputed"]:
        lines.append(
            "! disputed: key events of equal rank tie at "
            + (doc["path"][-1][:12] if doc["path"] else "the genesis")
            + f" ({', '.join(c[:12] for c in doc['contenders'])}); only a higher-ranked "
            "recovery by the owner ends it"
        )
    lines.append("(* = on the canonical path)")
    return "\n".join(lines)


def cmd_keys(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    if not is_murmur(did):
        raise BadRequestError(f"{did} is a did:key: it has no key history (the did is the key)")

    async def go() -> KeyHistory:
        async with session.reader() as reader:
            await reader.keys.settle([did])
            history = reader.keys.histories.get(did)
            if history is None or not history.key_events:
                raise NotFoundError(f"no configured node serves a key event of {did}")
            return history

    history = run(go)
    names = session.names()
    doc = _history_doc(history)
    report = history.served  # nodes that answered /keys
    text = _history_text(doc, names)
    missing = [
        (url, sorted(history.valid_key_events() - ids)) for url, ids in sorted(report.items())
    ]
    for url, ids in missing:
        if ids:
            text += f"\n! {safe_line(url)} withheld {len(ids)} key event(s): " + ", ".join(
                short_id(i) for i in ids
            )
    doc["withheld"] = {url: [i.hex() for i in ids] for url, ids in missing if ids}
    return Result(doc, text)


def register(ids_sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Any) -> None:
    rot = ids_sub.add_parser(
        "rotate",
        parents=[common],
        help="rotate a rotatable identity's signing key (lost or stolen key)",
        description="Sign a rotation with the pre-rotated next key: a new signing key and "
        "a new next key; the old next key is destroyed. Events signed after your last "
        "own event with the old key (a thief's) become revoked. If no node stored a "
        "saved rotation yet, this re-sends it unchanged.",
    )
    rot.add_argument("name", nargs="?", help="identity name (default: --as or the default)")
    rot.set_defaults(handler=cmd_rotate)

    rec = ids_sub.add_parser(
        "recover",
        parents=[common],
        help="take a rotatable identity back with a recovery key",
        description="Sign a recovery with one of the identity's recovery keys: new "
        "signing and next keys, outranking any rotation (e.g. by a thief holding both). "
        "Needs only the recovery key and this home's outbox, not the old passphrase: "
        "the new keys are sealed with a new one (asked, $MURMUR_PASSPHRASE or "
        "--passphrase-file). On a new machine (NAME is not an identity of this home), "
        "it needs only the recovery key and the did (--did, or the one the key file "
        "names): it reads the identity's chain from every configured node, verified, "
        "and you choose your last own event with --after (or at the prompt on a "
        "terminal): everything after it, a thief's events, becomes revoked. NAME is "
        "then created here with the new keys.",
    )
    rec.add_argument("name", help="identity name (on a new machine: the name to create)")
    rec.add_argument(
        "--recovery-key",
        required=True,
        metavar="FILE",
        help="the recovery key file, or '-' to read the file or phrase from standard input",
    )
    rec.add_argument(
        "--replace-recovery",
        action="store_true",
        help="also replace this recovery key and those below it with fresh ones "
        "(shown once; the higher-priority ones stay)",
    )
    rec.add_argument(
        "--recovery-out",
        metavar="DIR",
        help="with --replace-recovery: write the new recovery keys there (mode 0600)",
    )
    rec.add_argument(
        "--did",
        metavar="DID",
        help="new machine: the did:murmur to recover (default: the did the recovery key "
        "file names; a phrase names none)",
    )
    rec.add_argument(
        "--after",
        metavar="ID",
        help="new machine: your last own event (an id or its first hex digits, at least "
        "4), which the recovery follows; required without a terminal. Run without it to "
        "see the choices",
    )
    rec.add_argument(
        "--encrypt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="new machine: seal the new keys with a new passphrase (default), or "
        "--no-encrypt to store them in plain hex (throwaway and dev keys)",
    )
    rec.set_defaults(handler=cmd_recover)

    keys = ids_sub.add_parser(
        "keys",
        parents=[common],
        help="show an author's key history, verified from every node",
    )
    keys.add_argument("who", metavar="DID|ALIAS", help="a did:murmur, a petname or a local name")
    keys.set_defaults(handler=cmd_keys)
