"""Recovering a rotatable identity on a new home (spec 0007 #recover-elsewhere; spec
0008 §8.4 #recover-prefix, §8.7 #status, §8.11 #clients).

The new home holds only the recovery key file and the did. Alice (keys from fixed
seeds, tests/rotatable.py) posted p1, p2; a thief holding S0 and N0 posted t1, rotated
with N0 (T) and posted t2 with his own key. Nodes ``a`` and ``b`` (fake, no key checks:
the client must not rely on nodes) serve it all, ``a`` only alice's part. ``murmur id
recover`` reads both nodes, refuses without ``--after`` (no terminal), refuses a wrong
key without showing it, and with ``--after p2`` rebuilds her outbox and revokes the
thief's events; her next post from the new home follows the recovery.
"""

from __future__ import annotations

import asyncio
import io
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import client.rebuild as rebuild
from client.api import NodeClient
from client.cli import main
from client.keyops import RecoveryKey, recovery_file_text, recovery_phrase
from client.keystore import Keystore
from client.ownchain import OwnChain
from client.reader import Reader
from client.views import author_view
from protocol.encoding import encode
from protocol.events import Event, decode_event, sign_event_v2, sign_genesis
from protocol.identity import Identity, next_key_commitment
from protocol.keystate import Status
from tests.client.conftest import Net
from tests.rotatable import Rotatable, key

NODES = ("--node", "http://a.test", "--node", "http://b.test")


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MURMUR_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Net:
    """The CLI's HTTP client reaches the fake nodes (http://NAME.test)."""
    net = Net()
    real = httpx.AsyncClient

    def client(**_: Any) -> httpx.AsyncClient:
        return real(transport=httpx.MockTransport(net._handle))

    monkeypatch.setattr("client.session.httpx", SimpleNamespace(AsyncClient=client))
    return net


def cli(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *NODES, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def key_file(tmp_path: Path, did: str, k: Identity, position: int = 0, count: int = 1) -> Path:
    path = tmp_path / f"recovery-{position}-{k.public.raw.hex()[:8]}.key"
    path.write_text(recovery_file_text(did, RecoveryKey(position=position, count=count, key=k)))
    return path


def stolen(net: Net) -> tuple[Rotatable, dict[str, Event]]:
    """alice's p1, p2 on a and b; the thief's t1 (S0), T (rotate by N0), t2 on b."""
    a = Rotatable("elsewhere")
    g = a.genesis
    ev: dict[str, Event] = {"G": g}
    ev["p1"] = a.sign("S0", "post", {"text": "hello from alice"}, after=g, kev=g)
    ev["p2"] = a.sign("S0", "post", {"text": "my last own post"}, after=ev["p1"], kev=g)
    ev["t1"] = a.sign("S0", "post", {"text": "selling my account \x1b[2J"}, after=ev["p2"], kev=g)
    ev["T"] = a.rotate("N0", "T1", "T2", after=ev["t1"], kev=g)
    ev["t2"] = a.sign("T1", "post", {"text": "I am alice now"}, after=ev["T"], kev=ev["T"])
    mine = [ev[n] for n in ("G", "p1", "p2")]
    net.node("a").add(*mine)
    net.node("b").add(*mine, ev["t1"], ev["T"], ev["t2"])
    return a, ev


THIEF = ("t1", "T", "t2")


def error(out: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(out)
    return doc


def nothing_stored(home: Path, did: str) -> bool:
    return Keystore(home).list() == [] and not OwnChain(home, did).exists()


def test_without_after_and_no_terminal_it_refuses_and_lists_the_choices(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """#recover-elsewhere: never attach at a node's head; the choices are listed, with
    the thief's text escaped (0007 #terminal-safety)."""
    a, ev = stolen(fake)
    home = tmp_path / "new"
    rfile = key_file(tmp_path, a.did, a.k("R0"))
    code, out, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", str(rfile), "--no-encrypt",
        "--json",
    )  # fmt: skip
    assert code == 1
    doc = error(out)
    assert doc["error"] == "recovery-point-required"
    for name in ("G", "p1", "p2", *THIEF):
        assert ev[name].id_hex[:12] in doc["message"], name
    assert '"my last own post"' in doc["message"]
    assert "\x1b" not in out + err and "\\x1b[2J" in err
    assert "--after" in err and a.did in err
    assert nothing_stored(home, a.did)


def test_a_wrong_recovery_key_is_refused_without_showing_it(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0008 §8.4: only a recovery key of a state served can sign; the key's
    secret never appears in any output, and nothing is stored."""
    a, ev = stolen(fake)
    home = tmp_path / "new"
    wrong = Identity.generate()
    rfile = key_file(tmp_path, a.did, wrong)
    for source in (str(rfile), "-"):
        stdin = io.StringIO(recovery_phrase(wrong.seed) + "\n")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.stdin", stdin)
            code, out, err = cli(
                capsys, home, "id", "recover", "alice", "--did", a.did, "--recovery-key",
                source, "--after", ev["p2"].id_hex[:8], "--no-encrypt", "--json",
            )  # fmt: skip
        assert code == 1 and error(out)["error"] == "unauthorized-key", out
        secret = wrong.seed.hex()
        assert secret not in out + err and secret[:16] not in out + err
        assert recovery_phrase(wrong.seed)[:19] not in out + err
        assert nothing_stored(home, a.did)


def test_recover_after_the_chosen_event_rebuilds_the_chain_and_revokes_the_thief(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """#recover-elsewhere, 0008 #status: the recovery follows p2 (prev p2, kev the
    genesis), outranks the thief's rotation, and revokes t1, T, t2 on a fresh read; the
    outbox holds the genesis, p2's link and the recovery, and the next post follows."""
    a, ev = stolen(fake)
    home = tmp_path / "new"
    rfile = key_file(tmp_path, a.did, a.k("R0"))
    code, out, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", str(rfile),
        "--after", ev["p2"].id_hex[:8], "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "recover" and doc["author"] == a.did
    assert doc["after"] == ev["p2"].id_hex and doc["seq"] == ev["p2"].seq + 1
    assert set(doc["revokes"]) == {ev[n].id_hex for n in THIEF}
    (mine,) = [p for p in doc["published"] if p["id"] == doc["id"]]
    assert [n["status"] for n in mine["nodes"]] == ["accepted", "accepted"]
    recovery = decode_event(fake.nodes["http://a.test"].wires[bytes.fromhex(doc["id"])],
                            allow_v2=True)  # fmt: skip
    assert recovery.prev == ev["p2"].id and recovery.kev == ev["G"].id
    assert recovery.key == a.k("R0").public.raw

    own = OwnChain(home, a.did)
    assert [(e.kind, e.published) for e in own.events()] == [
        ("genesis", True), ("post", True), ("recover", True),
    ]  # fmt: skip
    assert {ev["p1"].id, ev["p2"].id} <= set(own.archived())  # copies for #revoked-delete
    store = Keystore(home)
    assert store.get("alice").did == a.did and store.get("alice").rotatable
    assert store.load("alice").public.raw == (recovery.body or {})["signing"]

    code, out, err = cli(capsys, home, "post", "back, on a new laptop", "--json")
    assert code == 0, err
    after = decode_event(
        fake.nodes["http://b.test"].wires[bytes.fromhex(json.loads(out)["id"])], allow_v2=True
    )
    assert after.prev == recovery.id and after.kev == recovery.id

    async def read() -> tuple[set[bytes], dict[bytes, tuple[Status, bytes | None]]]:
        async with fake.client() as http:
            nodes = [NodeClient(n.url, http) for n in fake.nodes.values()]
            view = await author_view(Reader(nodes), a.did, limit=20)
            excluded = {i: (x.status, x.revoked_by) for i, x in view.report.excluded.items()}
            return {e.id for e in view.items}, excluded

    shown, excluded = asyncio.run(read())
    assert shown == {ev["p1"].id, ev["p2"].id, after.id}
    for name in THIEF:
        assert excluded[ev[name].id] == (Status.REVOKED, recovery.id), name


def test_the_prompt_on_a_terminal_takes_the_owners_choice(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """#recover-elsewhere: on a terminal the choices go to stderr and the owner types
    the id; an empty answer signs nothing."""
    a, ev = stolen(fake)
    rfile = key_file(tmp_path, a.did, a.k("R0"))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty("\n"))
    code, out, err = cli(
        capsys, tmp_path / "h1", "id", "recover", "alice", "--recovery-key", str(rfile),
        "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 1 and error(out)["error"] == "recovery-point-required"
    assert "Recover after which event?" in err and nothing_stored(tmp_path / "h1", a.did)

    monkeypatch.setattr("sys.stdin", Tty(ev["p1"].id_hex[:10] + "\n"))
    code, out, err = cli(
        capsys, tmp_path / "h2", "id", "recover", "alice", "--recovery-key", str(rfile),
        "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["after"] == ev["p1"].id_hex
    assert set(doc["revokes"]) == {ev[n].id_hex for n in ("p2", *THIEF)}


def test_after_that_is_ambiguous_or_unknown_is_refused_with_the_choices(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """#recover-elsewhere: a prefix of several points, or of none, signs nothing."""
    a, ev = stolen(fake)
    rfile = key_file(tmp_path, a.did, a.k("R0"))
    home = tmp_path / "new"
    # More of alice's posts on a branch of their own until two ids share a first hex
    # digit (at most 17 events: pigeonhole); prefixes of one digit are allowed here.
    last = ev["p2"]
    while len({e.id_hex[0] for e in ev.values()}) == len(ev):
        last = a.sign("S0", "post", {"text": f"more {len(ev)}"}, after=last, kev=ev["G"])
        ev[f"x{len(ev)}"] = last
        fake.nodes["http://a.test"].add(last)
    ids = [e.id_hex for e in ev.values()]
    width = 1
    shared = next(i[0] for i in ids if sum(j.startswith(i[0]) for j in ids) > 1)
    monkeypatch.setattr(rebuild, "MIN_PREFIX", width)
    base = ("id", "recover", "alice", "--recovery-key", str(rfile), "--no-encrypt", "--json")
    code, out, _ = cli(capsys, home, *base, "--after", shared)
    assert code == 1 and error(out)["error"] == "recovery-point-ambiguous"
    for i in ids:
        if i.startswith(shared):
            assert i[:16] in error(out)["message"]
    unknown = "0f" * 32  # a full id no node serves: asked of every node, then refused
    assert unknown not in ids
    code, out, _ = cli(capsys, home, *base, "--after", unknown)
    assert code == 1 and error(out)["error"] == "recovery-point-unknown"
    assert "no node served" in error(out)["message"]
    assert nothing_stored(home, a.did)


def test_the_recovery_key_must_be_in_the_list_at_the_chosen_point(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """0008 #recover-prefix: R1 cannot outrank a recovery by R0 (rank 4 > 3): after a
    recovery by R0 that replaced R1, the old R1 is not entitled there
    (``unauthorized-key``), and before it a recovery by R1 would lose
    (``recovery-outranked``). Nothing is signed either way."""
    s0, n0, r0, r1 = (key(f"prefix:{r}") for r in ("S0", "N0", "R0", "R1"))
    g = sign_genesis(s0, next_key=n0.public.raw, recovery=[r0.public.raw, r1.public.raw])
    did = g.author
    p1 = sign_event_v2(s0, author=did, kind="post", body={"text": "a"}, seq=2, prev=g.id, kev=g.id)
    new_r1 = key("prefix:R1b")
    rec = sign_event_v2(
        r0, author=did, kind="recover",
        body={"signing": key("prefix:S1").public.raw,
              "next": next_key_commitment(key("prefix:N1").public.raw),
              "recovery": [r0.public.raw, new_r1.public.raw]},
        seq=3, prev=p1.id, kev=g.id,
    )  # fmt: skip
    fake.node("a").add(g, p1, rec)
    fake.node("b")
    rfile = key_file(tmp_path, did, r1, position=1, count=2)
    home = tmp_path / "new"
    base = ("id", "recover", "x", "--recovery-key", str(rfile), "--no-encrypt", "--json")
    code, out, _ = cli(capsys, home, *base, "--after", rec.id_hex[:12])
    assert code == 1 and error(out)["error"] == "unauthorized-key"
    assert "recovery key at the key event(s) seq 1" in error(out)["message"]
    code, out, _ = cli(capsys, home, *base, "--after", p1.id_hex[:12])
    assert code == 1 and error(out)["error"] == "recovery-outranked"
    assert rec.id_hex[:12] in error(out)["message"]
    assert nothing_stored(home, did) and len(fake.nodes["http://a.test"].wires) == 3


def test_did_and_after_are_refused_for_an_identity_of_this_home(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """#recover-elsewhere: a home's own identity recovers after its own outbox."""
    a, ev = stolen(fake)
    rfile = key_file(tmp_path, a.did, a.k("R0"))
    home = tmp_path / "new"
    code, out, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", str(rfile),
        "--after", ev["p2"].id_hex, "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", str(rfile),
        "--after", ev["p2"].id_hex, "--json",
    )  # fmt: skip
    assert code == 1 and error(out)["error"] == "bad-request" and "--after" in error(out)["message"]
    code, out, _ = cli(
        capsys, home, "id", "recover", "alice2", "--recovery-key", str(rfile),
        "--after", ev["p2"].id_hex, "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 1 and error(out)["error"] == "keystore-error"
    assert "as alice" in error(out)["message"]


def test_new_recovery_keys_are_shown_first_and_a_failed_save_leaves_nothing(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """#recover-elsewhere, #recovery-shown-first: with --replace-recovery the new key is
    written before anything commits to it; when the identity cannot be created (the
    commit point) the outbox and the new key files go again, and a second run works."""
    a, ev = stolen(fake)
    rfile = key_file(tmp_path, a.did, a.k("R0"))
    home, out_dir = tmp_path / "new", tmp_path / "offline-new"
    argv = (
        "id", "recover", "alice", "--recovery-key", str(rfile), "--after", ev["p2"].id_hex,
        "--replace-recovery", "--recovery-out", str(out_dir), "--no-encrypt", "--json",
    )  # fmt: skip
    seen: list[list[Path]] = []
    real = Keystore.create_rotatable

    def fail(self: Keystore, name: str, **kw: Any) -> Any:
        seen.append(sorted(out_dir.iterdir()))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Keystore, "create_rotatable", fail)
    code, out, err = cli(capsys, home, *argv)
    assert code != 0 and len(seen) == 1 and len(seen[0]) == 1  # written, then the save
    assert nothing_stored(home, a.did) and list(out_dir.iterdir()) == []
    assert not OwnChain(home, a.did).archive_dir.exists()
    assert len(fake.nodes["http://a.test"].wires) == 3  # nothing sent

    monkeypatch.setattr(Keystore, "create_rotatable", real)
    code, out, err = cli(capsys, home, *argv)
    assert code == 0, err
    doc = json.loads(out)
    (new_file,) = doc["recovery_files"]
    new_key = tomllib.loads(Path(new_file).read_text())
    assert new_key["did"] == a.did and new_key["position"] == 0
    recovery = decode_event(
        fake.nodes["http://a.test"].wires[bytes.fromhex(doc["id"])], allow_v2=True
    )
    assert (recovery.body or {})["recovery"] == [bytes.fromhex(new_key["public"])]


def test_a_body_one_node_lost_to_the_thiefs_delete_is_given_back_from_another_nodes_copy(
    tmp_path: Path, fake: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """#recover-elsewhere, 0008 #revoked-delete: the new home has no copies of its own;
    it keeps the nodes' full copies of the chain it endorses, and after the recovery
    gives node b back the body of p1, which b dropped for the thief's delete."""
    a, ev = stolen(fake)
    t_del = a.sign("T1", "delete", {"target": ev["p1"].id}, after=ev["t2"], kev=ev["T"])
    b = fake.nodes["http://b.test"]
    b.add(t_del)
    b.serve(encode([ev["p1"].header_bytes, ev["p1"].sig, None]))  # the body dropped
    rfile = key_file(tmp_path, a.did, a.k("R0"))
    code, out, err = cli(
        capsys, tmp_path / "new", "id", "recover", "alice", "--recovery-key", str(rfile),
        "--after", ev["p2"].id_hex, "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert t_del.id_hex in doc["revokes"]
    assert doc["restored"] == {"http://a.test": 0, "http://b.test": 1}
    assert b.wires[ev["p1"].id] == ev["p1"].wire
