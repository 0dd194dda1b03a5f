"""The reads a command makes before signing go through the home's key cache (spec 0007
#key-status), like every other read of the home: a like's target and a reply's parent
by a did:murmur author leave that author's verified key events in
``state/keycache/verified``, so the next read of them checks no signature again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client.keycache import MAGIC, wire_digest
from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("keycache-node") / "data")
    try:
        yield proc
    finally:
        proc.stop()


def _home(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str], url: str) -> Cli:
    cli = Cli(tmp_path / name, capsys)
    cli.json("id", "new", name, "--no-encrypt")
    cli.json("nodes", "add", url)
    return cli


def _cached(home: Path) -> set[bytes]:
    path = home / "state" / "keycache" / "verified"
    if not path.exists():
        return set()
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    body = data[len(MAGIC) :]
    return {body[i : i + 32] for i in range(0, len(body), 32)}


@pytest.mark.parametrize("command", ["like", "reply"])
def test_checks_before_signing_use_the_home_key_cache(
    command: str, node: NodeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = _home(tmp_path, "alice", capsys, node.url)
    post = alice.json("post", "a post by a rotatable author")
    did = post["author"]
    assert did.startswith("did:murmur:")
    bob = _home(tmp_path, "bob", capsys, node.url)
    assert _cached(tmp_path / "bob") == set()
    if command == "like":
        bob.json("like", post["id"])
    else:
        bob.json("post", "a reply", "--reply-to", post["id"])
    keys = httpx.get(f"{node.url}/v1/authors/{did}/keys").json()["events"]
    genesis = [base64.b64decode(k["wire"]) for k in keys]
    assert genesis and {wire_digest(w) for w in genesis} <= _cached(tmp_path / "bob")
