"""``murmur follow|unfollow|following|profile set|profile show|search``."""

from __future__ import annotations

import argparse
from typing import Any

from client import actions
from client.actions import Unchanged
from client.cli.output import Context, Result
from client.cli.post_cmds import done_result, publish_result, unchanged_result
from client.cli.render import Names, format_report, indented, relative_time
from client.cli.session import Session, run
from client.followers import SocialStats, social_stats
from client.textsafety import display_name, safe_name
from client.views import View, follow_set, profile_view, profiles_of, search_view
from protocol.events import Event

__all__ = ["register"]


def _nodes_doc(view: View) -> dict[str, Any]:
    return view.report.to_json()


def _with_report(text: str, view: View, names: Names) -> str:
    report = format_report(view.report, names)
    return f"{text}\n{report}" if report else text


def cmd_follow(args: argparse.Namespace, ctx: Context) -> Result:
    """``follow``/``unfollow`` (:func:`client.actions.follow`)."""
    session = Session.open(ctx)
    unfollow = args.command == "unfollow"
    alias = getattr(args, "alias", None)
    done = run(lambda: actions.follow(session, args.who, unfollow=unfollow, alias=alias))
    if isinstance(done, Unchanged):
        return unchanged_result(session, done)
    assert done.subject is not None  # noqa: S101 - a follow always has its subject
    who = session.names(done.profiles).display(done.subject)
    out = done_result(session, done, f"{'Unfollowed' if unfollow else 'Followed'} {who}:")
    out.data["subject"] = done.subject
    return out


def cmd_following(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    me = session.stored_identity().did

    async def go() -> tuple[dict[str, Event], View]:
        async with session.reader() as reader:
            follows = await follow_set(reader, me)
            profiles = await profiles_of(reader, follows)
            return follows, View(items=[], report=reader.report, profiles=profiles)

    follows, view = run(go)
    names = session.names(view.profiles)
    rows: list[dict[str, Any]] = [
        {
            "did": did,
            "alias": session.config.alias_of(did),
            "name": names.profile_name(did),
            "since": e.ts,
            "id": e.id_hex,
        }
        for did, e in sorted(follows.items(), key=lambda kv: names.display(kv[0]).lower())
    ]
    if rows:
        text = "\n".join(
            f"{names.display(r['did'])}  {r['did']}  (since {relative_time(r['since'])})"
            for r in rows
        )
    else:
        text = "You follow nobody yet. Follow someone: murmur follow DID --alias NAME"
    return Result({"following": rows, **_nodes_doc(view)}, _with_report(text, view, names))


def _profile_doc(did: str, view: View, names: Names) -> dict[str, Any]:
    p = view.profiles.get(did)
    body = p.body if p is not None and p.body is not None else {}
    return {
        "did": did,
        "alias": names.config.alias_of(did),
        "name": body.get("name"),
        "bio": body.get("bio"),
        "id": p.id_hex if p is not None else None,
        "seq": p.seq if p is not None else None,
        "ts": p.ts if p is not None else None,
    }


def cmd_profile_set(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    done = run(lambda: actions.set_profile(session, name=args.name, bio=args.bio))
    out = publish_result(session, done.result, "Profile updated:", done.profiles)
    assert done.event.body is not None  # noqa: S101 - we just signed it
    out.data["name"] = done.event.body.get("name")
    out.data["bio"] = done.event.body.get("bio")
    return out


def cmd_profile_show(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who) if args.who else session.stored_identity().did

    async def go() -> tuple[View, SocialStats]:
        async with session.reader() as reader:
            view = await profile_view(reader, did)
            return view, await social_stats(reader, did)  # spec 0007 #followers

    view, stats = run(go)
    names = session.names(view.profiles)
    doc = _profile_doc(did, view, names)
    if doc["id"] is None:
        text = f"{names.display(did)}  {did}\n  (no profile published)"
    else:
        name = display_name(doc["name"]) if isinstance(doc["name"], str) else ""
        bio = indented(doc["bio"], "        ").lstrip() if isinstance(doc["bio"], str) else ""
        text = f"{names.display(did)}  {did}\n  name: {name}\n  bio:  {bio}"
    text += "\n  " + stats.summary()
    return Result(
        {"profile": doc, "stats": stats.to_json(), **_nodes_doc(view)},
        _with_report(text, view, names),
    )


def cmd_search(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)

    async def go() -> View:
        async with session.reader() as reader:
            return await search_view(reader, args.name, limit=args.limit)

    view = run(go)
    names = session.names(view.profiles)
    rows = [_profile_doc(e.author, view, names) for e in view.items]
    if rows:
        text = "\n".join(
            f"{display_name(str(r['name']))}  {r['did']}"
            + (f"  (@{safe_name(r['alias'])})" if r["alias"] else "")
            + ("\n" + indented(str(r["bio"]), "  ") if r["bio"] else "")
            for r in rows
        )
    else:
        text = f"No profile name contains {args.name!r} on the configured nodes."
    return Result({"profiles": rows, **_nodes_doc(view)}, _with_report(text, view, names))


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    follow = sub.add_parser("follow", parents=[common], help="follow someone (signed, public)")
    follow.add_argument("who", metavar="DID|ALIAS")
    follow.add_argument("--alias", metavar="NAME", help="also save NAME as your petname for them")
    follow.set_defaults(handler=cmd_follow)
    unfollow = sub.add_parser("unfollow", parents=[common], help="stop following someone")
    unfollow.add_argument("who", metavar="DID|ALIAS")
    unfollow.set_defaults(handler=cmd_follow)
    following = sub.add_parser(
        "following", parents=[common], help="who you follow (from your signed events)"
    )
    following.set_defaults(handler=cmd_following)

    profile = sub.add_parser("profile", help="your public profile, or someone's")
    psub = profile.add_subparsers(dest="profile_command", metavar="COMMAND", required=True)
    pset = psub.add_parser(
        "set",
        parents=[common],
        help="publish your profile",
        description="Publish a new profile. Fields you do not give are "
        "kept from your current profile; an empty value clears one.",
    )
    pset.add_argument("--name", help="display name (not unique: people see it with ~)")
    pset.add_argument("--bio", help="a few words about you")
    pset.set_defaults(handler=cmd_profile_set)
    pshow = psub.add_parser("show", parents=[common], help="show a profile (default: yours)")
    pshow.add_argument("who", nargs="?", metavar="DID|ALIAS")
    pshow.set_defaults(handler=cmd_profile_show)

    # ``search`` (people, and posts) is registered by browse_cmds, which calls cmd_search.
