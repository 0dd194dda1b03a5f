"""A read's report as lines, written once for every face (spec 0007 §report; issue #17
point 7): :func:`client.reportlines.report_lines` makes the lines, the CLI prints them
with ``! `` (capped for events not shown as their author's unless ``--explain``) and
the web lists the same texts."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import make_mocked_request

from client.cli.render import MAX_EXCLUDED_LINES, format_report
from client.cli.render import Names as CliNames
from client.config import ClientConfig
from client.errors import NodeTimeoutError
from client.keyview import Excluded
from client.moves import Move
from client.reader import NodeReport, ReadReport
from client.reportlines import EXCLUDED, report_lines
from client.views import View
from client.web.pages.common import listing
from client.web.render import Names as WebNames
from protocol.events import Event, sign_event
from protocol.identity import Identity
from protocol.keystate import Status

BOB = Identity.from_seed(b"\x01" * 32)
CAROL = Identity.from_seed(b"\x02" * 32)


def _posts(who: Identity, n: int) -> list[Event]:
    out: list[Event] = []
    for seq in range(1, n + 1):
        prev = out[-1].id if out else None
        out.append(sign_event(who, kind="post", body={"text": f"p{seq}"}, seq=seq, prev=prev))
    return out


def _report(excluded: int) -> ReadReport:
    bobs, carols = _posts(BOB, 7), _posts(CAROL, excluded)
    nodes = [
        NodeReport(url="http://n1", error=NodeTimeoutError("no answer in 10 s")),
        NodeReport(
            url="http://n2",
            withheld=bobs[:7],
            invalid=[{"code": "invalid-signature", "id": None}, {"code": "bad-kev", "id": None}],
        ),
    ]
    moves = {
        BOB.did: Move(
            source=BOB.did, targets=(), events=(), status="contested", reason="two targets"
        ),
        CAROL.did: Move(
            source=CAROL.did, targets=(), events=(), status="confirmed", reason="both sides"
        ),
    }
    return ReadReport(
        nodes=nodes,
        gaps=[
            {"author": BOB.did, "first": 3, "last": 5},
            {"author": CAROL.did, "first": 2, "last": 2},
        ],
        forks=[{"author": BOB.did, "seq": 4}],
        moves=moves,
        excluded={
            e.id: Excluded(event=e, status=Status.REVOKED, revoked_by=None, reason="bad-kev")
            for e in carols
        },
    )


def test_the_cli_prints_the_librarys_lines(tmp_path: Path) -> None:
    """Each line the CLI prints is a library line with ``! `` (a confirmed move, listed
    with --explain only, with two spaces); events not shown as their author's are
    capped at ten with a line saying how many more, all of them with --explain."""
    names = CliNames(ClientConfig.load(tmp_path))
    report = _report(excluded=MAX_EXCLUDED_LINES + 2)
    lines = report_lines(report, names)
    out = format_report(report, names).split("\n")
    excluded = [line for line in lines if line.kind == EXCLUDED]
    assert len(excluded) == MAX_EXCLUDED_LINES + 2
    kept = [line for line in lines if line.kind != EXCLUDED] + excluded[:MAX_EXCLUDED_LINES]
    assert out[:-1] == ["! " + line.text for line in kept]
    assert out[-1] == "! and 2 more event(s) not shown for their key state (--explain lists them)"
    assert [line.kind for line in lines[:7]] == [
        "node-error",
        "withheld",
        "invalid",
        "gap",
        "gap",
        "fork",
        "move",
    ]
    assert lines[1].text.endswith("seq 5 and 2 more")  # five named, the rest counted

    explained = report_lines(report, names, explain=True, full_ids=True)
    out = format_report(report, names, explain=True).split("\n")
    assert out == [("! " if line.problem else "  ") + line.text for line in explained]
    moved = [line for line in explained if not line.problem]
    assert [line.kind for line in moved] == ["moved"]
    assert all(report.excluded[e].event.id_hex in out[-1] for e in list(report.excluded)[-1:])


def test_the_web_lists_the_lines_the_cli_prints(tmp_path: Path) -> None:
    """The web's "What this read found" holds the very lines the CLI prints (without
    ``! ``), events not shown as their author's with their short id, and the nodes
    that gave no counts."""
    config = ClientConfig.load(tmp_path)
    report = _report(excluded=2)
    view = View(items=[], report=report, counts_failed={"http://n3": "node-timeout"})
    lst = listing(make_mocked_request("GET", "/"), view, None, WebNames(config, {}))
    web = [line.text for line in lst.report]
    cli = format_report(report, CliNames(config)).split("\n")
    assert ["! " + text for text in web[:-1]] == cli
    assert web[-1] == "http://n3 gave no counts: node-timeout"
    assert [line.kind for line in lst.report].count(EXCLUDED) == 2
