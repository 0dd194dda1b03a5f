"""How events and read reports look: JSON documents for ``--json``, text for people.

Names follow one rule everywhere: the reader's petname for the did, else the latest
profile name (marked with ``~`` — anyone can claim any display name), else a short did.
Times are relative ("3m ago"), ids are shortened to 12 hex characters (commands take
the full id, which ``--json`` prints).

Text for people never carries another person's characters raw (spec 0007
#terminal-safety): names go through :func:`client.textsafety.display_name` (one line,
invisible characters escaped, a ``⚠mixed-script``/``⚠confusable`` marker), post text
and bios through ``safe_text``, every other peer-supplied field (reasons, warnings,
node messages, URLs) through ``safe_line``. ``--json`` documents carry the exact text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from client.facets import facets_of, post_segments
from client.imagexfer import human_size
from client.moderation.core import Action, Decision
from client.moderation.pipeline import Verdict
from client.names import Names as BaseNames
from client.names import relative_time, short_did, short_id
from client.publish import PublishResult
from client.reader import ReadReport
from client.reportlines import EXCLUDED, report_lines
from client.textsafety import display_name, safe_line, safe_text
from protocol import kinds
from protocol.embeds import EmbedImage
from protocol.events import Event
from protocol.facets import LINK, MENTION, Facet

__all__ = [
    "Names",
    "event_doc",
    "format_event",
    "format_explain",
    "format_judged",
    "format_source",
    "format_publish",
    "format_report",
    "image_doc",
    "image_line",
    "image_lines",
    "indented",
    "post_text",
    "relative_time",
    "short_did",
    "short_id",
    "snippet",
]


def indented(text: str, indent: str, *, safe: bool = False) -> str:
    """Multi-line free text (a post, a bio), terminal-safe, each line after ``indent``
    (``safe``: the text went through :func:`safe_text` or :func:`post_text` already)."""
    shown = text if safe else safe_text(text)
    return "\n".join(indent + line for line in shown.splitlines() or [""])


class Names(BaseNames):
    """Display names for a terminal: petname > ~profile name > short did, a look-alike
    profile name marked ``⚠mixed-script``/``⚠confusable`` (spec 0007 #terminal-safety);
    :meth:`display_raw` is the exact form for ``--json``."""

    def shown_profile_name(self, name: str) -> str:
        return display_name(name)


def _hex(value: object) -> str | None:
    return value.hex() if isinstance(value, bytes) else None


# -- facets (spec 0003 #facets, spec 0007 #facets) --------------------------------------


def post_text(e: Event, names: Names) -> str:
    """A post's text for a terminal, each facet shown as what it names (spec 0007
    #facets): a mention as the reader's own name for its did, whatever the covered text
    says; a link or a hashtag as written, followed by its target when the written text
    says something else. Each piece is made safe on its own, so no character of the
    author's (a combining mark, a joiner, a bidi control) can attach to, reorder or
    hide a name the client prints."""
    out: list[str] = []
    for seg in post_segments(e):
        f = seg.facet
        shown = safe_text(seg.text)
        if f is None:
            out.append(shown)
        elif f.type == MENTION:
            out.append(names.display(f.value))
        elif f.type == LINK:
            out.append(shown if seg.text == f.value else f"{shown} [→ {safe_line(f.value)}]")
        else:
            out.append(shown if seg.text == "#" + f.value else f"{shown} [#{safe_line(f.value)}]")
    return "".join(out)


# -- images (spec 0003 #embed, spec 0007 #images) ---------------------------------------

#: How an image type is named on a terminal.
_IMAGE_TYPE = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP", "image/gif": "GIF"}


def image_doc(image: EmbedImage) -> dict[str, Any]:
    """The ``--json`` form of one image: the claim, its hash in hex."""
    return {
        "hash": image.hash.hex(),
        "mime": image.mime,
        "size": image.size,
        "width": image.width,
        "height": image.height,
        "alt": image.alt,
    }


def image_line(image: EmbedImage, n: int, total: int) -> str:
    """``[image 1/2: <alt> · 1200×800 JPEG · 230 KB]``: the alt text on one line,
    terminal-safe (spec 0007 #terminal-safety), ``no description`` when empty."""
    alt = safe_line(" ".join(image.alt.split())) if image.alt.strip() else "no description"
    kind = _IMAGE_TYPE.get(image.mime, safe_line(image.mime))
    return (
        f"[image {n}/{total}: {alt} · {image.width}×{image.height} {kind} · "
        f"{human_size(image.size)}]"
    )


def image_lines(e: Event, indent: str = "") -> list[str]:
    """One :func:`image_line` a line for each of a post's images."""
    images = e.images
    return [indent + image_line(im, n, len(images)) for n, im in enumerate(images, 1)]


def _facet_doc(f: Facet, text: bytes, names: Names) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": f.type,
        "start": f.start,
        "end": f.end,
        "text": text[f.start : f.end].decode("utf-8"),
        f.key: f.value,
    }
    if f.type == MENTION:
        doc["name"] = names.display_raw(f.value)
        doc["alias"] = names.config.alias_of(f.value)
    return doc


def event_doc(
    e: Event, names: Names, related: Mapping[bytes, Event] | None = None, *, depth: int = 0
) -> dict[str, Any]:
    """The ``--json`` form of an event: always ``id author seq ts kind text``."""
    body = e.body or {}
    doc: dict[str, Any] = {
        "id": e.id_hex,
        "author": e.author,
        "author_name": names.display_raw(e.author),
        "alias": names.config.alias_of(e.author),
        "seq": e.seq,
        "ts": e.ts,
        "kind": e.kind,
        "text": body.get("text") if e.kind == kinds.POST else None,
        "deleted": e.body is None,
    }
    if e.kind == kinds.POST:
        reply = body.get("reply")
        doc["reply"] = (
            {"root": _hex(reply.get("root")), "parent": _hex(reply.get("parent"))}
            if isinstance(reply, dict)
            else None
        )
        doc["quote"] = _hex(body.get("quote"))
        for key in ("warn", "langs", "tags"):
            doc[key] = list(body.get(key, []))
        data = str(body.get("text", "")).encode("utf-8")
        doc["facets"] = [_facet_doc(f, data, names) for f in facets_of(e)]
        doc["images"] = [image_doc(image) for image in e.images]
    elif "target" in body:
        doc["target"] = _hex(body["target"])
    elif "subject" in body:
        doc["subject"] = (
            body["subject"] if isinstance(body["subject"], str) else _hex(body["subject"])
        )
    if depth == 0 and related is not None:

        def sub(eid: object) -> dict[str, Any] | None:
            ev = related.get(eid) if isinstance(eid, bytes) else None
            return None if ev is None else event_doc(ev, names, depth=1)

        if e.kind == kinds.REPOST:
            doc["reposted"] = sub(body.get("target"))
        if e.kind == kinds.POST and doc["reply"] is not None:
            doc["parent"] = sub(body["reply"]["parent"])
        if e.kind == kinds.POST and doc["quote"] is not None:
            doc["quoted"] = sub(body["quote"])
    return doc


def snippet(e: Event | None, names: Names, limit: int = 60) -> str:
    """A post's text on one line, escaped, cut at ``limit`` characters."""
    if e is None:
        return "(not available)"
    if e.body is None:
        return "(deleted)"
    text = " ".join(post_text(e, names).split())
    return safe_line(text if len(text) <= limit else text[: limit - 1] + "…")


def format_event(
    e: Event,
    names: Names,
    related: Mapping[bytes, Event] | None = None,
    *,
    indent: str = "",
    now_ms: int | None = None,
    context: bool = True,
    masked: Mapping[str, str] | None = None,
) -> str:
    """A post, reply or repost as a few readable lines.

    ``masked`` maps an embed role (``parent``, ``quoted``) to a warning shown instead
    of that embedded post's text.
    """
    masked = masked or {}
    related = related or {}
    body = e.body or {}
    head = f"{names.display(e.author)} · {relative_time(e.ts, now_ms)} · {short_id(e.id)}"
    if e.kind == kinds.REPOST:
        target = related.get(body.get("target", b""))
        lines = [
            f"{indent}⟳ {names.display(e.author)} reposted · {relative_time(e.ts, now_ms)}"
            f" · {short_id(e.id)}"
        ]
        if target is None:
            lines.append(f"{indent}  (reposted {short_id(body.get('target', b''))}: not available)")
        else:
            lines.append(format_event(target, names, related, indent=indent + "  ", now_ms=now_ms))
        return "\n".join(lines)
    lines = [indent + head]
    reply = body.get("reply")
    if isinstance(reply, dict) and context:
        parent = related.get(reply["parent"])
        who = names.display(parent.author) if parent is not None else short_id(reply["parent"])
        shown = f"⚠ {masked['parent']}" if "parent" in masked else snippet(parent, names)
        lines.append(f"{indent}  ↳ replying to {who}: {shown}")
    if body.get("warn"):
        warn = ", ".join(safe_line(str(w)) for w in body["warn"])
        lines.append(f"{indent}  [content warning: {warn}]")
    text = post_text(e, names) if e.body is not None else "(deleted or withheld body)"
    lines.append(indented(text, indent + "  ", safe=True))
    lines.extend(image_lines(e, indent + "  "))
    if isinstance(body.get("quote"), bytes):
        quoted = related.get(body["quote"])
        who = names.display(quoted.author) if quoted is not None else short_id(body["quote"])
        shown = f"⚠ {masked['quoted']}" if "quoted" in masked else snippet(quoted, names)
        lines.append(f"{indent}  ❝ {who}: {shown}")
    return "\n".join(lines)


#: Events not shown for their key state that the report lists without --explain.
MAX_EXCLUDED_LINES = 10


def format_report(report: ReadReport, names: Names, *, explain: bool = False) -> str:
    """One line per problem (:func:`client.reportlines.report_lines`, ``! `` before
    each): failed nodes, withheld and invalid events, gaps, forks, and events of
    did:murmur authors not shown as theirs (spec 0008 §8.7; all of them, with full ids,
    when ``explain``, else the first :data:`MAX_EXCLUDED_LINES`)."""
    lines = report_lines(report, names, explain=explain, full_ids=explain)
    excluded = [line for line in lines if line.kind == EXCLUDED]
    shown = excluded if explain else excluded[:MAX_EXCLUDED_LINES]
    out = [("! " if line.problem else "  ") + line.text for line in lines if line.kind != EXCLUDED]
    out += ["! " + line.text for line in shown]
    if len(excluded) > len(shown):
        out.append(
            f"! and {len(excluded) - len(shown)} more event(s) not shown for their key "
            "state (--explain lists them)"
        )
    return "\n".join(out)


def format_publish(result: PublishResult, what: str) -> str:
    e = result.event
    stored = [o for o in result.outcomes if o.stored]
    lines = [
        f"{what} {short_id(e.id)} (seq {e.seq}) — stored on {len(stored)} of "
        f"{len(result.outcomes)} node(s)"
    ]
    if not result.quorum_met:  # spec 0007 #post-quorum
        lines.append(f"! fewer nodes stored it than the {result.quorum} asked for (--quorum)")
    for o in result.outcomes:
        if not o.stored:
            parts = (o.url, o.status, o.code, o.message)
            lines.append("! " + ": ".join(safe_line(str(x)) for x in parts if x is not None))
    lines.extend(image_lines(e))
    lines.append(f"id: {e.id_hex}")
    return "\n".join(lines)


# -- moderation (spec 0006 §explain) ---------------------------------------------------


def format_source(source: str, names: Names) -> str:
    """A decision's source for people: petnames for dids, ``list @alice/name`` for lists."""
    return names.source(source)


def _decision_text(d: Decision, names: Names) -> str:
    via = f", on the {safe_line(d.via)} post" if d.via else ""
    return f"{safe_line(d.reason)} ({format_source(d.source, names)}{via})"


def format_judged(
    e: Event,
    verdict: Verdict | None,
    names: Names,
    related: Mapping[bytes, Event] | None = None,
    *,
    indent: str = "",
    now_ms: int | None = None,
    context: bool = True,
    expand: bool = False,
) -> str:
    """An event as its verdict says (hidden ones are never passed here).

    A warned item is collapsed to one line that never shows its text, unless
    ``expand`` (then the warning heads it). When the warning is only about what it
    replies to or quotes, the item is shown and just that embedded text is replaced by
    the warning. A badged item gets a ``[badge: …]`` note.
    """
    final = None if verdict is None else verdict.final
    masked: dict[str, str] = {}
    if verdict is not None and final is not None and final.action is Action.WARN:
        warns = [d for d in verdict.decisions if d.action is Action.WARN]
        if all(d.via in ("parent", "quoted") for d in warns) and not expand:
            masked = {str(d.via): _warned(d, names) for d in reversed(warns)}
            final = None
    if final is not None and final.action is Action.WARN and not expand:
        return (
            f"{indent}⚠ {names.display(e.author)} · {relative_time(e.ts, now_ms)} · "
            f"{short_id(e.id)} — hidden behind a warning: {_decision_text(final, names)}"
            f" — murmur thread {e.id_hex} to see it"
        )
    text = format_event(
        e, names, related, indent=indent, now_ms=now_ms, context=context, masked=masked
    )
    if final is not None and final.action is Action.WARN:
        return f"{indent}⚠ warning: {_decision_text(final, names)}\n{text}"
    if final is not None and final.action is Action.BADGE:
        via = f" · on the {safe_line(final.via)} post" if final.via else ""
        note = f"{safe_line(final.reason)} · {format_source(final.source, names)}{via}"
        return f"{text}\n{indent}  [badge: {note}]"
    return text


def _warned(d: Decision, names: Names) -> str:
    return f"hidden behind a warning: {safe_line(d.reason)} ({format_source(d.source, names)})"


def format_explain(judged: list[tuple[Event, Verdict]], warnings: list[str], names: Names) -> str:
    """The ``--explain`` section: hidden items, then every decided item's decisions,
    overridden decisions and failures, then the view's warnings."""
    lines = ["Moderation (--explain):"]
    hidden = [(e, v) for e, v in judged if v.final is not None and v.final.action is Action.HIDE]
    lines.append(f"  hidden: {len(hidden)} item(s)")
    for e, v in hidden:
        assert v.final is not None  # noqa: S101 - filtered above
        lines.append(
            f"    {e.id_hex}  by {names.display(e.author)}  filter {safe_line(v.final.filter)}  "
            f"source {format_source(v.final.source, names)}: {safe_line(v.final.reason)}"
            + (f" (on the {safe_line(v.final.via)} post)" if v.final.via else "")
        )
    decided = [(e, v) for e, v in judged if v.decisions or v.overridden or v.warnings]
    if decided:
        lines.append("  decisions:")
    for e, v in decided:
        action = "shown" if v.final is None else v.final.action.value
        lines.append(f"    {short_id(e.id)} by {names.display(e.author)}: {action}")
        for d in v.decisions:
            mark = "→" if d is v.final else " "
            lines.append(
                f"      {mark} {d.action.value} by filter {safe_line(d.filter)}: "
                f"{_decision_text(d, names)}"
            )
        for d in v.overridden:
            lines.append(
                f"      ✗ overridden {d.action.value} by filter {safe_line(d.filter)}: "
                f"{_decision_text(d, names)}"
            )
        for w in v.warnings:
            lines.append(f"      ! {safe_line(w)}")
    if warnings:
        lines.append("  warnings:")
        lines.extend(f"    ! {safe_line(w)}" for w in warnings)
    return "\n".join(lines)
