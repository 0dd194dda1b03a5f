"""``murmur --version`` and ``murmur id new|list|show`` (issue: protocol core, CLI start).

Keys at rest (spec 0007 #keys-at-rest, issue #14 finding 7): sealed by default, a
failure rather than plaintext when no passphrase can be had, ``--no-encrypt`` explicit
and warned about, ``--seed`` warned about, ``--seed-file PATH|-`` as the alternative,
modes 0600/0700 enforced or warned about.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from client.cli import main
from client.cli.output import Context
from client.cli.session import Session
from client.keystore import Keystore, loose_permissions

ZERO_SEED = "00" * 32
ZERO_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
PLAIN = "--no-encrypt"


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A script's situation: no passphrase in the environment, no terminal to ask on."""
    monkeypatch.delenv("MURMUR_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def run(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_with_seed_prints_the_w3c_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, PLAIN, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["name"] == "alice" and doc["did"] == ZERO_DID and doc["default"] is True


def test_key_file_is_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, tmp_path, "id", "new", "alice", "--did-key", PLAIN)
    key = tmp_path / "identities" / "alice.toml"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "identities").stat().st_mode) == 0o700
    assert Keystore(tmp_path).load("alice").did == Keystore(tmp_path).get("alice").did


def test_new_makes_a_rotatable_identity_unless_told_did_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #rotatable-keys, 0008 #clients: ``id new`` makes a did:murmur by default;
    ``--did-key`` (alias ``--no-rotatable``) and a seed make a did:key; contradictions are
    refused before anything is stored."""
    seed = tmp_path / "seed"
    seed.write_text(ZERO_SEED + "\n")
    made: dict[str, str] = {}
    offline = ["--recovery-out", str(tmp_path / "rk")]
    for name, flags in (
        ("dflt", offline),
        ("rot", ["--rotatable", *offline]),
        ("dk", ["--did-key"]),
        ("alias", ["--no-rotatable"]),
        ("seeded", ["--seed-file", str(seed)]),
    ):
        code, out, err = run(capsys, tmp_path, "id", "new", name, *flags, PLAIN, "--json")
        assert code == 0, err
        made[name] = json.loads(out)["did"]
    assert made["dflt"].startswith("did:murmur:") and made["rot"].startswith("did:murmur:")
    assert Keystore(tmp_path).get("dflt").rotatable
    assert (tmp_path / "identities" / "dflt.next.toml").exists()
    assert len(list((tmp_path / "rk").iterdir())) == 2  # one recovery key each, offline
    assert made["dk"].startswith("did:key:") and made["alias"].startswith("did:key:")
    assert made["seeded"] == ZERO_DID
    assert not Keystore(tmp_path).get("dk").rotatable
    for argv, needle in (
        (["--rotatable", "--seed-file", str(seed)], "restore a did:key"),
        (["--did-key", "--recovery-out", str(tmp_path / "x")], "rotatable identity"),
        (["--seed-file", str(seed), "--recovery-keys", "2"], "rotatable identity"),
    ):
        code, _, err = run(capsys, tmp_path, "id", "new", "bad", *argv, PLAIN)
        assert code == 1 and needle in err, (argv, err)
    with pytest.raises(SystemExit) as usage:
        run(capsys, tmp_path, "id", "new", "bad", "--rotatable", "--did-key", PLAIN)
    assert usage.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not Keystore(tmp_path).exists("bad")


def test_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, PLAIN)
    run(capsys, tmp_path, "id", "new", "bob", PLAIN)
    code, out, _ = run(capsys, tmp_path, "id", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [i["name"] for i in listed] == ["alice", "bob"]
    assert [i["default"] for i in listed] == [True, False]
    code, out, _ = run(capsys, tmp_path, "id", "show", "alice", "--json")
    assert json.loads(out)["did"] == ZERO_DID
    code, out, _ = run(capsys, tmp_path, "id", "show")
    assert code == 0 and "alice (default)" in out and ZERO_DID in out
    code, out, _ = run(capsys, tmp_path, "id", "list")
    assert "* alice" in out and "  bob" in out


def test_empty_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "id", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, tmp_path, "id", "list")
    assert "murmur id new" in out


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["id", "new", "alice"], "identity-exists", "already exists"),
        (["id", "new", "x", "--seed", "zz", PLAIN], "bad-request", "64 hex"),
        (["id", "new", "x", "--seed", "00" * 31, PLAIN], "bad-request", "32 bytes"),
        (["id", "new", "Bad Name"], "keystore-error", "invalid identity name"),
        (["id", "show", "carol"], "identity-not-found", "murmur id new carol"),
    ],
)
def test_errors_are_clear_and_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: str, needle: str
) -> None:
    run(capsys, tmp_path, "id", "new", "alice", PLAIN)
    status, out, err = run(capsys, tmp_path, *argv, "--json")
    assert status == 1
    assert json.loads(out)["error"] == code
    assert needle in err and "Traceback" not in err


def test_unwritable_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    status, out, err = run(capsys, blocker / "home", "id", "new", "alice", PLAIN, "--json")
    assert status == 1 and json.loads(out)["error"] == "keystore-error"
    assert "cannot create the Murmur home" in err


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: murmur" in capsys.readouterr().err


def test_installed_script_end_to_end(tmp_path: Path) -> None:
    """The console script itself, as a person runs it, with $MURMUR_HOME."""
    script = Path(sys.executable).parent / "murmur"
    env = {**os.environ, "MURMUR_HOME": str(tmp_path)}
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("murmur ")
    done = subprocess.run(
        [script, "id", "new", "alice", "--seed", ZERO_SEED, PLAIN, "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(done.stdout)["did"] == ZERO_DID
    again = subprocess.run(
        [script, "id", "new", "alice", PLAIN],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_encrypted_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from client.keystore import PassphraseError

    monkeypatch.setenv("MURMUR_PASSPHRASE", "correct horse")
    code, out, err = run(capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["did"] == ZERO_DID and doc["encrypted"] is True
    text = (tmp_path / "identities" / "alice.toml").read_text()
    assert ZERO_SEED not in text and "scrypt-aes256gcm" in text
    store = Keystore(tmp_path)
    assert store.load("alice", passphrase="correct horse").did == ZERO_DID
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        store.load("alice", passphrase="wrong")
    with pytest.raises(PassphraseError, match="MURMUR_PASSPHRASE"):
        store.load("alice")


def test_encrypted_identity_with_the_explicit_flag_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MURMUR_PASSPHRASE", "correct horse")
    code, _, err = run(capsys, tmp_path, "id", "new", "alice", "--encrypt", "--json")
    assert code == 0, err
    assert Keystore(tmp_path).get("alice").sealed


def test_new_without_any_passphrase_fails_instead_of_storing_plaintext(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #keys-at-rest: no terminal, no $MURMUR_PASSPHRASE, no file -> no key."""
    code, out, err = run(capsys, tmp_path, "id", "new", "alice", "--json")
    assert code == 1 and json.loads(out)["error"] == "bad-passphrase"
    for way_out in ("$MURMUR_PASSPHRASE", "--passphrase-file", "--no-encrypt"):
        assert way_out in err
    assert not (tmp_path / "identities" / "alice.toml").exists()


def test_new_seals_the_key_by_default_with_a_passphrase_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #keys-at-rest: sealed without asking for it, file 0600 in a 0700 dir."""
    secret = tmp_path / "pass"
    secret.write_text("correct horse\n")  # one final line break is not part of it
    home = tmp_path / "home"
    code, out, err = run(
        capsys, home, "--passphrase-file", str(secret), "id", "new", "alice", "--seed",
        ZERO_SEED, "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["encrypted"] is True
    key = home / "identities" / "alice.toml"
    text = key.read_text()
    assert ZERO_SEED not in text and 'format = "scrypt-aes256gcm"' in text
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert Keystore(home).load("alice", passphrase="correct horse").did == ZERO_DID
    # Signing reads the same file: the identity opens without a prompt or an env var.
    ctx = Context(home=home, as_name=None, nodes=(), json=False, passphrase_file=str(secret))
    assert Session.open(ctx).identity().did == ZERO_DID


def test_no_encrypt_stores_plain_hex_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, PLAIN)
    assert code == 0, err
    assert "NOT encrypted" in out
    assert "murmur: warning:" in err and "unencrypted" in err and ZERO_DID in err
    assert ZERO_SEED in (tmp_path / "identities" / "alice.toml").read_text()
    code, out, _ = run(capsys, tmp_path, "id", "show", "alice")
    assert "NOT encrypted" in out


def test_seed_on_the_command_line_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, PLAIN, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["did"] == ZERO_DID  # stdout stays one JSON document
    assert "murmur: warning: --seed" in err
    assert "process list" in err and "--seed-file" in err


def test_seed_file_reads_a_file_or_standard_input_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_file = tmp_path / "seed"
    seed_file.write_text(ZERO_SEED + "\n")
    code, out, err = run(
        capsys, tmp_path / "a", "id", "new", "alice", "--seed-file", str(seed_file), PLAIN,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["did"] == ZERO_DID and "--seed puts" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(ZERO_SEED + "\n"))
    code, out, err = run(
        capsys, tmp_path / "b", "id", "new", "bob", "--seed-file", "-", PLAIN, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["did"] == ZERO_DID and "--seed puts" not in err


def test_a_bad_seed_file_is_refused_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_file = tmp_path / "seed"
    seed_file.write_text("secret-but-not-hex")
    code, out, err = run(
        capsys, tmp_path, "id", "new", "alice", "--seed-file", str(seed_file), PLAIN, "--json"
    )
    assert code == 1 and json.loads(out)["error"] == "bad-request"
    assert "secret-but-not-hex" not in err + out


def test_seed_and_passphrase_cannot_both_come_from_standard_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, tmp_path, "--passphrase-file", "-", "id", "new", "alice", "--seed-file", "-",
        "--json",
    )  # fmt: skip
    assert code == 1 and json.loads(out)["error"] == "bad-request"
    assert "standard input" in err


def test_loose_permissions_are_tightened_or_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #keys-at-rest: the identities dir is tightened to 0700 when a key is
    created in it; a key file opened up later is named in a warning."""
    ids = tmp_path / "identities"
    ids.mkdir(mode=0o755)
    ids.chmod(0o755)
    code, _, err = run(capsys, tmp_path, "id", "new", "alice", PLAIN)
    assert code == 0, err
    assert stat.S_IMODE(ids.stat().st_mode) == 0o700
    key = ids / "alice.toml"
    assert loose_permissions(key) == []
    key.chmod(0o644)
    [problem] = loose_permissions(key)
    assert "0644" in problem and "chmod 600" in problem
    code, _, err = run(capsys, tmp_path, "id", "show", "alice")
    assert code == 0 and "murmur: warning:" in err and "chmod 600" in err
    warnings = io.StringIO()
    ctx = Context(home=tmp_path, as_name=None, nodes=(), json=False, stderr=warnings)
    Session.open(ctx).identity()  # signing warns too
    assert "chmod 600" in warnings.getvalue()


def test_two_concurrent_creations_of_one_name_never_overwrite_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec 0007 #key-create-exclusive. Two `murmur id new alice` at once: both pass the
    "does it exist?" check before either writes; exactly one creates the key, the
    other gets identity-exists, and the file holds the winner's key."""
    from client import keystore as keystore_module
    from client.errors import IdentityExistsError
    from protocol.identity import Identity

    both_checked = threading.Barrier(2, timeout=30)

    class CheckedThenRaced:
        """``Identity`` whose ``from_seed`` (called after the existence check) waits
        for the other creation to reach the same point."""

        @staticmethod
        def from_seed(seed: bytes) -> Identity:
            both_checked.wait()
            return Identity.from_seed(seed)

    monkeypatch.setattr(keystore_module, "Identity", CheckedThenRaced)
    outcomes: dict[int, object] = {}

    def create(which: int) -> None:
        try:
            outcomes[which] = Keystore(tmp_path).create(
                "alice", seed=bytes([which]) * 32, passphrase=None
            )
        except IdentityExistsError as exc:
            outcomes[which] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    monkeypatch.undo()
    assert sorted(type(o).__name__ for o in outcomes.values()) == [
        "IdentityExistsError",
        "StoredIdentity",
    ], outcomes
    winner = next(o for o in outcomes.values() if not isinstance(o, Exception))
    assert Keystore(tmp_path).load("alice").did == winner.did  # type: ignore[attr-defined]
    assert stat.S_IMODE((tmp_path / "identities" / "alice.toml").stat().st_mode) == 0o600
    leftovers = [p.name for p in (tmp_path / "identities").iterdir() if p.name != "alice.toml"]
    assert leftovers == []


@pytest.mark.parametrize(
    ("seed", "wrong"),
    [
        ("5eed" * 15 + "5eeg", "not a hex digit"),  # one typo in a real-looking seed
        ("5eed" * 15 + "5ee", "63 hex digits"),  # one digit short
    ],
    ids=["non-hex", "odd-length"],
)
def test_a_malformed_seed_in_argv_is_refused_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str, wrong: str
) -> None:
    """spec 0007 #keys-at-rest: a near-miss seed is almost the whole secret, so the
    error (which goes to logs and --json output) says what is wrong, never the value."""
    code, out, err = run(capsys, tmp_path, "id", "new", "alice", "--seed", seed, PLAIN, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["error"] == "bad-request"
    assert wrong in doc["message"] and "64 hex" in doc["message"]
    assert "5eed5eed" not in out + err
