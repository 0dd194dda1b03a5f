"""``murmur post`` fills facets and hashtags, and the views show them, against a real node
(spec 0003 #facets, spec 0007 #facets).

``amy`` (the default identity) knows bob by the petname ``bobby`` and holds the local
identity ``cal``; she posts a text that mentions both, a did, someone she has no name
for, a URL and hashtags. The node accepts the signed facets; the reader sees each
mention by her own name for its did, in text and in ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("facets-node") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "home", capsys)


def test_post_fills_facets_and_tags_and_views_show_names(cli: Cli, node: NodeProcess) -> None:
    dids = {
        name: cli.json("id", "new", name, "--no-encrypt", "--did-key")["did"]
        for name in ("amy", "bob", "cal", "dan")
    }
    cli.json("nodes", "add", node.url)
    cli.json("follow", dids["bob"], "--alias", "bobby")
    text = (
        f"hi @bobby and @cal, cc @{dids['dan']} and @nobody: "
        "see https://murmur.example/a_(b). #Murmur #murmur #news"
    )
    code, out, err = cli.run("post", text, "--json")
    assert code == 0, err
    assert "@nobody is not one of your petnames" in err
    doc = json.loads(out)
    assert doc["nodes"][0]["status"] == "accepted"
    assert doc["tags"] == ["Murmur", "news"]
    facets = [
        (f["type"], f["text"], f.get("did") or f.get("uri") or f.get("tag")) for f in doc["facets"]
    ]
    assert facets == [
        ("mention", "@bobby", dids["bob"]),
        ("mention", "@cal", dids["cal"]),
        ("mention", f"@{dids['dan']}", dids["dan"]),
        ("link", "https://murmur.example/a_(b)", "https://murmur.example/a_(b)"),
        ("tag", "#Murmur", "Murmur"),
        ("tag", "#murmur", "murmur"),
        ("tag", "#news", "news"),
    ]
    assert doc["facets"][0]["name"] == "@bobby" and doc["facets"][0]["alias"] == "bobby"

    # dan names himself; amy's timeline shows him by that name, bobby by her petname.
    cli.json("profile", "set", "--name", "Dan", as_name="dan")
    shown = cli.ok("author", dids["amy"])
    assert f"hi @bobby and {_short(dids['cal'])}, cc ~Dan and @nobody:" in shown, shown
    assert "https://murmur.example/a_(b). #Murmur #murmur #news" in shown
    read = cli.json("author", dids["amy"])
    mention = read["posts"][0]["facets"][2]
    assert mention["did"] == dids["dan"] and mention["name"] == "~Dan"


def _short(did: str) -> str:
    key = did.removeprefix("did:key:")
    return f"{key[:8]}…{key[-6:]}"
