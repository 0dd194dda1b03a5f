"""``murmur filters …`` and ``murmur labelers …``: the reader's moderation settings.

They edit ``$MURMUR_HOME/filters.toml`` (spec 0006 §config). Until that file exists
the default filters apply; the first change writes them out, so adding a filter never
silently drops a default. Every filter is built before it is saved: a type that does
not exist is ``filter-not-found``, parameters its class refuses are ``filter-load``.
``filters test`` runs one filter on one verified event. Publishing commands (``label``,
``list``, ``labeler run``) live in :mod:`client.cli.label_cmds`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from client.cli import label_cmds
from client.cli.output import Context, Handler, Result
from client.cli.render import Names, format_source
from client.cli.session import Session, run
from client.moderation.builtins import BUILTINS
from client.moderation.config import FilterSpec
from client.moderation.core import ViewContext
from client.moderation.pipeline import DEFAULT_BUDGET_MS
from client.moderation.settings import (
    add_filter,
    implicit_labelers,
    labelers_note,
    load_config,
    parse_label_action,
    parse_param,
    remove_filter,
    set_enabled,
    subscribe_labeler,
    unsubscribe_labeler,
)
from client.moderation.trial import Trial, check_trial, trial
from client.shortids import parse_event_ref
from client.textsafety import safe_line

__all__ = ["load_config", "register", "viewer"]


def _filter_doc(position: int, spec: FilterSpec) -> dict[str, Any]:
    return {
        "position": position,
        "name": spec.name,
        "type": spec.type,
        "enabled": spec.enabled,
        "params": spec.params,
        "budget_ms": spec.budget_ms,
    }


def _filter_line(doc: dict[str, Any]) -> str:
    state = "enabled" if doc["enabled"] else "DISABLED"
    budget = "" if doc["budget_ms"] == DEFAULT_BUDGET_MS else f"  budget {doc['budget_ms']:g} ms"
    line = f"{doc['position']:>3}. {doc['name']}  [{doc['type']}]  {state}{budget}"
    params = "  ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in doc["params"].items())
    return line + (f"\n       {params}" if params else "")


def viewer(session: Session) -> str:
    """The reader's did; "" when there is no identity (nothing is "yours" then)."""
    if session.ctx.as_name is None and session.keystore.default() is None:
        return ""
    return session.stored_identity().did


# -- filters ---------------------------------------------------------------------------


def cmd_filters_list(args: argparse.Namespace, ctx: Context) -> Result:
    config, defaults = load_config(ctx.home)
    rows = [_filter_doc(i, f) for i, f in enumerate(config.filters, start=1)]
    doc = {
        "path": str(config.path),
        "defaults": defaults,
        "filters": rows,
        "labelers": len(config.labelers),
    }
    implicit = implicit_labelers(config)
    doc["implicit_labelers"] = implicit
    lines = ["Filters, in the order they run (the most severe decision wins):"]
    lines += [_filter_line(r) for r in rows]
    if implicit is not None:
        lines.append(f"  +  {implicit}  [labelers]  implicit: your subscribed labelers, last")
    if not rows and implicit is None:
        lines.append("  (none: everything is shown)")
    if defaults:
        lines.append(f"(the defaults: {config.path} does not exist yet)")
    lines.append(f"Subscribed labelers: {len(config.labelers)} (murmur labelers list)")
    note = labelers_note(config)
    if note:
        lines.append(f"! {note}")
    return Result(doc, "\n".join(lines))


def cmd_filters_add(args: argparse.Namespace, ctx: Context) -> Result:
    spec, position = run(
        lambda: add_filter(
            ctx.home,
            args.type,
            name=args.name,
            params=dict(parse_param(p) for p in args.param or ()),
            position=args.position,
            budget_ms=args.budget_ms,
            enabled=not args.disabled,
        )
    )
    doc = _filter_doc(position, spec)
    return Result(doc, f"Added filter {spec.name} at position {position}.\n{_filter_line(doc)}")


def _toggle(enabled: bool | None) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> Result:
        if enabled is None:
            spec = remove_filter(ctx.home, args.name)
            verb = "Removed"
        else:
            spec = set_enabled(ctx.home, args.name, enabled)
            verb = "Enabled" if enabled else "Disabled"
        doc = {"name": spec.name, "type": spec.type, "enabled": spec.enabled}
        doc["removed"] = enabled is None
        return Result(doc, f"{verb} filter {spec.name}.")

    return handler


def cmd_filters_test(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    config, _ = load_config(ctx.home)
    check_trial(config, args.name)  # filter-not-found / filter-load, before any read
    ref = parse_event_ref(args.event)
    me = viewer(session)

    async def go() -> Trial:
        async with session.reader() as reader:
            eid = await session.event_id(reader, ref)  # spec 0007 #short-ids
            return await trial(
                reader, config, args.name, eid, viewer=me,
                context=ViewContext(args.context), home=ctx.home,
            )  # fmt: skip

    result = run(go)
    eid, verdict, final = result.event.id, result.verdict, result.decision
    names = Names(session.config, result.view.profiles)
    doc = {
        "filter": args.name,
        "type": result.type,
        "enabled": result.enabled,
        "event": eid.hex(),
        "author": result.event.author,
        "decision": None if final is None else final.to_json(),
        "verdict": None if verdict is None else verdict.to_json(),
        "warnings": result.warnings,
    }
    head = f"{args.name} on {eid.hex()[:12]} by {names.display(result.event.author)}: "
    if final is None:
        text = head + "no decision"
    else:
        via = f" (via {safe_line(final.via)})" if final.via else ""
        source = format_source(final.source, names)
        text = head + f"{final.action.value} — {safe_line(final.reason)} ({source}){via}"
    if not doc["enabled"]:
        text += "\n(this filter is disabled: it does not run in your views)"
    text += "".join(f"\n! {safe_line(w)}" for w in doc["warnings"])
    return Result(doc, text)


# -- labelers --------------------------------------------------------------------------


def _labeler_doc(session: Session, did: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"did": did, "alias": session.config.alias_of(did), "labels": dict(labels)}


def _labeler_line(doc: dict[str, Any]) -> str:
    who = f"@{doc['alias']}  " if doc["alias"] else ""
    labels = ", ".join(f"{v}={a}" for v, a in doc["labels"].items()) or "(no labels mapped)"
    return f"{who}{doc['did']}\n  {labels}"


def cmd_labelers_subscribe(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    labels = dict(parse_label_action(s) for s in args.set or ())
    sub, config = subscribe_labeler(ctx.home, did, labels)
    doc = _labeler_doc(session, did, sub.labels)
    text = f"Subscribed to labeler {Names(session.config).display(did)}.\n{_labeler_line(doc)}"
    note = labelers_note(config)
    if note:
        doc["warning"] = note
        text += f"\n! {note}"
    return Result(doc, text)


def cmd_labelers_unsubscribe(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    unsubscribe_labeler(ctx.home, did)
    return Result({"did": did, "unsubscribed": True}, f"Unsubscribed from labeler {did}.")


def cmd_labelers_list(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    config, _ = load_config(ctx.home)
    rows = [_labeler_doc(session, s.did, s.labels) for s in config.labelers]
    text = "\n".join(_labeler_line(r) for r in rows) or (
        "No labeler subscribed. Subscribe: murmur labelers subscribe DID --set spam=hide"
    )
    note = labelers_note(config)
    if note:
        text += f"\n! {note}"
    return Result({"labelers": rows}, text)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    filters = sub.add_parser(
        "filters",
        help="your moderation filters (filters.toml)",
        description="Filters run in order on everything you read; the most severe "
        "decision (hide > warn > badge) wins, and your own allow-rules beat labelers "
        "and lists.",
    )
    fsub = filters.add_subparsers(dest="filters_command", metavar="COMMAND", required=True)
    p = fsub.add_parser("list", parents=[common], help="the filters, in order")
    p.set_defaults(handler=cmd_filters_list)

    p = fsub.add_parser(
        "add",
        parents=[common],
        help="add a filter",
        description="TYPE is a built-in (" + ", ".join(sorted(BUILTINS)) + "), "
        "PATH.py:Class (a custom filter file) or entry:NAME (an installed package). "
        'VALUE is JSON when it parses as JSON (3, true, ["a","b"], "x"), else text.',
    )
    p.add_argument("type", metavar="TYPE")
    p.add_argument("--name", help="its name (default: the type, or the class name)")
    p.add_argument("--param", metavar="KEY=VALUE", action="append", help="a parameter; repeatable")
    p.add_argument("--position", type=int, metavar="N", help="run it Nth (default: last)")
    p.add_argument("--budget-ms", type=float, metavar="MS", help="time budget per item")
    p.add_argument("--disabled", action="store_true", help="add it switched off")
    p.set_defaults(handler=cmd_filters_add)

    for name, enabled, helptext in (
        ("remove", None, "remove a filter"),
        ("enable", True, "switch a filter on"),
        ("disable", False, "switch a filter off (it stays configured)"),
    ):
        p = fsub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(handler=_toggle(enabled))

    p = fsub.add_parser(
        "test", parents=[common], help="run one filter on one event and show its decision"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--event", required=True, metavar="ID", help="event id (as printed, or all 64 hex)"
    )
    p.add_argument(
        "--context",
        choices=[c.value for c in ViewContext],
        default=ViewContext.TIMELINE.value,
        help="the view to test it in (default: timeline)",
    )
    p.set_defaults(handler=cmd_filters_test)

    labelers = sub.add_parser("labelers", help="the labelers you trust, and what labels do")
    lsub = labelers.add_subparsers(dest="labelers_command", metavar="COMMAND", required=True)
    p = lsub.add_parser(
        "subscribe",
        parents=[common],
        help="trust a labeler: map its labels to hide, warn, badge or ignore",
    )
    p.add_argument("who", metavar="DID|ALIAS")
    p.add_argument(
        "--set",
        metavar="LABEL=ACTION",
        action="append",
        help="what a label does (hide|warn|badge|ignore); repeatable",
    )
    p.set_defaults(handler=cmd_labelers_subscribe)
    p = lsub.add_parser("unsubscribe", parents=[common], help="stop trusting a labeler")
    p.add_argument("who", metavar="DID|ALIAS")
    p.set_defaults(handler=cmd_labelers_unsubscribe)
    p = lsub.add_parser("list", parents=[common], help="subscribed labelers")
    p.set_defaults(handler=cmd_labelers_list)

    label_cmds.register(sub, common)
