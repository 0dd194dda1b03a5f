"""The labeler (spec 0006 §labeler): stream parsing, rules, state, ``murmur labeler run``.

The parser, rules and state are tested alone; the loop against a scripted node
(``httpx.MockTransport``: a forged event, the labeler's own post, a dropped
connection); the command in-process against a real node process: ``--once`` labels
what the rules match, a second run resumes from the saved cursor and publishes
nothing, a new matching post gets exactly one new label, and a lost state file does
not make the labeler repeat labels already in effect.
"""

from __future__ import annotations

import base64
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import client.labeler
from client.api import NodeClient
from client.errors import BadResponseError, FilterLoadError
from client.labeler import Labeler, LabelerState, Rules, SseParser, stream_event
from client.labeler import runner as runner_mod
from client.publish import Publisher
from client.state import HeadStore
from protocol.encoding import decode, encode
from protocol.events import Event, decode_event, sign_event
from protocol.identity import Identity
from tests.client.test_cli_moderation import Cli
from tests.e2e.nodeproc import NodeProcess


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        n
        for n, v in vars(client.labeler).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public == set(client.labeler.__all__)


# -- SSE parsing ------------------------------------------------------------------------


def test_sse_parser_reassembles_split_messages_and_skips_comments() -> None:
    parser = SseParser(max_message_bytes=1000)
    stream = (
        b'retry: 1000\n: cursor=0\n\nid: 1\nevent: event\ndata: {"a":\ndata: 1}\n\n: hb\r\n\r\n'
    )
    messages = [m for i in range(len(stream)) for m in parser.feed(stream[i : i + 1])]
    assert [(m.id, m.event, m.data) for m in messages] == [("1", "event", '{"a":\n1}')]


def test_sse_parser_is_bounded() -> None:
    parser = SseParser(max_message_bytes=64)
    with pytest.raises(BadResponseError):
        parser.feed(b"data: " + b"x" * 100)  # no newline yet: the partial line is capped
    parser = SseParser(max_message_bytes=64)
    with pytest.raises(BadResponseError):
        parser.feed(b"data: " + b"x" * 40 + b"\n" + b"data: " + b"y" * 40 + b"\n")


def test_stream_event() -> None:
    ident = Identity.from_seed(b"\x01" * 32)
    ev = sign_event(ident, kind="post", body={"text": "x"}, seq=1, prev=None)
    data = json.dumps({"cursor": 5, "event": {"wire": base64.b64encode(ev.wire).decode()}})
    parser = SseParser()
    (message,) = parser.feed(f"id: 5\nevent: event\ndata: {data}\n\n".encode())
    assert stream_event(message) == (ev.wire, 5)
    (bad,) = parser.feed(b'event: event\ndata: {"cursor": -1, "event": {}}\n\n')
    with pytest.raises(BadResponseError):
        stream_event(bad)


# -- rules --------------------------------------------------------------------------------

_ident = Identity.from_seed(b"\x02" * 32)


def _post(text: str, kind: str = "post", **body: Any) -> Event:
    return sign_event(_ident, kind=kind, body={"text": text, **body}, seq=1, prev=None)


def test_toml_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nlabel = "spam"\nkeywords = ["Buy Now"]\nregex = "(?i)crypto.*giveaway"\n'
        '[[rules]]\nlabel = "shill"\nregex = "giveaway"\ntarget = "author"\n'
        '[[rules]]\nlabel = "named"\nkeywords = ["bot"]\nkinds = ["profile"]\n'
    )
    rules = Rules.load(path)
    e = _post("please BUY NOW")
    assert rules.apply(e) == [(e.id, "spam")]
    e = _post("CRYPTO mega giveaway")
    assert rules.apply(e) == [(e.id, "spam"), (_ident.did, "shill")]
    assert rules.apply(_post("nothing")) == []
    profile = sign_event(_ident, kind="profile", body={"name": "a bot"}, seq=1, prev=None)
    assert rules.apply(profile) == [(profile.id, "named")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[rules]]\nkeywords = ["x"]\n', "'label'"),
        ('[[rules]]\nlabel = "Spam"\nkeywords = ["x"]\n', "'label'"),
        ('[[rules]]\nlabel = "spam"\n', "keywords"),
        ('[[rules]]\nlabel = "spam"\nregex = "("\n', "bad regex"),
        ('[[rules]]\nlabel = "spam"\nregex = "x"\ntarget = "node"\n', "target"),
        ('[[rules]]\nlabel = "spam"\nregex = "x"\ncolour = 1\n', "unknown key"),
        ("rules = 3\n", "[[rules]]"),
        ("not toml = = =\n", "TOML"),
    ],
)
def test_bad_toml_rules(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(FilterLoadError) as info:
        Rules.load(path)
    assert needle in info.value.message


def test_python_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.py"
    path.write_text(
        "def label(event):\n"
        "    text = event.body.get('text', '')\n"
        "    if 'boom' in text:\n"
        "        raise RuntimeError('rule bug')\n"
        "    if 'bad' in text:\n"
        "        return ['Not A Label']\n"
        "    if 'beep' in text:\n"
        "        return ['bot', (event.author, 'bot-account'), (event.id.hex(), 'beeps')]\n"
        "    return []\n"
    )
    rules = Rules.load(path)
    e = _post("beep beep")
    assert rules.apply(e) == [(e.id, "bot"), (_ident.did, "bot-account"), (e.id, "beeps")]
    assert rules.apply(_post("boom")) == []  # logged and skipped, never raised
    assert rules.apply(_post("bad")) == []
    with pytest.raises(FilterLoadError, match="no function label"):
        (tmp_path / "empty.py").write_text("x = 1\n")
        Rules.load(tmp_path / "empty.py")
    with pytest.raises(FilterLoadError, match="does not exist"):
        Rules.load(tmp_path / "missing.toml")


def test_state_round_trip_and_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "MAX_REMEMBERED", 3)
    state = LabelerState.load(tmp_path, "lab", _ident.did)
    for i in range(5):
        state.remember(bytes([i]) * 32, "spam")
    state.cursors["http://n"] = 42
    state.save()
    again = LabelerState.load(tmp_path, "lab", _ident.did)
    assert again.cursors == {"http://n": 42}
    assert not again.seen(b"\x00" * 32, "spam") and again.seen(b"\x04" * 32, "spam")
    assert len(again.labeled) == 3


# -- murmur labeler run, against a real node ---------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("labeler-node") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], node: NodeProcess) -> Cli:
    cli = Cli(tmp_path / "home", capsys)
    for name in ("amy", "bob"):
        cli.json("id", "new", name, "--no-encrypt")
    cli.json("id", "new", "lab", "--did-key", "--no-encrypt")  # a labeler runs as a did:key
    cli.json("nodes", "add", node.url)
    return cli


def _labels(node: NodeProcess, labeler: str) -> list[tuple[str, str]]:
    doc = httpx.get(f"{node.url}/v1/labels", params={"labeler": labeler}, timeout=10).json()
    return sorted((row["subject"], row["val"]) for row in doc["labels"])


RULES = (
    '[[rules]]\nlabel = "spam"\nkeywords = ["buy now"]\nregex = "(?i)crypto.*giveaway"\n'
    '[[rules]]\nlabel = "shill"\nregex = "giveaway"\ntarget = "author"\n'
)


def test_labeler_once_labels_and_resumes(
    cli: Cli, node: NodeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    lab = cli.json("id", "show", "lab")["did"]
    bob = cli.json("id", "show", "bob")["did"]
    p1 = cli.post("bob", "BUY NOW: cheap pills")
    cli.post("bob", "hello")
    p3 = cli.post("bob", "crypto mega giveaway")
    cli.post("lab", "buy now, from the labeler itself")  # its own events: never labeled

    run = ("labeler", "run", "--as", "lab", "--rules", str(rules), "--once")
    code, out, err = cli.run(*run, "--from-start", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["labels"] == 3 and first["stopped"] == "caught-up"
    assert len([line for line in err.splitlines() if line.startswith("labeled ")]) == 3
    expected = sorted([(p1, "spam"), (p3, "spam"), (bob, "shill")])
    assert _labels(node, lab) == expected
    state = json.loads((cli.home / "labelers" / "lab.json").read_text())
    assert state["cursors"][node.url] == first["cursor"] > 0

    second = cli.json(*run)  # resumes from the saved cursor: nothing new
    assert second["labels"] == 0 and second["cursor"] >= first["cursor"]
    assert _labels(node, lab) == expected

    p5 = cli.post("bob", "buy now, last chance")
    third = cli.json(*run)
    assert third["labels"] == 1 and _labels(node, lab) == sorted([*expected, (p5, "spam")])

    # A lost state file replays from the start, but labels in effect are not repeated.
    (cli.home / "labelers" / "lab.json").unlink()
    again = cli.json(*run, "--from-start")
    assert again["labels"] == 0 and again["skipped_known"] >= 4
    assert len(_labels(node, lab)) == 4

    # What a reader who trusts the labeler sees.
    cli.json("follow", bob, "--alias", "bob")
    cli.json("labelers", "subscribe", lab, "--set", "spam=hide")
    hidden = {h["id"] for h in cli.json("timeline")["moderation"]["hidden"]}
    assert hidden == {p1, p3, p5}


def test_labeler_python_rules_and_errors(cli: Cli, node: NodeProcess, tmp_path: Path) -> None:
    rules = tmp_path / "rules.py"
    rules.write_text(
        "def label(event):\n    return ['bot'] if 'beep' in event.body.get('text', '') else []\n"
    )
    beep = cli.post("bob", "beep boop")
    cli.post("bob", "human words")
    doc = cli.json("labeler", "run", "--as", "lab", "--rules", str(rules), "--once", "--from-start")
    lab = cli.json("id", "show", "lab")["did"]
    assert doc["labels"] == 1 and _labels(node, lab) == [(beep, "bot")]

    code, _ = cli.error("labeler", "run", "--as", "lab", "--rules", str(tmp_path / "no.toml"))
    assert code == "filter-load"
    code, _ = cli.error("labeler", "run", "--as", "nobody", "--rules", str(rules))
    assert code == "identity-not-found"


# -- the loop against a scripted node (httpx.MockTransport) ------------------------------


class ScriptedNode:
    """Serves ``/v1/info``, ``/v1/stream`` (one scripted answer per connection),
    ``/v1/labels`` (empty), ``/v1/authors/*/head`` (404) and ingest (records wires)."""

    def __init__(self, head: int, streams: list[list[tuple[int, bytes]]]) -> None:
        self.head = head
        self.streams = streams
        self.stream_cursors: list[str] = []
        self.ingested: list[bytes] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/info":
            return httpx.Response(200, json={"cursor": self.head})
        if path == "/v1/labels":
            return httpx.Response(200, json={"labels": [], "next": None})
        if path.endswith("/head"):
            return httpx.Response(404, json={"error": "not-found", "message": "none"})
        if path == "/v1/events" and request.method == "POST":
            wires = decode(request.content)
            self.ingested.extend(wires)
            return httpx.Response(200, json={"results": [{"status": "accepted"} for _ in wires]})
        if path == "/v1/stream":
            self.stream_cursors.append(request.url.params["cursor"])
            frames = [b"retry: 1000\n: cursor=0\n\n"]
            for cursor, wire in self.streams.pop(0) if self.streams else []:
                data = json.dumps(
                    {"cursor": cursor, "event": {"wire": base64.b64encode(wire).decode()}}
                )
                frames.append(f"id: {cursor}\nevent: event\ndata: {data}\n\n".encode())
            return httpx.Response(
                200, headers={"Content-Type": "text/event-stream"}, content=b"".join(frames)
            )
        return httpx.Response(404, json={"error": "not-found", "message": path})


async def test_labeler_verifies_skips_its_own_and_resumes_after_a_drop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_mod, "BACKOFF_MIN_S", 0.01)
    author = Identity.from_seed(b"\x03" * 32)
    me = Identity.from_seed(b"\x04" * 32)
    good = sign_event(author, kind="post", body={"text": "buy now"}, seq=1, prev=None)
    forged = sign_event(author, kind="post", body={"text": "buy now!"}, seq=2, prev=good.id)
    sig = bytearray(forged.sig)
    sig[0] ^= 1
    forged_wire = encode([forged.header_bytes, bytes(sig), forged.body_bytes])
    own = sign_event(me, kind="post", body={"text": "buy now, says the labeler"}, seq=1, prev=None)
    later = sign_event(author, kind="post", body={"text": "BUY NOW"}, seq=3, prev=forged.id)
    # The first connection drops after cursor 2; the second must resume from there.
    node = ScriptedNode(
        head=4, streams=[[(1, good.wire), (2, forged_wire)], [(3, own.wire), (4, later.wire)]]
    )
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nlabel = "spam"\nkeywords = ["buy now"]\n')
    async with httpx.AsyncClient(transport=httpx.MockTransport(node.handle)) as http:
        pub = Publisher(me, [NodeClient("http://n.test", http)], HeadStore(tmp_path))
        state = LabelerState.load(tmp_path, "me", me.did)
        labeler = Labeler(
            pub, http, stream_url="http://n.test", rules=Rules.load(rules), state=state
        )
        stats = await labeler.run(once=True, from_start=True)
    assert node.stream_cursors == ["0", "2"]
    assert stats.invalid == 1 and stats.labels == 2 and stats.cursor == 4
    labels = [decode_event_body(w) for w in node.ingested]
    assert labels == [(good.id, "spam", 1), (later.id, "spam", 2)]
    assert LabelerState.load(tmp_path, "me", me.did).cursors == {"http://n.test": 4}


def decode_event_body(wire: bytes) -> tuple[object, object, int]:
    ev = decode_event(wire)
    assert ev.body is not None and ev.kind == "label"
    return ev.body["subject"], ev.body["val"], ev.seq


class _Stop(Exception):
    """Ends a never-ending labeler loop in a test."""


async def test_a_stream_the_node_ends_itself_is_resumed_without_backing_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec 0004 #stream-lifetime: a node ends every stream after its lifetime with
    ``: closing reason=lifetime``; an idle labeler resumes at once, every time, instead
    of doubling its delay as after a failure. A stream that just ends (no reason) still
    backs off."""
    me = Identity.from_seed(b"\x05" * 32)
    node = ScriptedNode(head=0, streams=[])
    endings = [b": closing reason=lifetime\n\n"] * 3 + [b""] * 2
    sleeps: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/stream":
            return node.handle(request)
        if not endings:
            raise _Stop
        body = b"retry: 1000\n: cursor=0\n\n" + b": hb\n\n" * 20 + endings.pop(0)
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body)

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(runner_mod.asyncio, "sleep", fake_sleep)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nlabel = "spam"\nkeywords = ["buy now"]\n')
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        pub = Publisher(me, [NodeClient("http://n.test", http)], HeadStore(tmp_path))
        state = LabelerState.load(tmp_path, "me", me.did)
        labeler = Labeler(
            pub, http, stream_url="http://n.test", rules=Rules.load(rules), state=state
        )
        with pytest.raises(_Stop):
            await labeler.run(once=False, from_start=True)
    low = runner_mod.BACKOFF_MIN_S
    assert sleeps == [low, low, low, 2 * low, 4 * low]
