"""The ``murmur`` command line as a script runs it (a real process, stdin not a
terminal) against a real node and a URL where nothing listens (issue #14 findings 7, 8).

- spec 0007 #no-answer, #exit-status: a read that no node answered exits 1 with
  ``no-node-answered`` and shows no (empty) view; a read that one of two nodes
  answered exits 0 and names the other node in a ``!`` line.
- spec 0007 #keys-at-rest: a new key is sealed by default when a passphrase can be had
  (here ``--passphrase-file``), the file is 0600 in a 0700 directory, signing opens it
  with the same file; with no passphrase at all ``id new`` fails rather than store
  plaintext; ``--seed HEX`` warns, ``--seed-file -`` reads standard input.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import free_port
from tests.adversarial.conftest import start_node
from tests.e2e.nodeproc import ROOT, NodeProcess

MURMUR = Path(sys.executable).parent / "murmur"
SEED = f"{0xC11_F00D:064x}"
SEED_DID = "did:key:z6Mksz3t2HY4at5HQLdddqc5vaCG5gDd8uNMyCCBrUVzteER"


@pytest.fixture(scope="module")
def cli_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(tmp_path_factory.mktemp("cli-node"))
    yield node
    node.stop()


@pytest.fixture
def dead() -> str:
    """A node URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def murmur(home: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``murmur --home HOME ...`` as a separate process; stdin is ``stdin`` or empty
    (never a terminal), and no ``$MURMUR_PASSPHRASE`` is inherited."""
    if not MURMUR.exists():
        pytest.skip("murmur console script not installed in this environment")
    env = {k: v for k, v in os.environ.items() if k != "MURMUR_PASSPHRASE"}
    return subprocess.run(
        [str(MURMUR), "--home", str(home), *argv],
        input=stdin if stdin is not None else "",
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_read_no_node_answered_exits_1(tmp_path: Path, dead: str) -> None:
    """spec 0007 #no-answer: not "Your timeline is empty" with exit 0."""
    assert murmur(tmp_path, "id", "new", "me", "--no-encrypt").returncode == 0
    done = murmur(tmp_path, "--node", dead, "timeline")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "" and "empty" not in done.stderr
    assert done.stderr.startswith("murmur: error: no node answered") and dead in done.stderr
    as_json = murmur(tmp_path, "--node", dead, "timeline", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"] == "no-node-answered"


def test_a_read_one_of_two_nodes_answered_exits_0_with_a_warning(
    tmp_path: Path, cli_node: NodeProcess, dead: str
) -> None:
    """spec 0007 #no-answer: one answering node is enough; the other is reported."""
    assert murmur(tmp_path, "id", "new", "me", "--no-encrypt").returncode == 0
    posted = murmur(tmp_path, "--node", cli_node.url, "post", "one node is enough")
    assert posted.returncode == 0, posted.stderr
    done = murmur(tmp_path, "--node", dead, "--node", cli_node.url, "timeline")
    assert done.returncode == 0, done.stderr
    assert "one node is enough" in done.stdout
    assert f"! {dead}: node-unreachable" in done.stdout
    empty = murmur(tmp_path, "--node", dead, "--node", cli_node.url, "search", "nobody-xyz")
    assert empty.returncode == 0 and "No profile name contains" in empty.stdout


def test_a_new_key_is_sealed_by_default_and_private(tmp_path: Path, cli_node: NodeProcess) -> None:
    """spec 0007 #keys-at-rest: sealed with the passphrase file's passphrase, no
    ``--encrypt`` needed; 0600 in 0700; signing opens it from the same file."""
    home, secret = tmp_path / "home", tmp_path / "passphrase"
    secret.write_text("correct horse battery staple\n")
    made = murmur(
        home, "--passphrase-file", str(secret), "id", "new", "me", "--seed-file", "-",
        "--json", stdin=SEED + "\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["did"] == SEED_DID and doc["encrypted"] is True
    assert "warning" not in made.stderr
    key = home / "identities" / "me.toml"
    text = key.read_text()
    assert SEED not in text and 'format = "scrypt-aes256gcm"' in text
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700

    posted = murmur(
        home, "--passphrase-file", str(secret), "--node", cli_node.url, "post", "sealed"
    )
    assert posted.returncode == 0, posted.stderr
    no_passphrase = murmur(home, "--node", cli_node.url, "post", "x", "--json")
    assert no_passphrase.returncode == 1
    assert json.loads(no_passphrase.stdout)["error"] == "bad-passphrase"


def test_no_passphrase_to_be_had_is_an_error_not_plaintext(tmp_path: Path) -> None:
    """spec 0007 #keys-at-rest: a script with no passphrase source gets no key."""
    done = murmur(tmp_path, "id", "new", "me", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"] == "bad-passphrase"
    assert "--no-encrypt" in done.stderr
    assert not (tmp_path / "identities" / "me.toml").exists()


def test_a_seed_in_argv_warns_and_a_seed_on_stdin_does_not(tmp_path: Path) -> None:
    """spec 0007 #keys-at-rest: --seed HEX warns on stderr; --seed-file - is the
    quiet alternative and gives the same identity."""
    in_argv = murmur(tmp_path / "a", "id", "new", "me", "--seed", SEED, "--no-encrypt")
    assert in_argv.returncode == 0, in_argv.stderr
    assert "murmur: warning: --seed" in in_argv.stderr and "process list" in in_argv.stderr
    on_stdin = murmur(
        tmp_path / "b", "id", "new", "me", "--seed-file", "-", "--no-encrypt", "--json",
        stdin=SEED + "\n",
    )  # fmt: skip
    assert on_stdin.returncode == 0, on_stdin.stderr
    assert json.loads(on_stdin.stdout)["did"] == SEED_DID
    assert "--seed puts" not in on_stdin.stderr
    assert "unencrypted" in on_stdin.stderr  # --no-encrypt is always said out loud


def test_a_did_murmur_named_in_bodies_does_not_break_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_node: NodeProcess
) -> None:
    """spec 0008 #did-murmur, spec 0004 errors: bodies may name a did:murmur (here amy's
    own follow, signed by another client) before nodes accept v2 events; a reader's
    feed queries then name it, and the node must answer them (it matches nothing yet)
    instead of refusing the whole query with invalid-did and emptying the timeline."""
    import base64

    import httpx

    from protocol.events import decode_event, sign_event, sign_genesis
    from protocol.identity import Identity
    from tests.e2e.client_fixtures import Cli

    somebody = sign_genesis(
        Identity.from_seed(b"\x22" * 32),
        next_key=Identity.from_seed(b"\x33" * 32).public.raw,
        recovery=[Identity.from_seed(b"\x44" * 32).public.raw],
    ).author
    seed = b"\x12" * 32
    (tmp_path / "seed").write_text(seed.hex())
    cli = Cli(tmp_path / "home", capsys)
    amy = cli.json("id", "new", "amy", "--no-encrypt", "--seed-file", str(tmp_path / "seed"))
    bob = cli.json("id", "new", "bob", "--no-encrypt")["did"]
    cli.json("nodes", "add", cli_node.url)
    cli.json("follow", bob, "--alias", "bob")
    cli.post("bob", "hello from bob")
    log = httpx.get(f"{cli_node.url}/v1/authors/{amy['did']}/events", timeout=10).json()
    head = decode_event(base64.b64decode(log["events"][-1]["wire"]))
    follow = sign_event(
        Identity.from_seed(seed), kind="follow", body={"subject": somebody},
        seq=head.seq + 1, prev=head.id,
    )
    r = httpx.post(
        f"{cli_node.url}/v1/events",
        json={"events": [base64.b64encode(follow.wire).decode()]},
        timeout=10,
    )
    assert r.json()["results"][0]["status"] == "accepted", r.text
    doc = cli.json("timeline")
    assert [p["text"] for p in doc["posts"]] == ["hello from bob"]
    assert all(n["ok"] for n in doc["nodes"]), doc["nodes"]
    r = httpx.get(f"{cli_node.url}/v1/feed", params={"authors": somebody}, timeout=10)
    assert (r.status_code, r.json()["events"]) == (200, [])
