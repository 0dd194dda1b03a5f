"""Client config: node set normalisation, petnames, ``murmur nodes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.cli import main
from client.config import ClientConfig, normalize_node_url
from protocol.errors import BadRequestError, InvalidDidError

DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8701/", "http://127.0.0.1:8701"),
        ("HTTP://Example.COM", "http://example.com"),
        ("127.0.0.1:8702", "http://127.0.0.1:8702"),
        ("https://node.example/murmur/", "https://node.example/murmur"),
        ("http://[::1]:8701", "http://[::1]:8701"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert normalize_node_url(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://x",
        "http://",
        "http://u:p@host",
        "http://h/?q=1",
        "http://h:99999",
        # spec 0007 #node-url: a bare word is not a host, port 0 is not a port
        "notaurl",
        "node.example",
        "http://h:0",
        "http://no host",
        "http://bad..dots",
    ],
)
def test_bad_urls(bad: str) -> None:
    with pytest.raises(BadRequestError):
        normalize_node_url(bad)


def test_petnames_round_trip(tmp_path: Path) -> None:
    config = ClientConfig.load(tmp_path)
    config.set_petname("alice", DID)
    config.save()
    again = ClientConfig.load(tmp_path)
    assert again.resolve("alice") == DID and again.resolve(DID) == DID
    assert again.alias_of(DID) == "alice"
    with pytest.raises(InvalidDidError, match=r"neither a did .* nor a known alias"):
        again.resolve("carol")
    with pytest.raises(BadRequestError):
        again.set_petname("did:evil", DID)


def test_nodes_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path)]
    assert main([*home, "nodes", "add", "http://127.0.0.1:8701/", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] is True
    assert main([*home, "nodes", "add", "127.0.0.1:8701"]) == 0
    assert "already" in capsys.readouterr().out
    assert main([*home, "nodes", "add", "http://127.0.0.1:8702"]) == 0
    capsys.readouterr()
    assert main([*home, "nodes", "list", "--json"]) == 0
    urls = [n["url"] for n in json.loads(capsys.readouterr().out)]
    assert urls == ["http://127.0.0.1:8701", "http://127.0.0.1:8702"]
    assert main([*home, "nodes", "remove", "http://127.0.0.1:8701"]) == 0
    capsys.readouterr()
    assert main([*home, "nodes", "remove", "http://127.0.0.1:8701", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "bad-request"
    assert ClientConfig.load(tmp_path).nodes == ["http://127.0.0.1:8702"]
