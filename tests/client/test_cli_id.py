"""``murmur --version`` and ``murmur id new|list|show`` (issue: protocol core, CLI start)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from client.cli import main
from client.keystore import Keystore

ZERO_SEED = "00" * 32
ZERO_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


def run(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_with_seed_prints_the_w3c_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["name"] == "alice" and doc["did"] == ZERO_DID and doc["default"] is True


def test_key_file_is_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, tmp_path, "id", "new", "alice")
    key = tmp_path / "identities" / "alice.toml"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "identities").stat().st_mode) == 0o700
    assert Keystore(tmp_path).load("alice").did == Keystore(tmp_path).get("alice").did


def test_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED)
    run(capsys, tmp_path, "id", "new", "bob")
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
        (["id", "new", "x", "--seed", "zz"], "bad-request", "64 hex"),
        (["id", "new", "x", "--seed", "00" * 31], "bad-request", "32 bytes"),
        (["id", "new", "Bad Name"], "keystore-error", "invalid identity name"),
        (["id", "show", "carol"], "identity-not-found", "murmur id new carol"),
    ],
)
def test_errors_are_clear_and_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: str, needle: str
) -> None:
    run(capsys, tmp_path, "id", "new", "alice")
    status, out, err = run(capsys, tmp_path, *argv, "--json")
    assert status == 1
    assert json.loads(out)["error"] == code
    assert needle in err and "Traceback" not in err


def test_unwritable_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    status, out, err = run(capsys, blocker / "home", "id", "new", "alice", "--json")
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
        [script, "id", "new", "alice", "--seed", ZERO_SEED, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(done.stdout)["did"] == ZERO_DID
    again = subprocess.run(
        [script, "id", "new", "alice"], capture_output=True, text=True, env=env, check=False
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_encrypted_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from client.keystore import PassphraseError

    monkeypatch.setenv("MURMUR_PASSPHRASE", "correct horse")
    code, out, err = run(
        capsys, tmp_path, "id", "new", "alice", "--seed", ZERO_SEED, "--encrypt", "--json"
    )
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


def test_encrypt_without_terminal_or_env_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MURMUR_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, out, _ = run(capsys, tmp_path, "id", "new", "alice", "--encrypt", "--json")
    assert code == 1 and json.loads(out)["error"] == "bad-passphrase"
    assert not (tmp_path / "identities" / "alice.toml").exists()
