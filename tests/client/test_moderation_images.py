"""Moderation of posts with images (spec 0006 #images; spec 0003 #label-blob).

Filters see a post's images on the item (``Item.images``), in the client's process
and in a custom filter's worker alike. A subscribed labeler's label on an image's
hash (``subject_type: "blob"``) hides or warns on every post that embeds that image,
read from a real node app over HTTP (the node indexes labels by their 32 bytes, so
blob labels come back with the labeler's other labels and by ``?subject=HASH``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from client.api import NodeClient
from client.moderation.apply import active_labels, blob_key, build_filter, moderate
from client.moderation.config import FilterSpec, LabelerSub
from client.moderation.core import Action, Decision, Env, Item, Label, SourceKind, ViewContext
from client.moderation.pipeline import Configured, Pipeline
from client.reader import Reader
from client.views import timeline
from protocol.embeds import EmbedImage
from tests.client.conftest import Author

# The real-node fixtures of test_moderation_apply, reused.
from tests.client.test_moderation_apply import (  # noqa: F401
    NOW,
    StartNode,
    config_of,
    http,
    publish,
    start_node,
)


def image(name: str, alt: str = "", **kw: Any) -> dict[str, Any]:
    """An image map naming a (never uploaded) blob: the claims are all moderation reads."""
    claim = {"mime": "image/png", "size": 1000, "width": 30, "height": 20, **kw}
    return EmbedImage(hash=hashlib.sha256(name.encode()).digest(), alt=alt, **claim).to_map()


def digest(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


class SeesImages:
    """Records what it saw; badges posts with an image without alt text."""

    name = "sees-images"

    def __init__(self) -> None:
        self.seen: dict[str, tuple[tuple[str, str, int, int, int, str], ...]] = {}

    def check(self, item: Item) -> Decision | None:
        self.seen[item.text] = tuple(
            (i.hash.hex(), i.mime, i.size, i.width, i.height, i.alt) for i in item.images
        )
        if any(not i.alt for i in item.images):
            return Decision(Action.BADGE, "an image has no description", "you", SourceKind.USER)
        return None


def _item(e: Any, labels: tuple[Label, ...] = ()) -> Item:
    return Item(event=e, context=ViewContext.TIMELINE, viewer="did:key:z", labels=labels)


async def test_a_filter_sees_the_images_of_an_item() -> None:
    """spec 0006 #images: hash, mime, size, width, height and alt of each image, in
    order; none for a text post or another kind."""
    alice = Author.new()
    two = alice.post("two", embed={"images": [image("a", "a cat"), image("b", mime="image/gif")]})
    text = alice.post("text only")
    like = alice.sign("like", {"target": two.id})
    seer = SeesImages()
    verdicts = await Pipeline([Configured("seer", seer)]).judge_all(
        [_item(two), _item(text), _item(like)]
    )
    assert seer.seen["two"] == (
        (digest("a").hex(), "image/png", 1000, 30, 20, "a cat"),
        (digest("b").hex(), "image/gif", 1000, 30, 20, ""),
    )
    assert seer.seen["text only"] == () and seer.seen[""] == ()
    assert verdicts[0].action is Action.BADGE and verdicts[1].action is None
    assert _item(two).image_hashes == {digest("a").hex(), digest("b").hex()}
    assert _item(two.without_body()).images == ()


async def test_a_custom_filter_sees_images_in_its_worker(tmp_path: Path) -> None:
    """spec 0006 #images, #custom-worker: the worker rebuilds the item from the event,
    so ``item.images`` needs nothing new on the wire; an old filter runs unchanged."""
    source = tmp_path / "alt.py"
    source.write_text(
        "from client.moderation import Action, Decision, SourceKind\n"
        "class NoAlt:\n"
        "    name = 'no-alt'\n"
        "    def check(self, item):\n"
        "        blank = [i.hash.hex()[:8] for i in item.images if not i.alt]\n"
        "        if blank:\n"
        "            return Decision(Action.WARN, 'no alt: ' + ','.join(blank), 'you',\n"
        "                            SourceKind.USER)\n"
        "        return None\n"
        "class Old:\n"
        "    name = 'old'\n"
        "    def check(self, item):\n"
        "        return None if 'ok' in item.text else Decision(Action.BADGE, 'old', 'old')\n"
    )
    alice = Author.new()
    blank = alice.post("pic", embed={"images": [image("a", "described"), image("b")]})
    described = alice.post("ok pic", embed={"images": [image("a", "described")]})
    pipeline = Pipeline(
        [
            build_filter(FilterSpec(name="no-alt", type=f"{source}:NoAlt")),
            build_filter(FilterSpec(name="old", type=f"{source}:Old")),
        ]
    )
    try:
        await pipeline.start(Env(viewer="did:key:z", now_ms=NOW, context=ViewContext.TIMELINE))
        first, second = await pipeline.judge_all([_item(blank), _item(described)])
    finally:
        await pipeline.aclose()
    assert first.final is not None and first.final.reason == f"no alt: {digest('b').hex()[:8]}"
    assert first.action is Action.WARN and not first.warnings
    assert second.final is None and not second.warnings


def test_active_labels_keeps_blob_labels_apart_and_ignores_unknown_subjects() -> None:
    """spec 0003 #label-blob: a blob label is keyed apart from an event label on the
    same 32 bytes, retracted only by a blob label; an unknown subject_type is ignored."""
    lab = Author.new()
    h = digest("pic")
    on_blob = lab.sign("label", {"subject": h, "subject_type": "blob", "val": "gore"})
    on_event = lab.sign("label", {"subject": h, "val": "gore", "neg": True})  # not the blob
    future = lab.sign("label", {"subject": h, "subject_type": "org.example.x", "val": "spam"})
    found = active_labels([on_blob, on_event, future], now_ms=NOW)
    assert list(found) == [blob_key(h.hex())]
    (label,) = found[blob_key(h.hex())]
    assert (label.subject, label.subject_type, label.on_blob) == (h.hex(), "blob", True)
    retracted = lab.sign(
        "label", {"subject": h, "subject_type": "blob", "val": "gore", "neg": True}
    )
    assert active_labels([on_blob, retracted], now_ms=NOW) == {}


async def test_blob_labels_hide_and_warn_every_post_using_the_image(
    start_node: StartNode,  # noqa: F811 - the imported fixture
    http: Any,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """spec 0006 #images: a hide label on an image hides both posts embedding it (and a
    quote of one, via the embed), not a post with other images; a warn label warns
    with an image reason; a label of an unknown subject_type is ignored; mute-words
    still hides a post with images; the post's own warn still applies."""
    client, _ = http
    node = NodeClient(await start_node(), client)
    me, alice, bob, carol, lab = (Author.new() for _ in range(5))
    await publish(node, *(me.sign("follow", {"subject": a.did}) for a in (alice, bob, carol)))
    gore_1 = alice.post("first", embed={"images": [image("kitten"), image("gore", "x")]})
    gore_2 = bob.post("second", embed={"images": [image("gore", "the same bytes")]})
    clean = carol.post("third", embed={"images": [image("kitten"), image("sunset")]})
    quote = carol.post("look", quote=gore_2.id)
    sad = bob.post("sad", embed={"images": [image("sad")]})
    future = alice.post("future", embed={"images": [image("future")]})
    muted = alice.post("spoiler ahead", embed={"images": [image("sunset")]})
    self_warned = bob.post("mine", warn=["nsfw"], embed={"images": [image("kitten")]})
    await publish(node, gore_1, future, muted)
    await publish(node, gore_2, sad, self_warned)
    await publish(node, clean, quote)
    blob_labels = [
        lab.sign("label", {"subject": digest("gore"), "subject_type": "blob", "val": "gore"}),
        lab.sign("label", {"subject": digest("sad"), "subject_type": "blob", "val": "sad"}),
        lab.sign(
            "label",
            {"subject": digest("future"), "subject_type": "org.example.thing", "val": "gore"},
        ),
        # An event label on the 32 bytes of the clean image names no event: nothing.
        lab.sign("label", {"subject": digest("sunset"), "val": "gore"}),
    ]
    await publish(node, *blob_labels)
    # The node returns blob labels by subject like any 32-byte subject (0003 #label-blob).
    by_subject = await node.labels(subject=digest("gore").hex())
    assert [w.wire for w in by_subject] == [blob_labels[0].wire]

    config = config_of(
        tmp_path,
        FilterSpec(name="self-labels", type="self-labels"),
        FilterSpec(name="spoilers", type="mute-words", params={"words": "spoiler"}),
        labelers=[LabelerSub(lab.did, {"gore": "hide", "sad": "warn"})],
    )
    reader = Reader([node])
    view = await timeline(reader, me.did, limit=50)
    result = await moderate(
        view,
        reader,
        viewer=me.did,
        context=ViewContext.TIMELINE,
        config=config,
        follows=frozenset(a.did for a in (alice, bob, carol)),
        now_ms=NOW,
    )
    hidden = {e.id: v.final for e, v in result.hidden}
    assert set(hidden) == {gore_1.id, gore_2.id, quote.id, muted.id}
    for post in (gore_1, gore_2):
        decision = hidden[post.id]
        assert decision is not None
        assert (decision.reason, decision.source) == ('image labeled "gore"', lab.did)
        assert decision.source_kind is SourceKind.LABELER and decision.via is None
    via_quote, by_word = hidden[quote.id], hidden[muted.id]
    assert via_quote is not None and via_quote.via == "quoted"
    assert by_word is not None and by_word.reason == 'muted word "spoiler"'
    shown = {e.id: v for e, v in result.shown}
    assert set(shown) == {clean.id, sad.id, future.id, self_warned.id}
    assert shown[clean.id].final is None and shown[future.id].final is None
    warned = shown[sad.id].final
    assert warned is not None and warned.action is Action.WARN
    assert (warned.reason, warned.source) == ('image labeled "sad"', lab.did)
    author_warned = shown[self_warned.id].final
    assert author_warned is not None and author_warned.action is Action.WARN
    assert author_warned.source_kind is SourceKind.AUTHOR
    assert not result.warnings
