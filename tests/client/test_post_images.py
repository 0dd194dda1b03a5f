"""Posting images and reading them back over fake nodes (``httpx.MockTransport``):
upload to every node, alt text policy, verified downloads (spec 0007 #images, spec
0003 #blob-hash)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from client.api import NodeClient
from client.cli.main import main
from client.cli.render import image_line
from client.errors import BadResponseError, BlobMismatchError, BlobUnavailableError
from client.imagexfer import fetch_image
from client.media import prepare_image
from protocol.blobs import blob_hash, sniff, verify_blob
from protocol.embeds import EmbedImage, post_images
from protocol.errors import BadBlobError
from protocol.events import decode_event
from tests.client.conftest import FakeNode, Net, _error

NodeClients = Callable[..., list[NodeClient]]


class BlobNode(FakeNode):
    """A fake node that also speaks ``/v1/blobs``; ``alter``: serve other bytes than it
    was given, ``refuse``: answer uploads with this error code (503)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.blobs: dict[bytes, bytes] = {}
        self.alter = False
        self.refuse: str | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/blobs":
            self.requests.append(f"POST {path}")
            if self.refuse is not None:
                return _error(503, self.refuse)
            data = request.content
            try:
                info = sniff(data)
            except BadBlobError:
                return _error(400, "bad-blob")
            if info.mime != request.headers.get("Content-Type"):
                return _error(415, "unsupported-media-type")
            self.blobs[blob_hash(data)] = data
            return httpx.Response(
                200,
                json={
                    "hash": blob_hash(data).hex(),
                    "mime": info.mime,
                    "size": len(data),
                    "width": info.width,
                    "height": info.height,
                    "held": False,
                },
            )
        if request.method == "GET" and path.startswith("/v1/blobs/"):
            self.requests.append(f"GET {path}")
            data = self.blobs.get(bytes.fromhex(path.rsplit("/", 1)[1]))
            if data is None:
                return _error(404, "not-found")
            if self.alter:  # same size and header, other pixels
                data = data[:-3] + bytes(b ^ 0xFF for b in data[-3:])
            return httpx.Response(200, content=data, headers={"Content-Type": "image/jpeg"})
        return await super().handle(request)


def _photo(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    im = Image.new("RGB", (120, 80), colour)
    exif = im.getexif()
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 30.0)
    im.save(path, "JPEG", exif=exif)
    return path


class Cli:
    """``murmur`` in-process against fake nodes reached through a MockTransport."""

    def __init__(self, home: Path, net: Net, capsys: pytest.CaptureFixture[str]) -> None:
        self.home, self.net, self.capsys = home, net, capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        nodes = [a for url in self.net.nodes for a in ("--node", url)]
        code = main(["--home", str(self.home), *nodes, *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> tuple[int, dict[str, Any], str]:
        code, out, err = self.run(*args, "--json")
        return code, json.loads(out), err


@pytest.fixture
def fake_net(monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    """Every ``httpx.AsyncClient`` the CLI opens reaches the fake nodes."""
    net = Net()
    real = httpx.AsyncClient

    def client(**kw: Any) -> httpx.AsyncClient:
        kw.pop("transport", None)
        return real(transport=httpx.MockTransport(net._handle), **kw)

    monkeypatch.setattr(httpx, "AsyncClient", client)
    yield net


def _blob_node(net: Net, name: str) -> BlobNode:
    url = f"http://{name}.test"
    node = net.nodes[url] = BlobNode(url)
    return node


@pytest.fixture
def cli(tmp_path: Path, fake_net: Net, capsys: pytest.CaptureFixture[str]) -> Cli:
    c = Cli(tmp_path / "home", fake_net, capsys)
    code, _out, err = c.run("id", "new", "amy", "--no-encrypt")
    assert code == 0, err
    return c


def _posted(node: FakeNode) -> list[Any]:
    events = [decode_event(w, allow_v2=True) for w in node.submitted]
    return [e for e in events if e.kind == "post"]


def test_post_uploads_every_image_to_every_node_and_signs_their_hashes(
    cli: Cli, tmp_path: Path
) -> None:
    """spec 0007 #images: each image to each node before signing; the embed names the
    prepared bytes (they pass verify_blob); the GPS position is gone."""
    nodes = [_blob_node(cli.net, n) for n in ("a", "b", "c")]
    one, two = _photo(tmp_path / "one.jpg"), _photo(tmp_path / "two.jpg", (10, 10, 200))
    code, doc, err = cli.json(
        "post", "two pictures", "--image", str(one), "--alt", "a red square",
        "--image", str(two), "--alt", "a blue square",
    )  # fmt: skip
    assert code == 0, err
    assert [i["alt"] for i in doc["images"]] == ["a red square", "a blue square"]
    for node in nodes:
        assert node.requests.count("POST /v1/blobs") == 2
        (event,) = _posted(node)
        images = post_images(event.body)
        assert len(images) == 2
        for image in images:
            data = node.blobs[image.hash]
            verify_blob(data, image)
            assert not Image.open(io.BytesIO(data)).getexif()
        # uploaded before the post was signed and sent
        assert node.requests.index("POST /v1/events") > node.requests.index("POST /v1/blobs")
    assert images[0].hash == prepare_image(one).hash
    assert "image 1/2" in err and "removed: EXIF with a GPS position" in err


def test_a_node_refusing_uploads_is_warned_about_and_the_post_is_made(
    cli: Cli, tmp_path: Path
) -> None:
    good, bad = _blob_node(cli.net, "a"), _blob_node(cli.net, "b")
    bad.refuse = "unavailable"
    code, out, err = cli.run("post", "hi", "--image", str(_photo(tmp_path / "p.jpg")), "--alt", "x")
    assert code == 0, err
    assert len(good.blobs) == 1 and not bad.blobs
    assert "http://b.test did not take the images (unavailable)" in err
    assert "[image 1/1: x · 120×80 JPEG" in out


def test_no_node_taking_the_images_signs_nothing(cli: Cli, tmp_path: Path) -> None:
    nodes = [_blob_node(cli.net, n) for n in ("a", "b")]
    for node in nodes:
        node.refuse = "unavailable"
    code, doc, _err = cli.json("post", "hi", "--image", str(_photo(tmp_path / "p.jpg")), "--no-alt")
    assert code == 1 and doc["error"] == "upload-failed"
    assert all(not n.submitted for n in nodes)


def test_an_image_without_alt_text_is_refused_and_says_why(cli: Cli, tmp_path: Path) -> None:
    node = _blob_node(cli.net, "a")
    photo = str(_photo(tmp_path / "p.jpg"))
    code, doc, _err = cli.json("post", "hi", "--image", photo)
    assert code == 1 and doc["error"] == "alt-required"
    assert "screen reader" in doc["message"] and "--no-alt" in doc["message"]
    code, doc, _ = cli.json("post", "hi", "--image", photo, "--alt", "  ")
    assert code == 1 and doc["error"] == "alt-required"
    code, doc, _ = cli.json("post", "hi", "--image", photo, "--image", photo, "--alt", "one")
    assert code == 1 and doc["error"] == "alt-required" and "image 2" in doc["message"]
    code, doc, _ = cli.json("post", "hi", "--image", photo, "--alt", "a", "--alt", "b")
    assert code == 1 and doc["error"] == "bad-request"
    assert not node.requests  # nothing uploaded, nothing signed


def test_no_alt_posts_with_an_empty_description(cli: Cli, tmp_path: Path) -> None:
    node = _blob_node(cli.net, "a")
    photo = str(_photo(tmp_path / "p.jpg"))
    code, out, err = cli.run("post", "hi", "--image", photo, "--no-alt")
    assert code == 0, err
    (event,) = _posted(node)
    assert post_images(event.body)[0].alt == ""
    assert "[image 1/1: no description · 120×80 JPEG ·" in out


def test_five_images_are_refused_before_any_work(cli: Cli, tmp_path: Path) -> None:
    node = _blob_node(cli.net, "a")
    args = [a for _ in range(5) for a in ("--image", str(tmp_path / "missing.jpg"))]
    code, doc, _ = cli.json("post", "hi", *args, "--no-alt")
    assert code == 1 and doc["error"] == "bad-request" and "at most 4" in doc["message"]
    assert not node.requests


def test_an_svg_is_refused_with_its_code(cli: Cli, tmp_path: Path) -> None:
    _blob_node(cli.net, "a")
    svg = tmp_path / "x.png"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    code, doc, _ = cli.json("post", "hi", "--image", str(svg), "--alt", "x")
    assert code == 1 and doc["error"] == "unsupported-image" and "image 1" in doc["message"]


def test_an_alt_text_with_terminal_escapes_is_shown_inert(cli: Cli, tmp_path: Path) -> None:
    """spec 0007 #terminal-safety: the alt text is a peer's text like any other."""
    _blob_node(cli.net, "a")
    alt = "cat\x1b]0;pwned\x07 on a mat\x1b[2J\nsecond line"
    photo = str(_photo(tmp_path / "p.jpg"))
    code, out, err = cli.run("post", "hi", "--image", photo, "--alt", alt)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "[image 1/1: cat\\x1b]0;pwned\\x07 on a mat\\x1b[2J second line · 120×80 JPEG" in out
    code, doc, _ = cli.json("post", "again", "--image", photo, "--alt", alt)
    assert doc["images"][0]["alt"] == alt  # --json keeps the exact text


def test_image_line_escapes_and_names_an_empty_alt() -> None:
    image = EmbedImage(
        hash=b"\x01" * 32, mime="image/png", size=230_400, width=1200, height=800,
        alt="\u202eevil\x1b[31m",
    )  # fmt: skip
    line = image_line(image, 1, 2)
    assert line.startswith("[image 1/2: ") and line.endswith(" · 1200×800 PNG · 230 KB]")
    assert "\x1b" not in line and "\u202e" not in line
    blank = EmbedImage(hash=b"\x01" * 32, mime="image/gif", size=5, width=1, height=1, alt="")
    assert image_line(blank, 2, 2) == "[image 2/2: no description · 1×1 GIF · 5 B]"


async def test_fetch_detects_altered_bytes_and_uses_the_next_node(
    net: tuple[Net, NodeClients], tmp_path: Path
) -> None:
    """spec 0003 #blob-hash: a node serving other bytes is named, the next one asked."""
    fake, clients = net
    liar, honest = fake.nodes.setdefault("http://liar.test", BlobNode("http://liar.test")), None
    honest = fake.nodes.setdefault("http://honest.test", BlobNode("http://honest.test"))
    assert isinstance(liar, BlobNode) and isinstance(honest, BlobNode)
    prepared = prepare_image(_photo(tmp_path / "p.jpg"))
    claim = EmbedImage(
        hash=prepared.hash, mime=prepared.mime, size=prepared.size,
        width=prepared.width, height=prepared.height, alt="x",
    )  # fmt: skip
    for node in (liar, honest):
        node.blobs[prepared.hash] = prepared.data
    liar.alter = True
    a, b = clients(liar, honest)
    with pytest.raises(BlobMismatchError) as err:
        await a.fetch_blob(claim)
    assert err.value.code == "blob-mismatch" and err.value.url == "http://liar.test"
    assert "http://liar.test" in err.value.message
    got = await fetch_image([a, b], claim)
    assert got.data == prepared.data and got.url == "http://honest.test"
    assert [(f.url, f.code) for f in got.failed] == [("http://liar.test", "blob-mismatch")]
    honest.alter = True
    with pytest.raises(BlobUnavailableError) as unavailable:
        await fetch_image([a, b], claim)
    assert unavailable.value.code == "blob-unavailable"


async def test_an_upload_answer_naming_other_bytes_is_a_bad_response(
    net: tuple[Net, NodeClients], tmp_path: Path
) -> None:
    fake, clients = net
    node = fake.nodes.setdefault("http://a.test", BlobNode("http://a.test"))
    prepared = prepare_image(_photo(tmp_path / "p.jpg"))
    (client,) = clients(node)
    receipt = await client.upload_blob(prepared.data, prepared.mime)
    assert receipt.hash == prepared.hash and receipt.size == prepared.size
    other = prepare_image(_photo(tmp_path / "q.jpg", (0, 0, 0)))

    async def lie(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"hash": other.hash.hex(), "mime": "image/jpeg", "size": other.size,
                  "width": 120, "height": 80, "held": False},
        )  # fmt: skip

    node.handle = lie  # type: ignore[method-assign]
    with pytest.raises(BadResponseError):
        await client.upload_blob(prepared.data, prepared.mime)


def test_media_save_writes_verified_files_and_names_the_lying_node(
    cli: Cli, tmp_path: Path
) -> None:
    """``murmur media save``: bytes checked against the post, a lying node reported."""
    liar, honest = _blob_node(cli.net, "a"), _blob_node(cli.net, "b")
    photo = str(_photo(tmp_path / "p.jpg"))
    code, doc, err = cli.json("post", "hi", "--image", photo, "--alt", "red")
    assert code == 0, err
    digest = doc["images"][0]["hash"]
    liar.alter = True
    out_dir = tmp_path / "saved"
    code, out, err = cli.run("media", "save", doc["id"][:12], "--dir", str(out_dir))
    assert code == 0, err
    saved = out_dir / f"{digest}.jpg"
    assert saved.read_bytes() == honest.blobs[bytes.fromhex(digest)]
    assert "[image 1/1: red · 120×80 JPEG" in out
    assert "! http://a.test: blob-mismatch: http://a.test served altered bytes" in out
    honest.alter = True
    saved.unlink()
    code, saved_doc, _ = cli.json("media", "save", doc["id"], "--dir", str(out_dir))
    assert code == 1 and saved_doc["images"][0]["error"] == "blob-unavailable"
    assert not saved.exists()
