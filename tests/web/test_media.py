"""Posts' images in ``murmur web`` over fake nodes (issue #20 point 3; spec 0007
#web-images, spec 0003 #blob-hash, #blob-polyglot): drawn from the server's own origin
with their alt text, served only once verified and only for images of posts the server
has drawn, blurred when self-labelled sensitive or warned about."""

from __future__ import annotations

import io
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from client.web.media import ImageCache, KnownImages, MediaState
from client.web.pages.media import MEDIA_CACHE_CONTROL, MEDIA_CSP
from protocol.blobs import blob_hash, sniff
from protocol.embeds import EmbedImage
from protocol.events import Event
from tests.client.conftest import Net
from tests.client.test_post_images import BlobNode
from tests.web.inproc import Web, new_author, serve


class _Tags(HTMLParser):
    """The start tags of a piece of HTML, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _claim(data: bytes, alt: str) -> EmbedImage:
    info = sniff(data)
    return EmbedImage(
        hash=blob_hash(data),
        mime=info.mime,
        size=len(data),
        width=info.width,
        height=info.height,
        alt=alt,
    )


def _embed(*claims: EmbedImage) -> dict[str, object]:
    return {"images": [c.to_map() for c in claims]}


def _blob_node(net: Net, name: str, *blobs: bytes) -> BlobNode:
    url = f"http://{name}.test"
    node = net.nodes[url] = BlobNode(url)
    for data in blobs:
        node.blobs[blob_hash(data)] = data
    return node


def _blob_gets(node: BlobNode) -> list[str]:
    return [r for r in node.requests if r.startswith("GET /v1/blobs/")]


def _article(html: str, e: Event) -> str:
    m = re.search(rf'<article[^>]*data-id="{e.id_hex}".*?</article>', html, re.S)
    assert m is not None, f"no article for {e.id_hex}"
    return m.group(0)


async def _home(w: Web, *events: Event) -> str:
    await w.login()
    return await w.page("/")


async def test_an_image_post_is_drawn_with_its_alt_and_served_verified(tmp_path: Path) -> None:
    """The page has ``<img src="/media/HASH" alt width height loading=lazy>`` and the alt
    text under it; ``/media/HASH`` answers the verified bytes with the claimed type,
    nosniff, a sandboxing CSP and a private cache lifetime, and the second answer comes
    from the server's cache (spec 0007 #web-images, spec 0003 #blob-polyglot)."""
    net = Net()
    data = _png((200, 40, 40))
    claim = _claim(data, "a red square on a white table")
    a = _blob_node(net, "a", data)
    bob = new_author()
    async with serve(tmp_path / "home", net, [a]) as w:
        post = bob.post("look", embed=_embed(claim))
        a.add(w.me.sign("follow", {"subject": bob.did}), post)
        html = await _home(w)
        article = _article(html, post)
        img = re.search(r"<img [^>]*>", article)
        assert img is not None
        assert img.group(0) == (
            f'<img src="/media/{claim.hash.hex()}" alt="a red square on a white table" '
            f'width="40" height="30" loading="lazy">'
        )
        assert 'data-blurred="false"' in article
        caption = re.search(r'data-testid="image-alt">(.*?)</figcaption>', article, re.S)
        assert caption is not None and "a red square on a white table" in caption.group(1)

        r = await w.client.get(f"/media/{claim.hash.hex()}")
        assert r.status == 200
        assert await r.read() == data
        assert r.headers["Content-Type"] == "image/png"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"] == MEDIA_CSP == "default-src 'none'; sandbox"
        assert r.headers["Cache-Control"] == MEDIA_CACHE_CONTROL
        assert r.headers["Cache-Control"].startswith("private, max-age=")
        assert len(_blob_gets(a)) == 1
        again = await w.client.get(f"/media/{claim.hash.hex()}")
        assert again.status == 200 and await again.read() == data
        assert len(_blob_gets(a)) == 1, "the second answer came from the node, not the cache"
        # The page itself keeps its own CSP, which lets images load from this origin.
        page = await w.client.get("/")
        assert "img-src 'self'" in page.headers["Content-Security-Policy"]


async def test_altered_bytes_are_never_served_and_the_next_node_is_asked(
    tmp_path: Path,
) -> None:
    """A node serving other bytes under the hash: never served; the next node's true
    bytes are; when every node alters them the answer is a short 502 without any of
    the bytes (spec 0003 #blob-hash, spec 0007 #images-verify)."""
    net = Net()
    data, other = _png((10, 120, 10)), _png((10, 10, 120))
    claim, other_claim = _claim(data, "green"), _claim(other, "blue")
    a, b = _blob_node(net, "a", data, other), _blob_node(net, "b", data)
    a.alter = True  # same size and header, other last bytes
    bob = new_author()
    async with serve(tmp_path / "home", net, [a, b]) as w:
        post = bob.post("two", embed=_embed(claim, other_claim))
        a.add(w.me.sign("follow", {"subject": bob.did}), post)
        await _home(w)
        r = await w.client.get(f"/media/{claim.hash.hex()}")
        assert r.status == 200 and await r.read() == data
        assert _blob_gets(a) == [f"GET /v1/blobs/{claim.hash.hex()}"]
        assert _blob_gets(b) == [f"GET /v1/blobs/{claim.hash.hex()}"]

        bad = await w.client.get(f"/media/{other_claim.hash.hex()}")
        body = await bad.read()
        assert bad.status == 502
        assert bad.headers["Content-Type"].startswith("text/plain")
        assert body.startswith(b"image unavailable") and len(body) < 200
        assert other[-3:] not in body and bad.headers["Content-Security-Policy"] == MEDIA_CSP
        # Altered bytes were not kept either: asked again, the nodes are asked again.
        await w.client.get(f"/media/{other_claim.hash.hex()}")
        assert _blob_gets(a).count(f"GET /v1/blobs/{other_claim.hash.hex()}") == 2


async def test_media_answers_only_images_of_drawn_posts(tmp_path: Path) -> None:
    """No open proxy: a blob a node holds but no drawn post names is 404 without asking
    any node, as is the image of a post hidden by the reader's filters (drawn as a row
    that says why, never its images); a malformed hash is 404; no session, 403
    (spec 0007 #web-images, #web-security)."""
    net = Net()
    drawn, stray, secret = _png((1, 2, 3)), _png((4, 5, 6)), _png((7, 8, 9))
    drawn_c, secret_c = _claim(drawn, "shown"), _claim(secret, "muted")
    a = _blob_node(net, "a", drawn, stray, secret)
    bob = new_author()
    filters = '[[filters]]\nname = "quiet"\ntype = "mute-words"\nparams = { words = ["spoiler"] }\n'
    async with serve(tmp_path / "home", net, [a], filters=filters) as w:
        shown = bob.post("fine", embed=_embed(drawn_c))
        hidden = bob.post("spoiler here", embed=_embed(secret_c))
        a.add(w.me.sign("follow", {"subject": bob.did}), shown, hidden)
        anon = await w.client.get(f"/media/{drawn_c.hash.hex()}")
        assert anon.status == 403
        html = await _home(w)
        assert f"/media/{secret_c.hash.hex()}" not in html
        for digest in (blob_hash(stray), secret_c.hash):
            r = await w.client.get(f"/media/{digest.hex()}")
            assert r.status == 404, digest.hex()
        for path in (f"/media/{drawn_c.hash.hex().upper()}", "/media/abc", "/media/"):
            assert (await w.client.get(path)).status == 404, path
        assert _blob_gets(a) == []
        assert (await w.client.get(f"/media/{drawn_c.hash.hex()}")).status == 200
        # "show anyway" draws the hidden post, and then its image answers.
        await w.page(f"/?show={hidden.id_hex}")
        assert (await w.client.get(f"/media/{secret_c.hash.hex()}")).status == 200


async def test_alt_text_stays_text_and_no_alt_is_marked(tmp_path: Path) -> None:
    """An alt text with markup is an attribute and a caption, escaped, never a tag; an
    empty one shows "no description" (spec 0007 #web-inert, #images-alt)."""
    net = Net()
    one, two = _png((30, 30, 30)), _png((60, 60, 60))
    evil = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    c1, c2 = _claim(one, evil), _claim(two, "")
    a = _blob_node(net, "a", one, two)
    bob = new_author()
    async with serve(tmp_path / "home", net, [a]) as w:
        post = bob.post("", embed=_embed(c1, c2))
        a.add(w.me.sign("follow", {"subject": bob.did}), post)
        article = _article(await _home(w), post)
        tags = _Tags()
        tags.feed(article)
        assert "script" not in [t for t, _ in tags.seen]
        imgs_attrs = [dict(a) for t, a in tags.seen if t == "img"]
        assert [a["alt"] for a in imgs_attrs] == [evil, ""]
        assert all(set(a) == {"src", "alt", "width", "height", "loading"} for a in imgs_attrs)
        imgs = re.findall(r"<img [^>]*>", article)
        caption = re.search(r'data-testid="image-alt">(.*?)</figcaption>', article, re.S)
        assert caption is not None and evil in unescape(caption.group(1))
        assert 'alt=""' in imgs[1]
        assert re.search(r'data-testid="no-alt">.*no description', article)
        assert 'class="images images-2"' in article


async def test_sensitive_self_labels_and_warnings_blur_images(tmp_path: Path) -> None:
    """A post self-labelled ``nsfw`` (or ``gore``…) has its images blurred behind a
    "Show images" control even when the reader's filters only badge self-labels; a
    ``spoiler`` badge does not blur; with the default filters (self-labels warn) any
    warned post's images are blurred (spec 0007 #web-images)."""
    net = Net()
    data = _png((90, 10, 10))
    claim = _claim(data, "something graphic")
    a = _blob_node(net, "a", data)
    bob = new_author()
    badge = (
        '[[filters]]\nname = "self-labels"\ntype = "self-labels"\nparams = { action = "badge" }\n'
    )
    async with serve(tmp_path / "badge", net, [a], filters=badge) as w:
        nsfw = bob.post("careful", embed=_embed(claim), warn=["nsfw"])
        gore = bob.post("careful too", embed=_embed(claim), warn=["spoiler", "gore"])
        spoiler = bob.post("ending", embed=_embed(claim), warn=["spoiler"])
        a.add(w.me.sign("follow", {"subject": bob.did}), nsfw, gore, spoiler)
        html = await _home(w)
        for e, why in ((nsfw, "marked nsfw"), (gore, "marked gore")):
            art = _article(html, e)
            assert 'data-state="badged"' in art
            assert 'class="images images-1 blurred"' in art and 'data-blurred="true"' in art
            box = f'type="checkbox" class="reveal-images visually-hidden" id="reveal-{e.id_hex}"'
            assert box in art
            assert re.search(rf'<label for="reveal-{e.id_hex}"[^>]*>.*Show images.*{why}', art)
        art = _article(html, spoiler)
        assert 'data-blurred="false"' in art and "reveal-images" not in art
    async with serve(tmp_path / "default", net, [a]) as w:
        a.add(w.me.sign("follow", {"subject": bob.did}))
        art = _article(await _home(w), spoiler)
        assert 'data-state="warned"' in art and 'data-blurred="true"' in art
        assert "author marked it" in unescape(art)


def test_cache_keeps_verified_bytes_within_its_budget() -> None:
    """The cache drops the least recently served first, never holds more than its
    budget, and keeps nothing larger than it."""
    cache = ImageCache(budget=100)
    cache.put(b"a", b"x" * 40, "image/png")
    cache.put(b"b", b"y" * 40, "image/png")
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", b"z" * 40, "image/png")
    assert cache.get(b"b") is None and cache.get(b"a") is not None
    assert cache.used == 80 and len(cache) == 2
    cache.put(b"d", b"w" * 101, "image/png")
    assert cache.get(b"d") is None and cache.used == 80
    cache.put(b"a", b"x" * 100, "image/png")
    assert len(cache) == 1 and cache.used == 100


def test_known_images_are_bounded_and_keep_every_claim_of_a_hash() -> None:
    """The claims ``/media/`` answers for: bounded (least recently drawn out); a lying
    post's claim on a hash does not shadow a true one (both kept, newest first)."""
    datas = [_png((i, i, i)) for i in range(3)]
    known = KnownImages(limit=2)
    claims = [_claim(d, f"n{i}") for i, d in enumerate(datas)]
    for c in claims:
        known.add(c)
    assert len(known) == 2 and known.claims(claims[0].hash) == ()
    liar = EmbedImage(hash=claims[2].hash, mime="image/jpeg", size=5, width=1, height=1, alt="lie")
    known.add(liar)
    assert known.claims(claims[2].hash) == (liar, claims[2])
    state = MediaState()
    assert len(state.known) == 0 and state.cache.budget == 64 * 1024 * 1024


async def test_a_lying_claim_on_a_hash_does_not_break_the_true_one(tmp_path: Path) -> None:
    """A post naming another post's image hash with a wrong size: the true bytes fail
    its claim, and the server goes on to the true claim and serves them (spec 0007
    #web-images)."""
    net = Net()
    data = _png((5, 50, 150))
    claim = _claim(data, "true")
    liar = EmbedImage(
        hash=claim.hash, mime=claim.mime, size=claim.size + 1, width=2, height=2, alt="lie"
    )
    a = _blob_node(net, "a", data)
    bob, eve = new_author(), new_author()
    async with serve(tmp_path / "home", net, [a]) as w:
        eve.ts -= 3_600_000  # older: drawn after the true post, its claim the newest
        lie = eve.post("older, lying", embed=_embed(liar))
        true = bob.post("newer, true", embed=_embed(claim))
        a.add(w.me.sign("follow", {"subject": bob.did}), w.me.sign("follow", {"subject": eve.did}))
        a.add(lie, true)
        html = await _home(w)
        assert html.index(true.id_hex) < html.index(lie.id_hex)
        r = await w.client.get(f"/media/{claim.hash.hex()}")
        assert r.status == 200 and await r.read() == data
        assert len(_blob_gets(a)) == 2  # the lying claim's try, then the true one
