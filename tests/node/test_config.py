"""Configuration loading (spec 0004 §configuration) and the package's public API."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import node
from node.config import ConfigError, NodeConfig, default_data_dir, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_toml_with_cli_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[node]\nhost = "0.0.0.0"\nport = 9000\nnetwork = "testnet"\n'
        'peers = ["http://a.example"]\ndata_dir = "~/murmur-data"\n'
        "[limits]\nmax_batch = 10\nrate_per_ip = 5\n",
    )
    config = load_config(path, {"port": 9100, "host": None, "peers": ["https://b.example"]})
    assert (config.host, config.port, config.network) == ("0.0.0.0", 9100, "testnet")  # noqa: S104
    assert config.peers == ("https://b.example",)
    assert config.data_dir == Path("~/murmur-data").expanduser()
    assert config.limits.max_batch == 10 and config.limits.rate_per_ip == 5
    assert config.limits.max_request_bytes == NodeConfig().limits.max_request_bytes


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[node]\nprot = 1\n", "unknown key node.prot"),
        ("[limits]\nmax_bath = 1\n", "unknown key limits.max_bath"),
        ("[nodes]\n", "unknown table"),
        ('[node]\nport = "80"\n', "node.port must be int"),
        ("[node]\nport = 70000\n", "node.port must be in"),
        ("[limits]\nmax_batch = 0\n", "limits.max_batch must be a positive integer"),
        ("[limits]\nmax_batch = true\n", "limits.max_batch has the wrong type"),
        ("[limits]\nmax_event_bytes = 100000000\n", "cannot exceed"),
        ('[node]\npeers = ["ftp://x"]\n', "must be an http"),
        ("[node\n", "not valid TOML"),
        ('[store]\nurl = "sqlite:///x.db"\n', "must be a postgresql://"),
        ('[store]\nurl = "postgresql://u:secret@h:99999/db"\n', "invalid port"),
        ('[store]\nurl = "postgresql://u@h:5432"\n', "names no database"),
        ('[store]\nurl = 5\n', "store.url must be str"),
        ('[store]\npath = "x"\n', "unknown key store.path"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(_write(tmp_path, text))


def test_store_url_from_toml_and_option(tmp_path: Path) -> None:
    """spec 0004 §configuration: ``[store] url``; ``--store`` wins; SQLite by default."""
    path = _write(tmp_path, '[store]\nurl = "postgresql://murmur@db.example:5432/node"\n')
    assert load_config(path).store_url == "postgresql://murmur@db.example:5432/node"
    given = load_config(path, {"store_url": "postgres://m@127.0.0.1/other"})
    assert given.store_url == "postgres://m@127.0.0.1/other"
    assert load_config(None).store_url is None


def test_a_bad_store_url_never_shows_its_password(tmp_path: Path) -> None:
    path = _write(tmp_path, '[store]\nurl = "postgresql://u:hunter2@h:0x/db"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "hunter2" not in str(info.value) and "u:***@h" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MURMUR_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "node"
    assert load_config().data_dir == tmp_path / "node"
    monkeypatch.delenv("MURMUR_HOME")
    assert default_data_dir() == Path.home() / ".murmur" / "node"


def test_injected_clock() -> None:
    assert load_config(now_ms=lambda: 42).now_ms() == 42


def test_public_api_is_exactly_all() -> None:
    public = {
        name
        for name, value in vars(node).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public.discard("annotations")  # from __future__
    assert public | {"__version__"} == set(node.__all__)
    for name in node.__all__:
        assert hasattr(node, name)


def test_cli_registers_node_run() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="murmur")
    node.add_node_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["node", "run", "--port", "0", "--peer", "http://a", "--peer", "http://b", "--data", "d"]
    )
    assert args.port == 0 and args.peer == ["http://a", "http://b"] and args.data == "d"
    assert callable(args.func)


def test_federation_table_and_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[node]\nallow_private_peers = true\npublic_url = "https://n.example"\n'
        "[federation]\npeer_exchange = false\nsync_interval_ms = 5000\nmax_peers = 4\n",
    )
    config = load_config(path, {"sync_interval_ms": 2500, "peer_exchange": None})
    fed = config.federation
    assert config.allow_private_peers and config.public_url == "https://n.example"
    assert (fed.peer_exchange, fed.sync_interval_ms, fed.max_peers) == (False, 2500, 4)
    assert fed.backoff_max_ms == NodeConfig().federation.backoff_max_ms
    assert config.advertised_url == "https://n.example"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[federation]\nsync_every = 1\n", "unknown key federation.sync_every"),
        ("[federation]\npeer_exchange = 1\n", "federation.peer_exchange"),
        ("[federation]\nsync_interval_ms = 0\n", "federation.sync_interval_ms"),
        ("[federation]\nbackoff_min_ms = 10\nbackoff_max_ms = 5\n", "backoff_min_ms"),
        ("[federation]\nsync_frame_bytes = 100\n", "from 4096 to"),
        ("[federation]\nfetch_batch = 500\n", "cannot exceed 100"),
        ('[node]\npublic_url = "ftp://x"\n', "public_url"),
        ("[federation]\nmax_peers = true\n", "wrong type"),
    ],
)
def test_bad_federation_config(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(_write(tmp_path, text))


def test_advertised_url_needs_a_concrete_address() -> None:
    assert NodeConfig(port=8701).advertised_url == "http://127.0.0.1:8701"
    assert NodeConfig(host="::1", port=8701).advertised_url == "http://[::1]:8701"
    assert NodeConfig(host="0.0.0.0", port=8701).advertised_url is None  # noqa: S104
    assert NodeConfig(port=0).advertised_url is None


def test_node_run_federation_flags(tmp_path: Path) -> None:
    import argparse

    from node.cli import add_node_commands

    parser = argparse.ArgumentParser()
    add_node_commands(parser.add_subparsers())
    args = parser.parse_args(
        ["node", "run", "--allow-private-peers", "--no-peer-exchange", "--sync-interval", "1.5"]
    )
    assert (args.allow_private_peers, args.peer_exchange, args.sync_interval) == (
        True,
        False,
        1500,
    )
    defaults = parser.parse_args(["node", "run"])
    assert (defaults.allow_private_peers, defaults.peer_exchange) == (None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["node", "run", "--sync-interval", "0"])
