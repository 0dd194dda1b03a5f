"""A read that no node answered fails; one that some node answered succeeds with its
warnings (spec 0007 #no-answer, #exit-status; issue #14 finding 8).

The reader's rule on the in-memory fake nodes, then every read command of the CLI,
in-process, against a URL where nothing listens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.common import free_port
from client.api import NodeClient
from client.cli import main
from client.errors import NoNodeAnsweredError
from client.reader import NodeReport, Reader, ReadReport
from client.views import author_view, timeline
from protocol.errors import RemoteError
from tests.client.conftest import Author, Net

Clients = Callable[..., list[NodeClient]]

ZERO_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
SOME_ID = "ab" * 32


async def test_every_node_down_is_no_answer(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    a, b = fake.node("a"), fake.node("b")
    a.down = b.down = True
    reader = Reader(clients(a, b))
    view = await timeline(reader, Author.new().did, limit=10)
    assert view.items == []  # what an unchecked read would show as "empty"
    with pytest.raises(NoNodeAnsweredError) as info:
        reader.report.require_answer()
    assert info.value.code == "no-node-answered"
    assert a.url in info.value.message and b.url in info.value.message


async def test_one_answering_node_is_enough(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    up, down = fake.node("up"), fake.node("down")
    down.down = True
    reader = Reader(clients(down, up))
    await timeline(reader, Author.new().did, limit=10)
    reader.report.require_answer()  # an empty answer is an answer
    assert not reader.report.node(down.url).ok


async def test_a_node_that_answered_then_failed_has_answered(net: tuple[Net, Clients]) -> None:
    """Partial data from a node that failed in a later phase is shown, with the error."""
    fake, clients = net
    node = fake.node("n")
    carol = Author.new()
    node.add(carol.post("one"))
    reader = Reader(clients(node))
    await reader.fetch_log(carol.did)
    node.down = True
    view = await author_view(reader, carol.did, limit=10)
    assert not reader.report.node(node.url).ok
    reader.report.require_answer()
    assert [e.seq for e in view.items] == [1]


def test_nothing_asked_is_not_a_failure(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    Reader(clients(fake.node("n"))).report.require_answer()


#: Every read command of the CLI (spec 0007 #no-answer names them).
READS = [
    ["timeline"],
    ["author", ZERO_DID],
    ["thread", SOME_ID],
    ["following"],
    ["profile", "show"],
    ["search", "bob"],
    ["list", "show", ZERO_DID, "friends"],
    ["filters", "test", "self-labels", "--event", SOME_ID],
    ["notifications"],
    ["followers"],
]


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["--home", str(tmp_path), "id", "new", "me", "--no-encrypt"]) == 0
    capsys.readouterr()
    return tmp_path


@pytest.mark.parametrize("argv", READS, ids=lambda a: " ".join(a[:2]))
def test_every_read_fails_when_no_node_answers(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code = main(["--home", str(home), "--node", dead, *argv])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert out == ""  # no view at all, not an empty one
    assert err.startswith("murmur: error: no node answered") and dead in err
    assert "Traceback" not in err
    code = main(["--home", str(home), "--node", dead, *argv, "--json"])
    out, _ = capsys.readouterr()
    assert code == 1 and json.loads(out)["error"] == "no-node-answered"


def test_exit_statuses_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "no-node-answered" in out


def test_node_messages_in_the_no_answer_error_are_one_escaped_line() -> None:
    """spec 0007 #terminal-safety: a node's message cannot add lines or escapes."""
    hostile = RemoteError("unavailable", "busy\n\x1b[2Jmurmur: all good\r")
    report = ReadReport(nodes=[NodeReport(url="http://n.test", error=hostile)])
    with pytest.raises(NoNodeAnsweredError) as info:
        report.require_answer()
    message = info.value.message
    assert "\n" not in message and "\x1b" not in message and "\r" not in message
    assert "\\x1b[2J" in message
