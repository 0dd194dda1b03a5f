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
import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from client.cli import label_cmds
from client.cli.output import Context, Handler, Result
from client.cli.render import Names, format_source
from client.cli.session import Session, run
from client.errors import FilterError, FilterLoadError, FilterNotFoundError
from client.moderation.apply import (
    DEFAULT_FILTERS,
    LABELERS_FILTER,
    Moderated,
    build_pipeline,
    moderate,
    try_filter,
)
from client.moderation.builtins import BUILTINS, Labelers
from client.moderation.config import LABEL_ACTIONS, FilterSpec, ModerationConfig
from client.moderation.core import ViewContext
from client.moderation.pipeline import DEFAULT_BUDGET_MS
from client.shortids import parse_event_ref
from client.textsafety import safe_line
from client.views import View, follow_set, profiles_of, resolve
from protocol.errors import BadRequestError, NotFoundError

__all__ = ["load_config", "register", "viewer"]


def load_config(home: Path) -> tuple[ModerationConfig, bool]:
    """``filters.toml``, or the defaults when it does not exist yet (second value True)."""
    config = ModerationConfig.load(home)
    if config.path.exists():
        return config, False
    config.filters = [replace(f, params=copy.deepcopy(f.params)) for f in DEFAULT_FILTERS]
    return config, True


def _param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: VALUE as JSON when it parses (numbers, booleans, lists, "strings")."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadRequestError(f"--param {text!r}: write KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if _has_null(value):
        raise BadRequestError(f"--param {key}: null is not a value; leave the parameter out")
    return key, value


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    return False


def _kebab(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|_", "-", name).lower()
    return re.sub(r"[^a-z0-9_.-]", "-", words).strip("-.") or "filter"


def _resolve_type(type_: str) -> tuple[str, str]:
    """The type as stored (a file path made absolute) and the filter's default name."""
    if type_ in BUILTINS:
        return type_, type_
    if type_.startswith("entry:"):
        return type_, _kebab(type_.removeprefix("entry:"))
    if ".py:" in type_:
        path_text, _, cls = type_.rpartition(":")
        path = Path(path_text).expanduser().resolve()
        if not path.is_file():
            raise FilterLoadError(f"{type_!r}: no such file {path}")
        return f"{path}:{cls}", _kebab(cls)
    known = ", ".join(sorted(BUILTINS))
    raise FilterNotFoundError(
        f"unknown filter type {type_!r}: a built-in ({known}), PATH.py:Class or entry:NAME"
    )


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


def _labelers_note(config: ModerationConfig) -> str | None:
    """Why subscribed labelers would have no effect, if they would not."""
    typed = [f for f in config.filters if f.type == Labelers.name]
    if config.labelers and typed and not any(f.enabled for f in typed):
        names = ", ".join(f.name for f in typed)
        return f"labels have no effect: filter {names} is disabled (murmur filters enable NAME)"
    return None


def _implicit_labelers(config: ModerationConfig) -> str | None:
    """The name of the implicit labelers filter (spec 0006 §default-filters), if it runs."""
    if not config.labelers or any(f.type == Labelers.name for f in config.filters):
        return None
    taken, name, n = {f.name for f in config.filters}, LABELERS_FILTER, 1
    while name in taken:
        n += 1
        name = f"{LABELERS_FILTER}-{n}"
    return name


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
    implicit = _implicit_labelers(config)
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
    note = _labelers_note(config)
    if note:
        lines.append(f"! {note}")
    return Result(doc, "\n".join(lines))


def cmd_filters_add(args: argparse.Namespace, ctx: Context) -> Result:
    config, _ = load_config(ctx.home)
    type_, default_name = _resolve_type(args.type)
    name = args.name or default_name
    if any(f.name == name for f in config.filters):
        raise FilterError(f"a filter named {name!r} exists; pick another with --name NAME")
    if args.budget_ms is not None and not 0 < args.budget_ms <= 60_000:
        raise BadRequestError("--budget-ms must be in (0, 60000]")
    if args.position is not None and args.position < 1:
        raise BadRequestError("--position counts from 1")
    spec = FilterSpec(
        name=name,
        type=type_,
        enabled=not args.disabled,
        params=dict(_param(p) for p in args.param or ()),
        budget_ms=DEFAULT_BUDGET_MS if args.budget_ms is None else args.budget_ms,
    )
    # Built as a view builds it (a custom filter in its worker): filter-not-found /
    # filter-load before anything is saved.
    run(lambda: try_filter(spec))
    config.add(spec, position=None if args.position is None else args.position - 1)
    config.save()
    position = config.filters.index(spec) + 1
    doc = _filter_doc(position, spec)
    return Result(doc, f"Added filter {name} at position {position}.\n{_filter_line(doc)}")


def _toggle(enabled: bool | None) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> Result:
        config, _ = load_config(ctx.home)
        if enabled is None:
            spec = config.remove(args.name)
            verb = "Removed"
        else:
            spec = config.find(args.name)
            spec.enabled = enabled
            verb = "Enabled" if enabled else "Disabled"
        config.save()
        doc = {"name": spec.name, "type": spec.type, "enabled": spec.enabled}
        doc["removed"] = enabled is None
        return Result(doc, f"{verb} filter {spec.name}.")

    return handler


def cmd_filters_test(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    config, _ = load_config(ctx.home)
    build_pipeline(config, only=args.name)  # filter-not-found / filter-load, before any read
    spec = next((f for f in config.filters if f.name == args.name), None)
    ref = parse_event_ref(args.event)
    me = viewer(session)

    async def go() -> tuple[bytes, View, Moderated]:
        async with session.reader() as reader:
            eid = await session.event_id(reader, ref)  # spec 0007 #short-ids
            event = (await reader.lookup([eid])).get(eid)
            if event is None:
                raise NotFoundError(f"no configured node holds event {eid.hex()}")
            related = await resolve(reader, [event])
            dids = {event.author} | {e.author for e in related.values()}
            view = View(
                items=[event],
                report=reader.report,
                related=related,
                profiles=await profiles_of(reader, dids),
            )
            follows = frozenset(await follow_set(reader, me, mark=False)) if me else frozenset()
            moderated = await moderate(
                view,
                reader,
                viewer=me,
                context=ViewContext(args.context),
                config=config,
                follows=follows,
                home=ctx.home,
                only=args.name,
            )
            return eid, view, moderated

    eid, view, moderated = run(go)
    verdict = moderated.verdicts.get(eid)
    names = Names(session.config, view.profiles)
    final = None if verdict is None else verdict.final
    warnings = list(moderated.warnings) + ([] if verdict is None else list(verdict.warnings))
    doc = {
        "filter": args.name,
        "type": Labelers.name if spec is None else spec.type,
        "enabled": True if spec is None else spec.enabled,
        "event": eid.hex(),
        "author": view.items[0].author,
        "decision": None if final is None else final.to_json(),
        "verdict": None if verdict is None else verdict.to_json(),
        "warnings": list(dict.fromkeys(warnings)),
    }
    head = f"{args.name} on {eid.hex()[:12]} by {names.display(view.items[0].author)}: "
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


def _label_action(text: str) -> tuple[str, str]:
    val, sep, action = text.partition("=")
    if not sep or action not in LABEL_ACTIONS:
        raise BadRequestError(
            f"--set {text!r}: write LABEL=ACTION, ACTION one of {', '.join(LABEL_ACTIONS)}"
        )
    return val.strip(), action


def _labeler_doc(session: Session, did: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"did": did, "alias": session.config.alias_of(did), "labels": dict(labels)}


def _labeler_line(doc: dict[str, Any]) -> str:
    who = f"@{doc['alias']}  " if doc["alias"] else ""
    labels = ", ".join(f"{v}={a}" for v, a in doc["labels"].items()) or "(no labels mapped)"
    return f"{who}{doc['did']}\n  {labels}"


def cmd_labelers_subscribe(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    config, _ = load_config(ctx.home)
    if not args.set and config.labeler(did) is None:
        raise BadRequestError("say what each label does: --set LABEL=hide|warn|badge|ignore")
    sub = config.subscribe(did, dict(_label_action(s) for s in args.set or ()))
    config.save()
    doc = _labeler_doc(session, did, sub.labels)
    text = f"Subscribed to labeler {Names(session.config).display(did)}.\n{_labeler_line(doc)}"
    note = _labelers_note(config)
    if note:
        doc["warning"] = note
        text += f"\n! {note}"
    return Result(doc, text)


def cmd_labelers_unsubscribe(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    config, _ = load_config(ctx.home)
    config.unsubscribe(did)
    config.save()
    return Result({"did": did, "unsubscribed": True}, f"Unsubscribed from labeler {did}.")


def cmd_labelers_list(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    config, _ = load_config(ctx.home)
    rows = [_labeler_doc(session, s.did, s.labels) for s in config.labelers]
    text = "\n".join(_labeler_line(r) for r in rows) or (
        "No labeler subscribed. Subscribe: murmur labelers subscribe DID --set spam=hide"
    )
    note = _labelers_note(config)
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
