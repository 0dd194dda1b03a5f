"""A stolen laptop on a real 3-node network: recovery from a brand-new home (spec 0007
#recover-elsewhere; spec 0008 #status, #clients).

The thief holds alice's signing and next keys (her laptop): he posts, rotates with her
next key (every node accepts it: that key is entitled) and posts with his own key.
Alice has lost the laptop and everything on it but her recovery key file (offline) and
her did. On a brand-new client home she runs ``murmur id recover`` against all three
nodes: without ``--after`` (no terminal) it refuses and lists the choices; with a wrong
recovery key it refuses without showing it; with ``--after`` her last good post it
rebuilds her chain from the nodes and recovers. Every node then serves her chain with
the thief's events revoked by her recovery, a fresh reader shows none of them as hers,
and her next post from the new home verifies. Helpers: ``test_key_theft``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from client.keyops import RecoveryKey, recovery_file_text
from protocol.identity import Identity
from tests.adversarial.test_key_theft import (
    DEADLINE_S,
    NODES,
    _assert_fresh_reader_sees,
    _event,
    _feed,
    _fresh_read,
    _home,
    _statuses,
    _steal,
    _stored_by,
)
from tests.e2e.fedproc import Cluster


def test_recovery_on_a_new_home_with_only_the_recovery_key_file_and_the_did(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #recover-elsewhere, 0008 #status, #clients, #recover-prefix."""
    for name in NODES:
        cluster.start(name, peers=[cluster.url(n) for n in NODES if n != name])
    urls = [cluster.url(n) for n in NODES]
    offline = tmp_path / "offline"
    alice = _home(tmp_path, capsys, "alice", urls[:1])
    made = alice.json("id", "new", "alice", "--no-encrypt", "--recovery-out", str(offline))
    did, genesis = made["did"], made["genesis"]
    (recovery_file,) = made["recovery_files"]
    hello = alice.post("alice", "hello from alice")
    last = alice.post("alice", "my last own post")
    cluster.wait_until(
        lambda: all(_event(u, bytes.fromhex(last)) for u in urls),
        "alice's posts on every node",
        DEADLINE_S,
    )

    # The thief has her laptop: her signing and next keys.
    thief = _home(tmp_path, capsys, "thief", urls[2:])
    _steal(alice, thief, did, with_next=True)
    before = thief.post("alice", "forged with her signing key")
    t_rot = thief.json("id", "rotate", "alice")["id"]
    later = thief.post("alice", "forged with my own key now")
    forged = {before, t_rot, later}
    cluster.wait_until(
        lambda: _statuses(urls, forged) == {(i, "canonical", None) for i in forged},
        "the thief's events and rotation canonical on every node",
        DEADLINE_S,
    )
    shutil.rmtree(alice.home)  # the laptop is gone; the recovery key file was offline

    laptop = _home(tmp_path, capsys, "new-laptop", urls)
    recover = ("id", "recover", "alice", "--did", did, "--recovery-key", recovery_file)

    # No --after and no terminal: refused, with the choices (every node's events).
    code, out, err = laptop.run(*recover, "--no-encrypt", "--json")
    assert code == 1 and json.loads(out)["error"] == "recovery-point-required"
    for eid in (genesis, hello, last, *forged):
        assert eid[:12] in err
    assert "--after" in err

    # A wrong recovery key: refused, and never shown.
    wrong = Identity.generate()
    wrong_file = tmp_path / "wrong.key"
    wrong_file.write_text(recovery_file_text(did, RecoveryKey(position=0, count=1, key=wrong)))
    code, out, err = laptop.run(
        "id", "recover", "alice", "--recovery-key", str(wrong_file), "--after", last[:10],
        "--no-encrypt", "--json",
    )  # fmt: skip
    assert code == 1 and json.loads(out)["error"] == "unauthorized-key"
    assert wrong.seed.hex()[:16] not in out + err
    assert laptop.json("id", "list") == []

    # Her recovery, after her last good post.
    recovered = laptop.json(*recover, "--after", last[:10], "--no-encrypt")
    assert recovered["kind"] == "recover" and recovered["after"] == last
    assert set(recovered["revokes"]) == forged
    assert _stored_by(recovered) == ["accepted"] * 3
    r1 = recovered["id"]
    after = laptop.post("alice", "recovered, on a new laptop")

    want = {(i, "revoked", r1) for i in forged}
    want |= {(i, "canonical", None) for i in (genesis, hello, last, r1, after)}
    cluster.wait_until(
        lambda: _statuses(urls, [i for i, _, _ in want]) == want,
        "every node with alice's chain canonical and the thief's revoked by her recovery",
        DEADLINE_S,
    )
    for url in urls:
        keys = httpx.get(f"{url}/v1/authors/{did}/keys", timeout=10).json()
        assert keys["path"] == [genesis, r1] and keys["disputed"] is None
        feed = _feed(url, did)
        assert {hello, last, after} <= feed and not feed & forged

    doc, text = _fresh_read(tmp_path, capsys, urls, did)
    _assert_fresh_reader_sees(
        doc, text, hers={hello, last, after}, forged={before, later}, by=r1, what="recovery"
    )
