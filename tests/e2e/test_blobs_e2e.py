"""A picture across a 3-node devnet of real processes (issue #20; spec 0005
#blob-fetch, 0004 #blob-keep, 0007 #images-strip, #images-verify).

Three nodes in a line (1 - 2 - 3, no peer exchange, so node 3 gets everything through
node 2). The author's ``murmur`` (a real process, ``MURMUR_HOME`` naming node 1 only)
posts a JPEG carrying EXIF GPS; a reader's ``murmur`` naming node 3 only saves it: the
bytes came 1 -> 2 -> 3 by the nodes' blob fetches, hash to the name the post signs and
carry no EXIF. The author deletes the post: every node drops the bytes (404, and no
held bytes in ``/metrics``). A node that serves altered bytes is reported by the
reader's client, which takes the image from the next node.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.fedproc import Cluster, metric, peers

pytestmark = pytest.mark.e2e

DEADLINE_S = 30
MURMUR = str(Path(sys.executable).parent / "murmur")
GPS_IFD = 0x8825


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "nodes")
    try:
        yield c
    finally:
        c.close()


def murmur(home: Path, *argv: str) -> tuple[int, Any, str]:
    """Run the ``murmur`` command (a process) with ``MURMUR_HOME=home`` and ``--json``."""
    env = {**os.environ, "MURMUR_HOME": str(home)}
    done = subprocess.run(
        [MURMUR, *argv, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    doc = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, doc, done.stderr


def ok(home: Path, *argv: str) -> Any:
    code, doc, err = murmur(home, *argv)
    assert code == 0, f"murmur {' '.join(argv)}: exit {code}: {err}"
    return doc


def photo_with_gps(path: Path) -> Path:
    """A JPEG whose EXIF names a GPS position (and a camera)."""
    img = Image.new("RGB", (640, 480))
    img.putdata(
        [((x * 7) % 256, (y * 3) % 256, (x ^ y) % 256) for y in range(480) for x in range(640)]
    )
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.6)  # latitude
    gps[3], gps[4] = "E", (2.0, 17.0, 40.2)  # longitude
    img.save(path, "JPEG", quality=92, exif=exif.tobytes())
    assert Image.open(path).getexif().get_ifd(GPS_IFD), "the test photo must carry GPS"
    return path


def line(cluster: Cluster) -> tuple[str, str, str]:
    """Start nodes 1 - 2 - 3 and wait until every link is live."""
    n1, n2, n3 = cluster.url("n1"), cluster.url("n2"), cluster.url("n3")
    cluster.start("n1", peers=[n2])
    cluster.start("n2", peers=[n1, n3])
    cluster.start("n3", peers=[n2])

    def live() -> bool:
        links = {n1: [n2], n2: [n1, n3], n3: [n2]}
        return all(
            {p["url"]: p["state"] for p in peers(u)}.get(v) == "live"
            for u, vs in links.items()
            for v in vs
        )

    cluster.wait_until(live, "every link live", DEADLINE_S)
    return n1, n2, n3


def blob_status(url: str, hex_hash: str) -> int:
    return httpx.get(f"{url}/v1/blobs/{hex_hash}", timeout=5).status_code


class LyingNode:
    """A node that serves altered bytes for every blob and 404 for anything else."""

    def __init__(self, altered: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/v1/blobs/"):
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(altered)))
                    self.end_headers()
                    self.wfile.write(altered)
                    return
                body = b'{"error":"not-found","message":"nothing here"}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_picture_posted_on_node_1_is_read_verified_on_node_3_then_gone(
    cluster: Cluster, tmp_path: Path
) -> None:
    n1, n2, n3 = line(cluster)
    author, reader = tmp_path / "author", tmp_path / "reader"
    ok(author, "id", "new", "alice", "--no-encrypt")
    ok(author, "nodes", "add", n1)
    ok(reader, "nodes", "add", n3)
    original = photo_with_gps(tmp_path / "p.jpg")

    posted = ok(author, "post", "the harbour", "--image", str(original), "--alt", "boats at dusk")
    post_id = posted["id"]
    (image,) = posted["images"]
    hex_hash = image["hash"]
    assert len(hex_hash) == 64

    # The reader's node 3 got the post from node 2 and the image from node 2, which
    # fetched it from node 1 (spec 0005 #blob-fetch).
    cluster.wait_until(lambda: blob_status(n3, hex_hash) == 200, "the image on node 3", DEADLINE_S)
    saved_dir = tmp_path / "saved"
    doc = ok(reader, "media", "save", post_id, "--dir", str(saved_dir))
    (saved,) = doc["images"]
    assert saved["node"].rstrip("/") == n3 and saved["alt"] == "boats at dusk"
    data = Path(saved["saved"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hex_hash == Path(saved["saved"]).stem
    assert len(data) == image["size"]
    shown = Image.open(io.BytesIO(data))
    assert shown.format == "JPEG" and shown.size == (640, 480)
    assert not shown.getexif() and b"Exif" not in data and b"PhoneMaker" not in data
    assert metric(n3, "murmur_blob_bytes_held") == len(data)
    assert metric(n2, "murmur_blob_bytes_held") == len(data)

    # A node serving altered bytes is named and not believed; the next node's are.
    altered = data[:-10] + bytes(10)
    liar = LyingNode(altered)
    try:
        doc = ok(reader, "--node", liar.url, "--node", n3, "media", "save", post_id,
                 "--dir", str(tmp_path / "again"))  # fmt: skip
    finally:
        liar.stop()
    (saved,) = doc["images"]
    assert saved["node"].rstrip("/") == n3
    assert [f["code"] for f in saved["failed_nodes"]] == ["blob-mismatch"]
    assert Path(saved["saved"]).read_bytes() == data

    # The author deletes the post: every node drops the bytes (spec 0004 #blob-keep).
    ok(author, "delete", post_id)

    def gone() -> bool:
        return all(
            blob_status(u, hex_hash) == 404 and metric(u, "murmur_blob_bytes_held") == 0
            for u in (n1, n2, n3)
        )

    cluster.wait_until(gone, "the image gone from every node", DEADLINE_S)
