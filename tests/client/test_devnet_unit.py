"""``murmur devnet`` without running nodes: topologies, validation, ports, state files.

Processes that stand in for a supervisor or a node are ``python -c`` children that
block on stdin (no sleeping), with the marker a real one carries in its command line
("devnet", or the node's data directory). Every one is killed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import client.devnet
from client.cli import main
from client.cli.main import build_parser
from client.devnet import (
    MAX_NODES,
    DevnetError,
    DevnetState,
    Topology,
    check_ports,
    devnet_status,
    make_plan,
    node_argv,
    peer_indices,
    port_in_use,
    prepare,
    restart_delay,
    stop_devnet,
)
from client.devnet.plan import DEVNET_FEEDS, node_config_toml
from client.devnet.state import pid_alive
from node.config import load_config
from protocol.errors import BadRequestError

LINUX_PROC = Path("/proc/self/cmdline").exists()


# -- topologies ----------------------------------------------------------------------------

# 1-based peers of each node, for N = 1..5 (written out, not computed).
EXPECTED: dict[Topology, dict[int, list[list[int]]]] = {
    Topology.MESH: {
        1: [[]],
        2: [[2], [1]],
        3: [[2, 3], [1, 3], [1, 2]],
        4: [[2, 3, 4], [1, 3, 4], [1, 2, 4], [1, 2, 3]],
        5: [[2, 3, 4, 5], [1, 3, 4, 5], [1, 2, 4, 5], [1, 2, 3, 5], [1, 2, 3, 4]],
    },
    Topology.LINE: {
        1: [[]],
        2: [[2], [1]],
        3: [[2], [1, 3], [2]],
        4: [[2], [1, 3], [2, 4], [3]],
        5: [[2], [1, 3], [2, 4], [3, 5], [4]],
    },
    Topology.STAR: {
        1: [[]],
        2: [[2], [1]],
        3: [[2, 3], [1], [1]],
        4: [[2, 3, 4], [1], [1], [1]],
        5: [[2, 3, 4, 5], [1], [1], [1], [1]],
    },
}
CASES = [(t, n) for t in Topology for n in range(1, 6)]


@pytest.mark.parametrize(("topology", "n"), CASES, ids=[f"{t.value}-{n}" for t, n in CASES])
def test_topology_wiring(topology: Topology, n: int) -> None:
    got = [[j + 1 for j in peers] for peers in peer_indices(topology, n)]
    assert got == EXPECTED[topology][n]
    # Every link is configured on both ends: with peer exchange off (line, star) a
    # node ignores announcements, so a one-sided link would never be used backwards.
    for i, peers in enumerate(got, start=1):
        assert i not in peers
        for j in peers:
            assert i in got[j - 1]


@pytest.mark.parametrize(("topology", "n"), CASES, ids=[f"{t.value}-{n}" for t, n in CASES])
def test_plan_ports_urls_dirs_and_flags(tmp_path: Path, topology: Topology, n: int) -> None:
    plan = make_plan(nodes=n, base_port=20000, topology=topology, dir=tmp_path / "dn")
    assert [p.name for p in plan.nodes] == [f"node{k}" for k in range(1, n + 1)]
    assert [p.port for p in plan.nodes] == list(range(20000, 20000 + n))
    assert plan.urls == [f"http://127.0.0.1:{20000 + k}" for k in range(n)]
    assert [p.data_dir for p in plan.nodes] == [
        tmp_path / "dn" / f"node{k}" for k in range(1, n + 1)
    ]
    assert plan.state_path == tmp_path / "dn" / "devnet.json"
    for node, expected in zip(plan.nodes, EXPECTED[topology][n], strict=True):
        argv = node_argv(node, python="PY")
        assert argv[:4] == ["PY", "-m", "node", "run"]
        assert argv[argv.index("--port") + 1] == str(node.port)
        assert argv[argv.index("--data") + 1] == str(node.data_dir)
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert "--allow-private-peers" in argv
        assert float(argv[argv.index("--sync-interval") + 1]) <= 10
        peers = [argv[i + 1] for i, a in enumerate(argv) if a == "--peer"]
        assert peers == [f"http://127.0.0.1:{20000 + j - 1}" for j in expected]
        assert ("--no-peer-exchange" in argv) is (topology is not Topology.MESH)


def test_plan_dir_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    plan = make_plan(nodes=1)
    assert plan.dir == tmp_path / ".murmur-dev"
    assert plan.client_home == tmp_path / ".murmur-dev" / "client"


def test_node_config_is_accepted_by_the_node(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(node_config_toml())
    config = load_config(path, {"port": 1234, "sync_interval_ms": 5000})
    assert config.limits.rate_per_ip >= 10_000  # every devnet process shares 127.0.0.1
    assert config.federation.backoff_max_ms <= 10_000  # a restarted peer is back in seconds
    assert config.federation.sync_interval_ms == 5000
    assert config.verify_in == "threads"  # several nodes on one machine: no worker processes
    assert [(f.name, f.type) for f in config.feeds] == list(DEVNET_FEEDS)


def test_feed_flags_are_served_by_every_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_file = tmp_path / "my_feed.py"
    feed_file.write_text("class Mine:\n    name = 'mine'\n")
    monkeypatch.chdir(tmp_path)
    rel = "my_feed.py"  # relative to where `murmur devnet up` runs, not to node.toml
    plan = make_plan(nodes=2, dir=tmp_path, feeds=["tags=tag", f"mine={rel}:Mine"])
    assert plan.feeds[: len(DEVNET_FEEDS)] == DEVNET_FEEDS
    assert plan.feeds[len(DEVNET_FEEDS) :] == (("tags", "tag"), ("mine", f"{feed_file}:Mine"))
    path = tmp_path / "node.toml"
    path.write_text(node_config_toml(plan.feeds))
    config = load_config(path, {"port": 1234})
    assert [f.name for f in config.feeds] == ["hot", "friends", "tags", "mine"]


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        ("hot", "NAME=TYPE"),
        ("Hot=whats-hot", "NAME=TYPE"),
        ("x=", "NAME=TYPE"),
        ("hot=tag", "already serves"),
        ("x=no-such-builtin", "--feed 'x=no-such-builtin'"),
        ("x=./missing.py:C", "--feed"),
    ],
)
def test_bad_feed_flags_are_refused_before_anything_starts(arg: str, needle: str) -> None:
    with pytest.raises(BadRequestError, match=needle):
        make_plan(nodes=1, feeds=[arg])


def test_restart_delay_doubles_and_is_capped() -> None:
    delays = [restart_delay(k) for k in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays == sorted(delays)
    assert max(delays) == 30.0


# -- argument validation -------------------------------------------------------------------


@pytest.mark.parametrize("count", ["0", "-1", "21", "x"])
def test_nodes_out_of_range_is_a_usage_error(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["devnet", "up", "--nodes", count])
    assert exc.value.code == 2
    assert "--nodes" in capsys.readouterr().err


def test_nodes_option_does_not_clobber_the_global_node_list() -> None:
    args = build_parser().parse_args(
        ["--node", "http://127.0.0.1:1", "devnet", "up", "--nodes", "4", "--topology", "star"]
    )
    assert args.nodes == ["http://127.0.0.1:1"]
    assert args.count == 4
    assert args.topology == "star"


def test_defaults() -> None:
    args = build_parser().parse_args(["devnet", "up"])
    assert (args.count, args.base_port, args.topology, args.dir) == (
        3,
        8701,
        "mesh",
        Path(".murmur-dev"),
    )
    assert args.seed_demo is False


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"nodes": 0}, "--nodes"),
        ({"nodes": MAX_NODES + 1}, "--nodes"),
        ({"nodes": 3, "base_port": 65534}, "--base-port"),
        ({"nodes": 1, "base_port": 0}, "--base-port"),
        ({"nodes": 2, "topology": "ring"}, "topology"),
    ],
)
def test_plan_validation(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(BadRequestError, match=needle) as exc:
        make_plan(**kwargs)  # type: ignore[arg-type]
    assert exc.value.code == "bad-request"


# -- ports ---------------------------------------------------------------------------------


@contextmanager
def listening() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_port_in_use_detection() -> None:
    with listening() as port:
        assert port_in_use(port)
        with pytest.raises(DevnetError) as exc:
            check_ports([port], base_port=port, count=1)
    assert exc.value.code == "devnet-error"
    assert f"port {port} " in exc.value.message
    assert "--base-port" in exc.value.message
    assert not port_in_use(port)  # closed now


def test_up_refuses_a_busy_port_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with listening() as port:
        argv = ["devnet", "up", "--nodes", "1", "--base-port", str(port), "--dir", str(tmp_path)]
        code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    doc = json.loads(out)
    assert doc["error"] == "devnet-error"
    assert str(port) in doc["message"] and "--base-port" in doc["message"]
    assert "murmur: error: port" in err
    assert not (tmp_path / "devnet.json").exists()


# -- state files and leftovers -------------------------------------------------------------


@contextmanager
def stand_in(*marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child blocked on stdin whose command line carries ``marker``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", *marker], stdin=subprocess.PIPE
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


def write_state(dir: Path, supervisor_pid: int, node_pids: list[int | None]) -> DevnetState:
    plan = make_plan(nodes=len(node_pids), base_port=20100, dir=dir)
    state = DevnetState.from_plan(plan, supervisor_pid=supervisor_pid)
    for entry, pid in zip(state.nodes, node_pids, strict=True):
        entry.pid = pid
    state.save()
    return state


def test_state_round_trip(tmp_path: Path) -> None:
    state = write_state(tmp_path, 1234, [11, 12])
    loaded = DevnetState.load(tmp_path)
    assert loaded is not None
    assert loaded.to_json() == state.to_json()
    assert [n.pid for n in loaded.nodes] == [11, 12]
    assert DevnetState.load(tmp_path / "nowhere") is None


def test_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "devnet.json").write_text('{"supervisor_pid": "x"}')
    with pytest.raises(DevnetError, match="not a devnet state file"):
        DevnetState.load(tmp_path)


def test_stale_state_is_removed_with_a_note(tmp_path: Path) -> None:
    write_state(tmp_path, dead_pid(), [dead_pid(), None])
    plan = make_plan(nodes=1, base_port=free_port(), dir=tmp_path)
    notes = prepare(plan)
    assert len(notes) == 1
    assert "stale" in notes[0] and "is gone" in notes[0]
    assert not (tmp_path / "devnet.json").exists()


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc to tell whose process a pid is")
def test_stale_state_stops_leftover_nodes(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "node1")
    with stand_in(data_dir) as node:
        write_state(tmp_path, dead_pid(), [node.pid])
        notes = prepare(make_plan(nodes=1, base_port=free_port(), dir=tmp_path))
        assert node.wait(timeout=10) == -signal.SIGTERM
    assert "leftover node(s) node1" in notes[0]


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc to tell whose process a pid is")
def test_a_reused_pid_is_not_taken_for_a_supervisor(tmp_path: Path) -> None:
    with stand_in("something-else") as other:
        write_state(tmp_path, other.pid, [None])
        notes = prepare(make_plan(nodes=1, base_port=free_port(), dir=tmp_path))
        assert other.poll() is None  # never signalled: it is not ours
    assert "stale" in notes[0]


def test_running_devnet_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with stand_in("devnet", "up") as sup:
        write_state(tmp_path, sup.pid, [None])
        code = main(["devnet", "up", "--nodes", "1", "--dir", str(tmp_path)])
        _, err = capsys.readouterr()
        assert code == 1
        assert f"a devnet is already running in {tmp_path} (pid {sup.pid})" in err
        assert f"murmur devnet down --dir {tmp_path}" in err
        assert (tmp_path / "devnet.json").exists()
        assert sup.poll() is None


@pytest.mark.skipif(not LINUX_PROC, reason="zombies are told apart through /proc")
def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        assert not pid_alive(proc.pid)
    finally:
        proc.wait(timeout=10)
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())


# -- down and status without nodes --------------------------------------------------------


def test_down_without_a_devnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "down", "--dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["found"] is False


def test_down_signals_the_supervisor(tmp_path: Path) -> None:
    with stand_in("devnet", "up") as sup:
        write_state(tmp_path, sup.pid, [dead_pid()])
        report = stop_devnet(tmp_path)
        assert sup.wait(timeout=10) == -signal.SIGTERM
    assert report.found and report.supervisor_was_running and not report.killed
    assert not (tmp_path / "devnet.json").exists()


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc to tell whose process a pid is")
def test_down_stops_orphaned_nodes(tmp_path: Path) -> None:
    with stand_in(str(tmp_path / "node1")) as n1, stand_in(str(tmp_path / "node2")) as n2:
        write_state(tmp_path, dead_pid(), [n1.pid, n2.pid])
        report = stop_devnet(tmp_path)
        assert n1.wait(timeout=10) == -signal.SIGTERM
        assert n2.wait(timeout=10) == -signal.SIGTERM
    assert report.found and not report.supervisor_was_running
    assert report.nodes == ("node1", "node2")
    assert not (tmp_path / "devnet.json").exists()


def test_status_of_nodes_that_are_down(tmp_path: Path) -> None:
    write_state(tmp_path, dead_pid(), [dead_pid()])
    state = DevnetState.load(tmp_path)
    assert state is not None
    state.nodes[0].url = f"http://127.0.0.1:{free_port()}"
    state.save()
    doc = devnet_status(tmp_path)
    assert doc["supervisor"]["running"] is False
    (node,) = doc["nodes"]
    assert (node["running"], node["healthy"], node["events"], node["peers"]) == (
        False,
        False,
        None,
        [],
    )
    assert node["error"].startswith("unreachable")


def test_status_without_a_devnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devnet", "status", "--dir", str(tmp_path)]) == 1
    assert "no devnet in" in capsys.readouterr().err


def test_public_api_is_exactly_all() -> None:
    public = {
        n
        for n, v in vars(client.devnet).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public == set(client.devnet.__all__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_busy_port_is_named() -> None:
    with listening() as a, listening() as b:
        low, high = sorted((a, b))
        with pytest.raises(DevnetError) as exc:
            check_ports([low, high], base_port=low, count=high - low + 1)
    assert f"port {low} on 127.0.0.1 is already in use (also: {high})" in exc.value.message
